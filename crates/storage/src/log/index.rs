//! A segment's index file, `<base-offset:020>.index`. A closed segment's
//! is written when the segment rolls, so that opening a partition reads no
//! closed segment's data; if it is missing, damaged, or describes a
//! segment of another size, the segment is scanned instead.
//!
//! The active segment's is a recovery point: written (after a sync of the
//! segment) every few seconds and at shutdown, it describes a durable
//! prefix of the segment, so opening scans only what was written after it.
//! A prefix stays true as the segment grows; one longer than the file (a
//! power loss took data it described) is ignored.
//!
//! Layout (little-endian): magic `FERRYIDX`, format version u16, reserved
//! u16, entry count u32, the segment's size u64, next offset u64, newest
//! timestamp i64; then each entry (relative offset u32, position u32,
//! newest timestamp so far i64); then a CRC-32C of everything before it.

use std::io::Write;
use std::path::Path;

use super::segment::{IndexEntry, SegState};

const MAGIC: &[u8; 8] = b"FERRYIDX";
const VERSION: u16 = 1;
const FIXED: usize = 8 + 2 + 2 + 4 + 8 + 8 + 8;
const ENTRY: usize = 16;

pub fn encode(st: &SegState) -> Vec<u8> {
    let mut b = Vec::with_capacity(FIXED + st.index.len() * ENTRY + 4);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(st.index.len() as u32).to_le_bytes());
    b.extend_from_slice(&st.written.to_le_bytes());
    b.extend_from_slice(&st.next_offset.to_le_bytes());
    b.extend_from_slice(&st.max_ts.to_le_bytes());
    for e in &st.index {
        b.extend_from_slice(&e.relative.to_le_bytes());
        b.extend_from_slice(&e.position.to_le_bytes());
        b.extend_from_slice(&e.max_ts.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The state an index file describes, if it is whole and describes a
/// segment of `segment_len` bytes.
pub fn decode(b: &[u8], segment_len: u64) -> Option<SegState> {
    decode_any(b).filter(|st| st.written == segment_len)
}

/// The state a recovery point describes, if it is whole and describes a
/// prefix of a segment of `segment_len` bytes.
pub fn decode_prefix(b: &[u8], segment_len: u64) -> Option<SegState> {
    decode_any(b).filter(|st| (super::segment::HEADER..=segment_len).contains(&st.written))
}

fn decode_any(b: &[u8]) -> Option<SegState> {
    if b.len() < FIXED + 4 || b.get(..8)? != MAGIC {
        return None;
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32_at(crc, 0)? {
        return None;
    }
    if u16::from_le_bytes(b.get(8..10)?.try_into().ok()?) != VERSION {
        return None;
    }
    let count = u32_at(b, 12)? as usize;
    if body.len() != FIXED + count.checked_mul(ENTRY)? {
        return None;
    }
    let written = u64_at(b, 16)?;
    let mut index = Vec::with_capacity(count);
    for i in 0..count {
        let at = FIXED + i * ENTRY;
        index.push(IndexEntry {
            relative: u32_at(b, at)?,
            position: u32_at(b, at + 4)?,
            max_ts: u64_at(b, at + 8)? as i64,
        });
    }
    Some(SegState {
        written,
        synced: written,
        next_offset: u64_at(b, 24)?,
        max_ts: u64_at(b, 32)? as i64,
        index,
        first_append_ms: None,
        checkpointed: written,
    })
}

/// Writes the index beside its segment (through a temporary file and a
/// rename, so a crash leaves the old one or the new one, never half).
pub fn write(path: &Path, st: &SegState) -> std::io::Result<()> {
    write_via(path, "index.tmp", st)
}

/// Writes a recovery point (through its own temporary file: a roll may be
/// writing the full index at the same time).
pub fn write_recovery_point(path: &Path, st: &SegState) -> std::io::Result<()> {
    write_via(path, "index.point", st)
}

fn write_via(path: &Path, tmp: &str, st: &SegState) -> std::io::Result<()> {
    let tmp = path.with_extension(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&encode(st))?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage_or_a_different_segment() {
        let st = SegState {
            written: 9000,
            synced: 9000,
            next_offset: 77,
            max_ts: 1234,
            index: vec![
                IndexEntry {
                    relative: 0,
                    position: 40,
                    max_ts: 1000,
                },
                IndexEntry {
                    relative: 30,
                    position: 4200,
                    max_ts: 1234,
                },
            ],
            first_append_ms: None,
            checkpointed: 0,
        };
        let b = encode(&st);
        let back = decode(&b, 9000).unwrap();
        assert_eq!((back.next_offset, back.max_ts), (77, 1234));
        assert_eq!(back.index, st.index);
        assert!(decode(&b, 9001).is_none());
        assert_eq!(decode_prefix(&b, 9001).map(|p| p.written), Some(9000));
        assert!(
            decode_prefix(&b, 8999).is_none(),
            "a prefix longer than the file"
        );
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert!(decode(&bad, 9000).is_none());
        assert!(decode(&b[..b.len() - 1], 9000).is_none());
    }
}
