//! One partition's segment files: reads (by any task, never blocking the
//! writer: they take a segment's lock only to look up a position, then
//! read with `pread`), retention, and the writer's side of appending.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use ferry_core::store::{Commit, StoreError};
use ferry_core::stream::batch::{self, BatchHeader};
use ferry_core::stream::{Durable, PartitionLog};

use super::index;
use super::sealed::{self, Place};
use super::segment::{self, HEADER, INDEX_INTERVAL, SegState, Segment};
use super::writer::Writer;
use crate::journal::io_error;
use crate::seal::Keyring;

/// When the active segment rolls.
#[derive(Copy, Clone, Debug)]
pub struct Roll {
    pub segment_bytes: u64,
    pub segment_ms: i64,
}

pub struct PartitionFiles {
    pub stream: u64,
    pub partition: u32,
    pub dir: PathBuf,
    pub durable: Arc<Durable>,
    /// The data keys of its sealed segments (`keys.json` in `dir`), when
    /// the broker has an encryption key or the partition was sealed
    /// before: new segments are sealed whenever this is set.
    pub keys: Option<Arc<Keyring>>,
    /// Oldest first; the last is the one written to. Never empty.
    pub segments: RwLock<Vec<Arc<Segment>>>,
    pub roll: Mutex<Roll>,
    pub deleted: AtomicBool,
    /// Held by DeleteRecords from its check of the start to the unlinks,
    /// so two at once cannot store an older start after a newer one.
    pub deleting: Mutex<()>,
    /// Set when a failed write could not be undone: the partition takes no
    /// more appends until the broker restarts (and recovery trims it).
    pub broken: Mutex<Option<StoreError>>,
}

