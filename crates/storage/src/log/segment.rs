//! One segment of a partition's log: `<base-offset:020>.log`, a 40-byte
//! header and then Kafka record batches back to back, exactly as stored
//! by the engine (each carries its own length and CRC-32C, so no framing
//! of ours is needed and a fetch reads contiguous bytes).
//!
//! Header (little-endian): magic `FERRYLOG`, format version u16, flags u16
//! (bit 0: [`SEALED`], the batches are sealed at rest as `sealed.rs`
//! describes), partition u32, stream id u64, base offset u64, reserved
//! u32, CRC-32C of the 36 bytes before.
//!
//! In memory a segment keeps a sparse index: an entry at least every
//! [`INDEX_INTERVAL`] bytes (and for the first batch) with the batch's
//! offset relative to the segment's base, its position, and the newest
//! timestamp up to and including it; offset and time lookups scan forward
//! from an entry, so at most one interval plus one batch.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ferry_core::store::StoreError;
use ferry_core::stream::batch::{self, BatchHeader};

use crate::journal::io_error;

pub const HEADER: u64 = 40;
const MAGIC: &[u8; 8] = b"FERRYLOG";
/// Bumped when the layout changes; readers refuse versions they do not know.
pub const FORMAT_VERSION: u16 = 1;
/// The header flag of a segment whose batches are sealed.
pub const SEALED: u16 = 1;
/// Kafka's `index.interval.bytes`.
pub const INDEX_INTERVAL: u64 = 4096;

pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// Base offsets of the segments in `dir`, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(base) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
        {
            v.push(base);
        }
    }
    v.sort_unstable();
    Ok(v)
}

pub fn header(stream: u64, partition: u32, base: u64, sealed: bool) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let flags = if sealed { SEALED } else { 0 };
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..16].copy_from_slice(&partition.to_le_bytes());
    h[16..24].copy_from_slice(&stream.to_le_bytes());
    h[24..32].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether the segment file at `path` is one whose creation a crash cut
