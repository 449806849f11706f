//! The streams engine's durable log: under `<data>/streams/`, a directory
//! per stream (`<stream-id:020>/`, with `stream.json`) and in it one per
//! partition (`<partition>/`), holding that partition's segments
//! (`<base-offset:020>.log`) and closed segments' indexes (`.index`).
//!
//! - [`segment`]: the segment file and its in-memory sparse index; the scan
//!   that checks a segment when it is opened.
//! - [`index`]: index files written when a segment rolls.
//! - [`partition`]: reads, retention, and writing a batch.
//! - [`writer`]: the `ferry-log` thread (group commit across partitions).
//! - [`meta`]: the `stream.json` file.
//! - [`start`]: the `log-start` file DeleteRecords leaves.
//! - [`sealed`]: batches sealed at rest, when the broker has an encryption
//!   key; each partition keeps its segments' data keys in its own
//!   `keys.json`, wrapped by the master key as the journal's are.
//!
//! Opening a partition reads its closed segments' index files and, of its
//! active (last) segment, what follows the recovery point (`index`), so
//! restart time grows neither with what is retained nor, after a clean
//! shutdown, with the active segment's size.

mod index;
mod meta;
mod partition;
mod sealed;
mod segment;
mod start;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ferry_core::store::StoreError;
use ferry_core::stream::{Durable, LogStore, OpenedLog, StreamMeta};

use crate::FsyncPolicy;
use crate::journal::io_error;
use crate::seal::{Keyring, MasterKey};
use partition::{PartitionFiles, PartitionHandle, Roll};
use segment::{HEADER, Segment};
use writer::Writer;

pub use segment::FORMAT_VERSION;

/// How many of the newest batch headers a partition's opening hands back
/// to rebuild idempotent producers' sequences.
const TAIL_HEADERS: usize = 10_000;
/// How far back from a recovery point those headers are looked for.
const TAIL_WINDOW: u64 = 4 << 20;

/// Every stream's logs, in one directory.
pub struct SegmentLogs {
    root: PathBuf,
    writer: Arc<Writer>,
    /// The master key that wraps every partition's data keys, if any.
    key: Option<Arc<MasterKey>>,
    /// Open partitions by stream id, to fence on deletion and to update
    /// their roll settings.
    open: Mutex<HashMap<u64, Vec<Arc<PartitionFiles>>>>,
}

fn stream_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("{id:020}"))
}