fn rd<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn wr<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn lk<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PartitionFiles {
    fn place(&self, seg: &Segment) -> Place {
        Place {
            stream: self.stream,
            partition: self.partition,
            segment: seg.base,
        }
    }

    /// The keys of a sealed segment (opening the partition checked that a
    /// sealed segment has them).
    fn keys_of(&self, seg: &Segment) -> Result<&Keyring, StoreError> {
        self.keys.as_deref().ok_or_else(|| {
            StoreError::Io(format!(
                "{} is sealed and the broker has no encryption key",
                seg.path.display()
            ))
        })
    }

    /// A read's stored bytes as the engine hands them on: opened when the
    /// segment is sealed.
    fn opened(&self, seg: &Segment, position: u64, stored: Bytes) -> Result<Bytes, StoreError> {
        if !seg.sealed || stored.is_empty() {
            return Ok(stored);
        }
        sealed::open_all(
            self.keys_of(seg)?,
            self.place(seg),
            &seg.path,
            position,
            &stored,
        )
    }

    fn active(&self) -> Arc<Segment> {
        let segs = rd(&self.segments);
        // Never empty: opening makes a first segment, retention keeps the last.
        Arc::clone(&segs[segs.len() - 1])
    }

    /// Writes one batch at the end of the active segment (rolling first if
    /// it is full or old). Called by the writer thread only. Returns the
    /// segment written, to be synced.
    pub fn write(
        &self,
        raw: &[u8],
        h: &BatchHeader,
        now_ms: u64,
    ) -> Result<Arc<Segment>, StoreError> {
        if let Some(e) = lk(&self.broken).clone() {
            return Err(e);
        }
        let mut seg = self.active();
        let roll = *lk(&self.roll);
        let stored_len = raw.len()
            + if self.keys.is_some() {
                sealed::OVERHEAD
            } else {
                0
            };
        let full = {
            let st = seg.lock();
            st.written > HEADER
                && (st.written + stored_len as u64 > roll.segment_bytes
                    || st
                        .first_append_ms
                        .is_some_and(|t| now_ms.saturating_sub(t) >= roll.segment_ms.max(0) as u64))
        };
        if full || (self.keys.is_some() && !seg.sealed) {
            // A key given to a partition written in the clear: its next
            // batch starts a sealed segment.
            seg = self.roll_to(h.base_offset as u64)?;
        }
        let sealed_batch;
        let (raw, h) = if seg.sealed {
            sealed_batch = sealed::seal(self.keys_of(&seg)?, self.place(&seg), raw)?;
            let h = BatchHeader {
                size: sealed_batch.len(),
                ..*h
            };
            (&sealed_batch[..], h)
        } else {
            (raw, *h)
        };
        let position = seg.lock().written;
        if let Err(e) = seg.file.write_all_at(raw, position) {
            let err = io_error(&seg.path, e);
            // Undo a partial write, so the next batch follows whole ones.
            if let Err(e) = seg.file.set_len(position) {
                tracing::error!(file = %seg.path.display(), error = %e, "could not undo a failed log write; partition fenced");
                *lk(&self.broken) = Some(err.clone());
            }
            return Err(err);
        }
        let mut st = seg.lock();
        st.add(seg.base, &h, position);
        st.first_append_ms.get_or_insert(now_ms);
        drop(st);
        Ok(seg)
    }

    /// Closes the active segment (writing its index) and starts one whose
    /// first batch is at `base`. An empty active segment (a clear one, when
    /// a key was given since) is replaced by the new one, at its base.
    fn roll_to(&self, base: u64) -> Result<Arc<Segment>, StoreError> {
        let old = self.active();
        let empty = {
            let st = old.lock();
            if st.written > HEADER
                && let Err(e) = index::write(&segment::index_path(&self.dir, old.base), &st)
            {
                // Not fatal: opening scans a segment whose index is missing.
                tracing::warn!(file = %old.path.display(), error = %e, "could not write a segment index");
            }
            st.written <= HEADER
        };
        let seg = create_segment(
            &self.dir,
            self.stream,
            self.partition,
            base,
            self.keys.as_deref(),
        )?;
        let mut segs = wr(&self.segments);
        if empty && old.base == base {
            // The same file, made again with the new header.
            segs.pop();
        }
        segs.push(Arc::clone(&seg));
        Ok(seg)
    }

    /// Writes the active segment's recovery point if it grew since the
    /// last: a snapshot of its state (every byte it counts is in the file,
    /// as a write precedes its accounting), then the point once that much
    /// is durable. If the segment rolled meanwhile, its full index is
    /// written again over the point.
    ///
    /// Durable means synced by the log writer (`own_sync` false): this
    /// never syncs a file the writer syncs, since a write-back error is
    /// reported to one fsync only and the writer must be the one to see
    /// it (it fences the partition and fails the batches). It waits for
    /// the writer's round until `deadline` (one for a whole pass, so many
    /// partitions do not each wait) and otherwise tries at the next tick.
    /// With `own_sync` (no fsync policy: the writer never syncs) it syncs
    /// the segment itself. A fenced partition gets no point.
    pub fn checkpoint(
        &self,
        own_sync: bool,
        deadline: std::time::Instant,
    ) -> Result<(), StoreError> {
        if lk(&self.broken).is_some() {
            return Ok(());
        }
        let seg = self.active();
        let point = {
            let st = seg.lock();
            if st.written <= st.checkpointed.max(HEADER) {
                return Ok(());
            }
            SegState {
                written: st.written,
                synced: st.written,
                next_offset: st.next_offset,
                max_ts: st.max_ts,
                index: st.index.clone(),
                first_append_ms: None,
                checkpointed: st.written,
            }
        };
        let path = segment::index_path(&self.dir, seg.base);
        if own_sync {
            seg.file.sync_data().map_err(|e| io_error(&seg.path, e))?;
        } else {
            while seg.lock().synced < point.written {
                if std::time::Instant::now() > deadline || lk(&self.broken).is_some() {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        index::write_recovery_point(&path, &point).map_err(|e| io_error(&path, e))?;
        if Arc::ptr_eq(&seg, &self.active()) {
            let mut st = seg.lock();
            st.checkpointed = st.checkpointed.max(point.written);
        } else {
            index::write(&path, &seg.lock()).map_err(|e| io_error(&path, e))?;
        }
        Ok(())
    }

    /// Marks what the last sync made durable.
    pub fn synced(&self, seg: &Segment) {
        let mut st = seg.lock();
        st.synced = st.written;
    }
}

/// Creates a segment file with its header, durable in its directory;
/// sealed when `keys` is given, and then its data key is saved first.
pub fn create_segment(
    dir: &std::path::Path,
    stream: u64,
    partition: u32,
    base: u64,
    keys: Option<&Keyring>,
) -> Result<Arc<Segment>, StoreError> {
    if let Some(keys) = keys {
        keys.ensure(None, base)
            .and_then(|()| keys.persist())
            .map_err(|e| StoreError::Io(format!("the data key of a log segment: {e}")))?;
    }
    let path = segment::log_path(dir, base);
    // An index left by a file this one replaces describes other bytes.
    match std::fs::remove_file(segment::index_path(dir, base)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&segment::index_path(dir, base), e)),
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    file.write_all_at(&segment::header(stream, partition, base, keys.is_some()), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_error(&path, e))?;
    crate::segment::sync_dir(dir).map_err(|e| io_error(dir, e))?;
    Ok(Arc::new(Segment {
        base,
        path,
        file,
        sealed: keys.is_some(),
        state: Mutex::new(SegState {
            written: HEADER,
            synced: HEADER,
            next_offset: base,
            ..SegState::default()
        }),
    }))
}

/// What a walk over a segment's batches collects: whole batches from the
/// first `wanted` accepts, while `more` says go on.
fn walk(
    seg: &Segment,
    from: u64,
    limit: u64,
    first_read: usize,
    mut wanted: impl FnMut(&BatchHeader) -> bool,
    mut more: impl FnMut(&BatchHeader, usize) -> bool,
) -> Result<Option<Bytes>, StoreError> {
    let mut buf = seg.read_at(from, first_read.min((limit - from) as usize))?;
    let mut at = 0usize;
    let mut start: Option<usize> = None;
    let mut end = 0usize;
    loop {
        let here = from + at as u64;
        if here + batch::HEADER_LEN as u64 > limit {
            break;
        }
        if at + batch::HEADER_LEN > buf.len() {
            let more_bytes = seg.read_at(
                from + buf.len() as u64,
                (INDEX_INTERVAL as usize).min((limit - from) as usize - buf.len()),
            )?;
            if more_bytes.is_empty() {
                break;
            }
            buf.extend_from_slice(&more_bytes);
            continue;
        }
        let h = BatchHeader::parse(&buf[at..]).map_err(|e| StoreError::Corrupt {
            file: seg.path.display().to_string(),
            offset: here,
            detail: e.to_string(),
        })?;
        if here + h.size as u64 > limit {
            break;
        }
        match start {
            None if !wanted(&h) => {
                at += h.size;
                continue;
            }
            None => start = Some(at),
            Some(s) if !more(&h, at + h.size - s) => break,
            Some(_) => {}
        }
        if at + h.size > buf.len() {
            let need = at + h.size - buf.len();
            let tail = seg.read_at(from + buf.len() as u64, need)?;
            if tail.len() < need {
                break;
            }
            buf.extend_from_slice(&tail);
        }
        end = at + h.size;
        at = end;
    }
    Ok(start.map(|s| Bytes::from(buf).slice(s..end)))
}

/// The partition as the engine sees it.
pub struct PartitionHandle {
    pub files: Arc<PartitionFiles>,
    pub writer: Arc<Writer>,
}

impl PartitionLog for PartitionHandle {
    fn append(&self, batch: Bytes, header: &BatchHeader) -> Result<Commit, StoreError> {
        if self.files.deleted.load(Ordering::Acquire) {
            return Err(StoreError::Io("the stream was deleted".into()));
        }
        if let Some(e) = lk(&self.files.broken).clone() {
            return Err(e);
        }
        self.writer.submit(&self.files, batch, *header)
    }

    fn read(&self, offset: u64, end: u64, max_bytes: usize) -> Result<Bytes, StoreError> {
        let candidates: Vec<Arc<Segment>> = {
            let segs = rd(&self.files.segments);
            let i = segs.partition_point(|s| s.base <= offset).saturating_sub(1);
            segs.iter().skip(i).take(2).cloned().collect()
        };
        for seg in candidates {
            let (from, limit) = {
                let st = seg.lock();
                (st.position_for(seg.base, offset), st.synced)
            };
            if from >= limit {
                continue;
            }
            let first_read = max_bytes.saturating_add(INDEX_INTERVAL as usize + batch::HEADER_LEN);
            let got = walk(
                &seg,
                from,
                limit,
                first_read.min(8 << 20),
                |h| h.last_offset() as u64 >= offset,
                |h, total| (h.base_offset as u64) < end && total <= max_bytes,
            )?;
            if let Some(b) = got {
                // The first batch may start at or past `end` (not durable).
                let durable = BatchHeader::parse(&b).is_ok_and(|h| (h.base_offset as u64) < end);
                return if durable {
                    self.files.opened(&seg, from, b)
                } else {
                    Ok(Bytes::new())
                };
            }
        }
        Ok(Bytes::new())
    }

    fn find_time(&self, ts: i64, end: u64) -> Result<Option<Bytes>, StoreError> {
        let segs: Vec<Arc<Segment>> = rd(&self.files.segments).clone();
        for seg in segs {
            let (from, limit, max_ts) = {
                let st = seg.lock();
                (st.position_for_time(ts), st.synced, st.max_ts)
            };
            if from >= limit || max_ts < ts {
                continue;
            }
            let got = walk(
                &seg,
                from,
                limit,
                (INDEX_INTERVAL as usize) * 2,
                |h| h.max_timestamp >= ts,
                |_, _| false,
            )?;
            if let Some(b) = got {
                let before_end = BatchHeader::parse(&b).is_ok_and(|h| (h.base_offset as u64) < end);
                return if before_end {
                    self.files.opened(&seg, from, b).map(Some)
                } else {
                    Ok(None)
                };
            }
        }
        Ok(None)
    }

    fn retain(
        &self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    ) -> Result<(), StoreError> {
        let gone: Vec<Arc<Segment>> = {
            let mut segs = wr(&self.files.segments);
            let mut size: u64 = segs.iter().map(|s| s.lock().written).sum();
            let mut drop = 0;
            while drop + 1 < segs.len() {
                let st = segs[drop].lock();
                let old = retention_ms.is_some_and(|r| st.max_ts < now_ms.saturating_sub(r));
                let big = retention_bytes.is_some_and(|r| size.saturating_sub(st.written) >= r);
                if !(old || big) {
                    break;
                }
                size -= st.written;
                drop += 1;
            }
            let gone: Vec<Arc<Segment>> = segs.drain(..drop).collect();
            self.files.durable.set_start(segs[0].base);
            gone
        };
        // Their data keys stay until the next open drops them (a reader may
        // still be reading an unlinked segment it looked up before).
        remove_segments(&self.files.dir, gone)
    }

    fn max_timestamp(&self) -> Option<i64> {
        rd(&self.files.segments)
            .iter()
            .filter_map(|seg| {
                let st = seg.lock();
                (st.written > segment::HEADER).then_some(st.max_ts)
            })
            .max()
    }

    fn delete_before(&self, offset: u64) -> Result<(), StoreError> {
        let _one_at_a_time = lk(&self.files.deleting);
        let offset = offset.min(self.files.durable.end());
        if offset <= self.files.durable.start() {
            return Ok(());
        }
        // The start is durable before any segment goes: a crash between
        // leaves segments that are unreadable anyway (and that the next
        // open removes), never a start that went back.
        super::start::write(&self.files.dir, offset)?;
        let gone = drop_before(&mut wr(&self.files.segments), offset);
        self.files.durable.set_start(offset);
        // The deletion took effect with the start: a file left behind is
        // only space, removed by the next open.
        if let Err(e) = remove_segments(&self.files.dir, gone) {
            tracing::warn!(error = %e, "a segment before the log start could not be removed");
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        rd(&self.files.segments)
            .iter()
            .map(|s| s.lock().written)
            .sum()
    }
}

/// Unlinks segments that left the log, with their index files.
pub fn remove_segments(dir: &std::path::Path, gone: Vec<Arc<Segment>>) -> Result<(), StoreError> {
    let any = !gone.is_empty();
    for seg in gone {
        for path in [seg.path.clone(), segment::index_path(dir, seg.base)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        tracing::debug!(file = %seg.path.display(), "a segment left the log");
    }
    if any {
        crate::segment::sync_dir(dir).map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}

/// Takes out of `segs` the segments wholly before `offset` (the next one
/// starts at or before it); the last one always stays.
pub fn drop_before(segs: &mut Vec<Arc<Segment>>, offset: u64) -> Vec<Arc<Segment>> {
    let drop = segs
        .windows(2)
        .take_while(|w| w.get(1).is_some_and(|next| next.base <= offset))
        .count();
    segs.drain(..drop).collect()
}
