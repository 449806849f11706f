//! The offsets log: consumer groups' committed offsets, durable, in one
//! directory (`<data>/streams/offsets/`):
//!
//! ```text
//! offsets.log       header: b"FERRYOFS", format version (u32 LE, 1),
//!                   then one frame (`crate::frame`) per change, in order
//! offsets.log.new   a compaction being written (removed at open)
//! ```
//!
//! - [`codec`]: the frames' payloads.
//! - [`live`]: the live offsets, which `load` hands back.
//! - [`writer`]: the `ferry-offsets` thread (group commit, compaction).
//!
//! Invariants:
//! - `offsets.log` always exists whole from its header on: it is created,
//!   like every compacted version, as `offsets.log.new`, synced, then
//!   renamed over it (the directory synced after). Only appends follow,
//!   so a crash can tear nothing but the last frames.
//! - The file is bounded by what is live: past max(4 MiB, 4 × a compacted
//!   file's size) it is rewritten with one commit per live key, so
//!   opening (which reads it whole) costs what is live, not what was ever
//!   committed.

mod codec;
mod live;
mod writer;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use ferry_core::group::{Committed, OffsetChange, OffsetKey, OffsetStore};
use ferry_core::store::{Commit, StoreError};

use crate::FsyncPolicy;
use crate::frame;
use crate::journal::io_error;
use crate::segment::sync_dir;
use live::Live;
use writer::{Shared, Writer};

const FILE: &str = "offsets.log";
const NEW_FILE: &str = "offsets.log.new";
const MAGIC: &[u8; 8] = b"FERRYOFS";
/// Bumped when the layout of the file or its records changes
/// incompatibly; a reader refuses versions it does not know.
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 12;

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

fn corrupt(path: &Path, offset: usize, detail: String) -> StoreError {
    StoreError::Corrupt {
        file: path.display().to_string(),
        offset: offset as u64,
        detail,
    }
}

fn check_header(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    // The file is renamed into place whole, so a short or foreign header
    // is damage, not a torn write.
    let Some(h) = data.get(..HEADER_LEN) else {
        return Err(corrupt(
            path,
            0,
            format!("{} bytes, shorter than the header", data.len()),
        ));
    };
    if &h[..8] != MAGIC {
        return Err(corrupt(
            path,
            0,
            "not a ferry offsets log (bad magic)".into(),
        ));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            8,
            format!("format version {version}; this build reads version {FORMAT_VERSION}"),
        ));
    }
    Ok(())
}