impl SegmentLogs {
    /// Opens (creating) `root`, finishing any deletion a crash interrupted.
    /// With `key`, new segments are sealed; a partition sealed before opens
    /// only with the key its data keys were wrapped with.
    pub fn open(
        root: &Path,
        fsync: FsyncPolicy,
        key: Option<Arc<MasterKey>>,
    ) -> Result<SegmentLogs, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
        for e in std::fs::read_dir(root).map_err(|e| io_error(root, e))? {
            let e = e.map_err(|e| io_error(root, e))?;
            if e.file_name().to_string_lossy().ends_with(".deleting") {
                std::fs::remove_dir_all(e.path()).map_err(|err| io_error(&e.path(), err))?;
            }
        }
        Ok(SegmentLogs {
            root: root.to_owned(),
            writer: Writer::start(fsync)?,
            key,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Arc<PartitionFiles>>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SegmentLogs {
    fn drop(&mut self) {
        self.close();
    }
}

impl LogStore for SegmentLogs {
    fn create_stream(&self, m: &StreamMeta) -> Result<(), StoreError> {
        let dir = stream_dir(&self.root, m.id);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        meta::write(&dir, m)?;
        crate::segment::sync_dir(&self.root).map_err(|e| io_error(&self.root, e))
    }

    fn update_stream(&self, m: &StreamMeta) -> Result<(), StoreError> {
        meta::write(&stream_dir(&self.root, m.id), m)?;
        if let Some(parts) = self.open_map().get(&m.id) {
            for p in parts {
                *p.roll.lock().unwrap_or_else(PoisonError::into_inner) = roll_of(m);
            }
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        let parts: Vec<Arc<PartitionFiles>> = self.open_map().values().flatten().cloned().collect();
        let own_sync = self.writer.never_syncs();
        // Time for the writer's current round to sync what the snapshots
        // count, shared by the whole pass.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let mut first_error = None;
        for p in parts {
            if p.deleted.load(Ordering::Acquire) {
                continue;
            }
            if let Err(e) = p.checkpoint(own_sync, deadline) {
                tracing::warn!(dir = %p.dir.display(), error = %e, "could not write a recovery point");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn close(&self) {
        // The writer writes and syncs what is pending first, so the points
        // cover every batch: the next start scans nothing.
        self.writer.close();
        let _ = self.checkpoint();
    }

    fn delete_stream(&self, id: u64) -> Result<(), StoreError> {
        if let Some(parts) = self.open_map().remove(&id) {
            for p in parts {
                p.deleted.store(true, Ordering::Release);
            }
        }
        let dir = stream_dir(&self.root, id);
        let doomed = self.root.join(format!("{id:020}.deleting"));
        // The rename is the deletion (durable once the directory is
        // synced); removing the files after it may be finished at start.
        std::fs::rename(&dir, &doomed).map_err(|e| io_error(&dir, e))?;
        crate::segment::sync_dir(&self.root).map_err(|e| io_error(&self.root, e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| io_error(&doomed, e))
    }

    fn streams(&self) -> Result<Vec<StreamMeta>, StoreError> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.root).map_err(|e| io_error(&self.root, e))? {
            let e = e.map_err(|e| io_error(&self.root, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
                v.push(meta::read(&e.path())?);
            }
        }
        Ok(v)
    }

    fn open_partition(
        &self,
        m: &StreamMeta,
        partition: u32,
        durable: Arc<Durable>,
    ) -> Result<OpenedLog, StoreError> {
        let dir = stream_dir(&self.root, m.id).join(partition.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let bases = segment::list(&dir).map_err(|e| io_error(&dir, e))?;
        let keys = Keyring::open(&dir, self.key.as_deref(), &Default::default(), &bases)
            .map_err(|e| StoreError::Io(format!("the keys of stream log {}: {e}", dir.display())))?
            .map(Arc::new);
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len().max(1));
        let mut tail = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let path = segment::log_path(&dir, base);
            // An index or recovery point at its base says it held data
            // (`create_segment` removes any before making the file): then
            // a short file is damage, refused below, not made again.
            let indexed = segment::index_path(&dir, base).exists();
            if active && !indexed && segment::unborn(&path).map_err(|e| io_error(&path, e))? {
                // A crash while it was being made (at a roll, or replacing
                // an empty clear segment with a sealed one): it holds
                // nothing, and offsets go on from its base. Made again.
                tracing::warn!(file = %path.display(), "log segment cut short while it was created; made again");
                segments.push(partition::create_segment(
                    &dir,
                    m.id,
                    partition,
                    base,
                    keys.as_deref(),
                )?);
                continue;
            }
            let (seg, headers) = open_segment(&dir, m.id, partition, base, active)?;
            if seg.sealed && !keys.as_ref().is_some_and(|k| k.has(base)) {
                return Err(StoreError::Io(format!(
                    "{} is sealed and no data key for it is in {}/keys.json (the broker needs its encryption key, and that file)",
                    seg.path.display(),
                    dir.display()
                )));
            }
            if active {
                tail = headers;
            }
            segments.push(seg);
        }
        if segments.is_empty() {
            segments.push(partition::create_segment(
                &dir,
                m.id,
                partition,
                0,
                keys.as_deref(),
            )?);
        }
        let (start, next) = {
            let first = &segments[0];
            let last = &segments[segments.len() - 1];
            let next = last.lock().next_offset;
            // DeleteRecords may have left the start inside the first segment.
            let deleted_to = start::read(&dir)?.unwrap_or(0);
            if deleted_to > next {
                // Records it covered were lost with an unsynced tail (a
                // power loss without fsync): the start is the end now, or a
                // later restart would delete what is written after this one.
                start::write(&dir, next)?;
            }
            (first.base.max(deleted_to.min(next)), next)
        };
        // Segments a crash kept between DeleteRecords' start and its unlinks.
        let stale = partition::drop_before(&mut segments, start);
        let stale_ids: Vec<u64> = stale.iter().map(|s| s.base).collect();
        partition::remove_segments(&dir, stale)?;
        if let Some(k) = &keys
            && !stale_ids.is_empty()
        {
            k.forget(&stale_ids);
            k.persist().map_err(|e| {
                StoreError::Io(format!("the keys of stream log {}: {e}", dir.display()))
            })?;
        }
        durable.set_start(start);
        durable.advance(next);
        let files = Arc::new(PartitionFiles {
            stream: m.id,
            partition,
            dir,
            durable,
            keys,
            segments: RwLock::new(segments),
            roll: Mutex::new(roll_of(m)),
            deleted: Default::default(),
            deleting: Mutex::new(()),
            broken: Mutex::new(None),
        });
        self.open_map()
            .entry(m.id)
            .or_default()
            .push(Arc::clone(&files));
        Ok(OpenedLog {
            log: Arc::new(PartitionHandle {
                files,
                writer: Arc::clone(&self.writer),
            }),
            next_offset: next,
            tail,
        })
    }
}

fn roll_of(m: &StreamMeta) -> Roll {
    Roll {
        segment_bytes: m.config.segment_bytes,
        segment_ms: m.config.segment_ms,
    }
}

/// Opens one segment: a closed one from its index file when that matches
/// (else a scan), the active one always by a scan that trims a torn tail.
fn open_segment(
    dir: &Path,
    stream: u64,
    partition: u32,
    base: u64,
    active: bool,
) -> Result<(Arc<Segment>, Vec<ferry_core::stream::batch::BatchHeader>), StoreError> {
    let path = segment::log_path(dir, base);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
    let mut h = [0u8; HEADER as usize];
    if len < HEADER {
        return Err(StoreError::Corrupt {
            file: path.display().to_string(),
            offset: 0,
            detail: format!("{len} bytes, shorter than a segment header"),
        });
    }
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut h, 0).map_err(|e| io_error(&path, e))?;
    let sealed = segment::check_header(&h, stream, partition, base).map_err(|detail| {
        StoreError::Corrupt {
            file: path.display().to_string(),
            offset: 0,
            detail,
        }
    })?;
    if !active {
        let indexed = std::fs::read(segment::index_path(dir, base))
            .ok()
            .and_then(|b| index::decode(&b, len));
        if let Some(state) = indexed {
            return Ok((
                Arc::new(Segment {
                    base,
                    path,
                    file,
                    sealed,
                    state: Mutex::new(state),
                }),
                Vec::new(),
            ));
        }
    }
    // The active segment resumes from its recovery point, if it has a
    // true one; the headers before it are read from the point's last
    // few MiB.
    let resume = if active {
        let point = segment::index_path(dir, base);
        let decoded = std::fs::read(&point)
            .ok()
            .and_then(|b| index::decode_prefix(&b, len));
        if decoded.is_none() {
            // Not trusted now, and never later: once the file grows past
            // it again, it would describe bytes written since.
            match std::fs::remove_file(&point) {
                Ok(()) => crate::segment::sync_dir(dir).map_err(|e| io_error(dir, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&point, e)),
            }
        }
        decoded
    } else {
        None
    };
    let mut tail = match &resume {
        Some(st) => segment::prefix_tail(&file, &path, st, TAIL_WINDOW, TAIL_HEADERS)?,
        None => Vec::new(),
    };
    let checkpointed = resume.as_ref().map_or(0, |st| st.written);
    let mut scanned = segment::scan(
        &file,
        &path,
        base,
        if active { TAIL_HEADERS } else { 0 },
        resume,
    )?;
    scanned.state.checkpointed = checkpointed;
    tail.append(&mut scanned.tail);
    let tail = tail.split_off(tail.len().saturating_sub(TAIL_HEADERS));
    if let Some(at) = scanned.torn_at {
        tracing::warn!(file = %path.display(), at, dropped = len - at, "log segment had a torn tail; trimmed");
        file.set_len(at)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&path, e))?;
    }
    if !active {
        // Write the missing index, so the next start need not scan.
        let _ = index::write(&segment::index_path(dir, base), &scanned.state);
    }
    Ok((
        Arc::new(Segment {
            base,
            path,
            file,
            sealed,
            state: Mutex::new(scanned.state),
        }),
        tail,
    ))
}

#[cfg(test)]
mod recovery_point_tests;
#[cfg(test)]
mod sealed_tests;
#[cfg(test)]
mod tests;