/// short: shorter than a header, or a header's length of zeros (the size
/// reached the disk, the bytes did not). Such a file holds no batch, as
/// none is written before its header is synced (`create_segment`).
pub fn unborn(path: &Path) -> std::io::Result<bool> {
    // Only the length, and for a header's length its bytes: an active
    // segment may be a gigabyte.
    let len = std::fs::metadata(path)?.len();
    if len != HEADER {
        return Ok(len < HEADER);
    }
    let mut h = [0u8; HEADER as usize];
    std::io::Read::read_exact(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(h.iter().all(|&x| x == 0))
}

/// Checks a segment header against where the file is; whether its
/// batches are sealed.
pub fn check_header(h: &[u8], stream: u64, partition: u32, base: u64) -> Result<bool, String> {
    if h.len() < HEADER as usize {
        return Err(format!("header is {} of {HEADER} bytes", h.len()));
    }
    if &h[..8] != MAGIC {
        return Err("not a ferry log segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes([h[36], h[37], h[38], h[39]]);
    if crc != crc32c::crc32c(&h[..36]) {
        return Err("header CRC mismatch".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version == 0 || version > FORMAT_VERSION {
        return Err(format!(
            "format version {version}; this build reads 1 to {FORMAT_VERSION}"
        ));
    }
    let flags = u16::from_le_bytes([h[10], h[11]]);
    if flags & !SEALED != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let got = (
        u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
        u64::from_le_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
        u64::from_le_bytes([h[24], h[25], h[26], h[27], h[28], h[29], h[30], h[31]]),
    );
    if got != (partition, stream, base) {
        return Err(format!(
            "header names stream {} partition {} base {}, not {stream}/{partition}/{base}",
            got.1, got.0, got.2
        ));
    }
    Ok(flags & SEALED != 0)
}

/// A sparse index entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The batch's base offset minus the segment's.
    pub relative: u32,
    pub position: u32,
    /// The newest timestamp in the segment up to and including this batch.
    pub max_ts: i64,
}

/// What the writer and readers share about a segment.
#[derive(Debug, Default)]
pub struct SegState {
    /// Bytes written (header included).
    pub written: u64,
    /// Bytes known durable (all of `written` under a sync-less policy).
    pub synced: u64,
    /// The offset after the last batch written.
    pub next_offset: u64,
    pub max_ts: i64,
    pub index: Vec<IndexEntry>,
    /// Wall-clock ms of the first append (for `segment.ms`), if any.
    pub first_append_ms: Option<u64>,
    /// `written` as of the last recovery point (0: none).
    pub checkpointed: u64,
}

impl SegState {
    /// Notes a batch written at `position`.
    pub fn add(&mut self, base: u64, h: &BatchHeader, position: u64) {
        self.max_ts = if self.index.is_empty() && self.written <= HEADER {
            h.max_timestamp
        } else {
            self.max_ts.max(h.max_timestamp)
        };
        let due = self
            .index
            .last()
            .is_none_or(|e| position >= u64::from(e.position) + INDEX_INTERVAL);
        if due {
            self.index.push(IndexEntry {
                relative: (h.base_offset as u64 - base) as u32,
                position: position as u32,
                max_ts: self.max_ts,
            });
        }
        self.written = position + h.size as u64;
        self.next_offset = h.last_offset() as u64 + 1;
    }

    /// The position to scan from for `offset`.
    pub fn position_for(&self, base: u64, offset: u64) -> u64 {
        let rel = offset.saturating_sub(base);
        let i = self.index.partition_point(|e| u64::from(e.relative) <= rel);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => u64::from(e.position),
            None => HEADER,
        }
    }

    /// The position to scan from for the first batch at or after `ts`.
    pub fn position_for_time(&self, ts: i64) -> u64 {
        let i = self.index.partition_point(|e| e.max_ts < ts);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => u64::from(e.position),
            None => HEADER,
        }
    }
}

/// An open segment.
#[derive(Debug)]
pub struct Segment {
    pub base: u64,
    pub path: PathBuf,
    pub file: File,
    /// Its batches are sealed (its header says so): reads open them.
    pub sealed: bool,
    pub state: Mutex<SegState>,
}

impl Segment {
    pub fn lock(&self) -> MutexGuard<'_, SegState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `len` bytes at `position` (fewer at the end of the file).
    pub fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], position + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&self.path, e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// What a scan of a segment's batches found.
pub struct Scanned {
    pub state: SegState,
    /// Headers of the batches, oldest first (at most `keep_headers` of the
    /// newest).
    pub tail: Vec<BatchHeader>,
    /// Where valid data ends, when the segment had a torn tail past it.
    pub torn_at: Option<u64>,
}

/// Reads a segment in chunks, checking every batch's CRC and that
/// offsets follow on (`base` first), from its start or from a recovery
/// point (`from`, a durable prefix whose batches were checked when they
/// were written). A tail that is incomplete or zeroed (a write cut short by
/// a crash) is reported in `torn_at`; damage with data after it is an
/// error, not something to truncate away.
pub fn scan(
    seg: &File,
    path: &Path,
    base: u64,
    keep_headers: usize,
    from: Option<SegState>,
) -> Result<Scanned, StoreError> {
    const CHUNK: usize = 1 << 20;
    let len = seg.metadata().map_err(|e| io_error(path, e))?.len();
    let mut state = from.unwrap_or(SegState {
        written: HEADER,
        synced: HEADER,
        next_offset: base,
        ..SegState::default()
    });
    let mut tail: std::collections::VecDeque<BatchHeader> = std::collections::VecDeque::new();
    // `buf` holds the file from `buf_at` on.
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = state.written;
    let mut at = state.written;
    let mut torn_at = None;
    let read = |from: u64, n: usize| -> Result<Vec<u8>, StoreError> {
        let n = n.min((len - from) as usize);
        let mut v = vec![0u8; n];
        seg.read_exact_at(&mut v, from)
            .map_err(|e| io_error(path, e))?;
        Ok(v)
    };
    while at < len {
        // Make sure `buf` covers at least a header's worth (or the rest).
        let want = batch::HEADER_LEN.min((len - at) as usize);
        if at + want as u64 > buf_at + buf.len() as u64 {
            buf = read(at, CHUNK.max(want))?;
            buf_at = at;
        }
        let off = (at - buf_at) as usize;
        let parsed = BatchHeader::parse(&buf[off..]);
        let bad = match parsed {
            Err(e) => Some(e.to_string()),
            Ok(h) if at + h.size as u64 > len => {
                // Cut short by a crash: the last write did not finish.
                torn_at = Some(at);
                break;
            }
            Ok(h) => {
                if off + h.size > buf.len() {
                    buf = read(at, CHUNK.max(h.size))?;
                    buf_at = at;
                }
                let off = (at - buf_at) as usize;
                match batch::validate(&buf[off..off + h.size]) {
                    Err(e) => Some(e.to_string()),
                    Ok(h) if (h.base_offset as u64) < state.next_offset => Some(format!(
                        "offset {} goes back before {}",
                        h.base_offset, state.next_offset
                    )),
                    Ok(h) => {
                        state.add(base, &h, at);
                        if keep_headers > 0 {
                            if tail.len() == keep_headers {
                                tail.pop_front();
                            }
                            tail.push_back(h);
                        }
                        at += h.size as u64;
                        None
                    }
                }
            }
        };
        if let Some(detail) = bad {
            if len - at < batch::HEADER_LEN as u64 || all_zero(seg, path, at, len)? {
                torn_at = Some(at);
                break;
            }
            return Err(StoreError::Corrupt {
                file: path.display().to_string(),
                offset: at,
                detail,
            });
        }
    }
    state.synced = state.written;
    Ok(Scanned {
        state,
        tail: tail.into(),
        torn_at,
    })
}

/// Headers of the newest batches of a durable prefix `st` (at most `keep`,
/// oldest first), read in one piece from the index entry nearest `window`
/// bytes before its end; none if that entry is much further back (a few
/// huge batches), since they only seed idempotent producers' windows.
pub fn prefix_tail(
    seg: &File,
    path: &Path,
    st: &SegState,
    window: u64,
    keep: usize,
) -> Result<Vec<BatchHeader>, StoreError> {
    let want_from = st.written.saturating_sub(window);
    let from = st
        .index
        .iter()
        .find(|e| u64::from(e.position) >= want_from)
        .or(st.index.last())
        .map_or(HEADER, |e| u64::from(e.position));
    if keep == 0 || from >= st.written || st.written - from > 4 * window {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; (st.written - from) as usize];
    seg.read_exact_at(&mut buf, from)
        .map_err(|e| io_error(path, e))?;
    let all: Vec<BatchHeader> = batch::headers(&buf).map(|(_, h)| h).collect();
    Ok(all[all.len().saturating_sub(keep)..].to_vec())
}

/// Whether the file is all zeros from `from` to `len` (space a crash left
/// allocated but never written).
fn all_zero(seg: &File, path: &Path, from: u64, len: u64) -> Result<bool, StoreError> {
    let mut at = from;
    let mut buf = vec![0u8; 1 << 16];
    while at < len {
        let n = buf.len().min((len - at) as usize);
        seg.read_exact_at(&mut buf[..n], at)
            .map_err(|e| io_error(path, e))?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}