/// Committed offsets kept in a log file (see the module docs).
pub struct OffsetsLog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OffsetsLog {
    /// Opens (creating) the offsets log in `dir`: removes a compaction a
    /// crash left unfinished, replays the file, cuts off a torn tail.
    /// Damage with records after it refuses to open unless `repair`, which
    /// skips the damaged bytes and rewrites the file from what was read.
    pub fn open(dir: &Path, fsync: FsyncPolicy, repair: bool) -> Result<OffsetsLog, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let new = dir.join(NEW_FILE);
        match std::fs::remove_file(&new) {
            // Never renamed, so `offsets.log` is still the whole old version.
            Ok(()) => {
                tracing::warn!(file = %new.display(), "removed an unfinished offsets compaction")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&new, e)),
        }
        let path = dir.join(FILE);
        // Appending: writes go to the end even after a torn tail is cut.
        let opened = OpenOptions::new().read(true).append(true).open(&path);
        let (file, len, live) = match opened {
            Ok(file) => match replay(&path, &file, repair)? {
                Replayed::Whole(len, live) => (file, len, live),
                Replayed::Repaired(live) => {
                    let mut contents = header().to_vec();
                    live.encode(&mut contents);
                    let file = write_new(dir, &contents)?;
                    install(dir)?;
                    (file, contents.len() as u64, live)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (file, len) = create(dir)?;
                (file, len, Live::default())
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        let shared = Arc::new(Shared::new(fsync, live));
        let w = Writer::new(Arc::clone(&shared), dir, file, len);
        let handle = std::thread::Builder::new()
            .name("ferry-offsets".into())
            .spawn(move || w.run())
            .map_err(|e| StoreError::Io(format!("cannot start the offsets writer: {e}")))?;
        Ok(OffsetsLog {
            shared,
            thread: Mutex::new(Some(handle)),
        })
    }

    /// Writes and syncs what is recorded, then stops the writer; later
    /// records fail with [`StoreError::Closed`]. Dropping closes too.
    pub fn close(&self) {
        self.shared.close();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        // Settles nothing if the writer did its work; wakes the waiters
        // with `Closed` if it died.
        self.shared.progress.close();
    }
}

impl Drop for OffsetsLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl OffsetStore for OffsetsLog {
    fn load(&self) -> Result<Vec<(OffsetKey, Committed)>, StoreError> {
        Ok(self.shared.live().sorted())
    }

    fn record(&self, changes: Vec<OffsetChange>) -> Commit {
        self.shared.submit(changes)
    }
}

/// What a replay read.
enum Replayed {
    /// The file's length (after cutting off a torn tail) and its offsets.
    Whole(u64, Live),
    /// With `repair`: the offsets around damage that was skipped; the file
    /// must be rewritten before it is appended to.
    Repaired(Live),
}

/// Reads the whole file (bounded by compaction) into the live offsets.
fn replay(path: &Path, mut file: &File, repair: bool) -> Result<Replayed, StoreError> {
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(|e| io_error(path, e))?;
    check_header(path, &data)?;
    let mut live = Live::default();
    let mut pos = HEADER_LEN;
    let mut damaged = false;
    while pos < data.len() {
        match frame::read(&data[pos..]) {
            Ok(f) => {
                // A whole frame that does not decode was written so: not
                // a torn write, and skipping it could resurrect offsets
                // (so only `repair` does).
                match codec::decode(f.kind, f.payload) {
                    Ok(change) => live.apply(change, f.size as u64),
                    Err(e) if repair => {
                        tracing::error!(file = %path.display(), offset = pos, reason = %e, "repair: skipping an offsets record that does not decode");
                        damaged = true;
                    }
                    Err(e) => {
                        return Err(corrupt(
                            path,
                            pos,
                            format!("record does not decode: {e} (start with --repair to skip it)"),
                        ));
                    }
                }
                pos += f.size;
            }
            Err(fe) => {
                if let Some(next) = frame::resync(&data, pos + 1) {
                    if !repair {
                        return Err(corrupt(
                            path,
                            pos,
                            format!("{fe}, with records after it (start with --repair to skip it)"),
                        ));
                    }
                    tracing::error!(file = %path.display(), offset = pos, skipped_bytes = next - pos, reason = %fe, "repair: skipping damaged offsets records; commits in them are lost");
                    damaged = true;
                    pos = next;
                    continue;
                }
                // Nothing valid after it: the end of a write a crash cut
                // short, which no commit was confirmed for.
                tracing::warn!(file = %path.display(), offset = pos, lost_bytes = data.len() - pos, reason = %fe, "offsets log had a torn tail; trimmed");
                file.set_len(pos as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_error(path, e))?;
                break;
            }
        }
    }
    Ok(if damaged {
        Replayed::Repaired(live)
    } else {
        Replayed::Whole(pos as u64, live)
    })
}

/// Writes `contents` (a whole file) as `offsets.log.new` and syncs it; the
/// handle it returns is positioned at the end, to append to.
fn write_new(dir: &Path, contents: &[u8]) -> Result<File, StoreError> {
    let new = dir.join(NEW_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)
        .map_err(|e| io_error(&new, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_data())
        .map_err(|e| io_error(&new, e))?;
    Ok(f)
}

/// Puts a synced `offsets.log.new` in place of `offsets.log` (the rename
/// is atomic: a crash leaves one version or the other, each whole).
fn install(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(FILE);
    std::fs::rename(dir.join(NEW_FILE), &path).map_err(|e| io_error(&path, e))
}

/// Creates an empty log, durably: the file, its name, and (the directory
/// may be new too) the directory's name.
fn create(dir: &Path) -> Result<(File, u64), StoreError> {
    let file = write_new(dir, &header())?;
    install(dir)?;
    sync_dir(dir).map_err(|e| io_error(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| io_error(parent, e))?;
    }
    Ok((file, HEADER_LEN as u64))
}

#[cfg(test)]
mod tests;
