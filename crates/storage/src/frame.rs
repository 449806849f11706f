//! Record framing, shared by every log ferry writes:
//!
//! ```text
//! +-----------+-----------+------+-----------------+
//! | len: u32  | crc: u32  | kind | payload         |
//! +-----------+-----------+------+-----------------+
//!   LE, bytes   CRC32C of     u8    len - 1 bytes
//!   after crc   len..payload
//! ```
//!
//! The CRC covers the length too, so a torn or flipped length is caught
//! like a torn payload.

use thiserror::Error;

pub const FRAME_HEADER: usize = 8;
/// The largest frame written or read: room for the largest message any
/// face accepts (512 MiB of body) with its properties, headers and
/// sealing, and far below what a corrupt length could otherwise make a
/// reader allocate. The journal refuses to write a larger one (the
/// append fails whole) rather than leave a frame recovery would refuse.
pub const MAX_FRAME: usize = 576 * 1024 * 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside the frame (a torn write, or the end of data).
    #[error("frame runs past the end ({have} of {need} bytes)")]
    Short { have: usize, need: usize },
    #[error("frame length {0} is impossible")]
    BadLength(usize),
    #[error("frame checksum mismatch")]
    BadCrc,
}

/// Appends a frame whose payload `write` appends, returning its kind;
/// returns the frame's total size.
pub fn put(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER + 1]);
    let kind = write(out);
    out[start + FRAME_HEADER] = kind;
    finish(out, start)
}

/// Fills in the header of a frame whose kind and payload are already at
/// `out[start + FRAME_HEADER..]`; returns the frame's total size.
pub fn finish(out: &mut [u8], start: usize) -> usize {
    let len = out.len() - start - FRAME_HEADER;
    let len_bytes = (len as u32).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len_bytes);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    FRAME_HEADER + len
}

/// A frame read from a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub payload: &'a [u8],
    /// Total size, header included.
    pub size: usize,
}

/// Reads the frame at the start of `buf`.
pub fn read(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Short {
            have: buf.len(),
            need: FRAME_HEADER,
        });
    }
    let len_bytes = [buf[0], buf[1], buf[2], buf[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::BadLength(len));
    }
    let need = FRAME_HEADER + len;
    if buf.len() < need {
        return Err(FrameError::Short {
            have: buf.len(),
            need,
        });
    }
    let want = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER..need];
    if crc32c::crc32c_append(crc32c::crc32c(&len_bytes), body) != want {
        return Err(FrameError::BadCrc);
    }
    Ok(Frame {
        kind: body[0],
        payload: &body[1..],
        size: need,
    })
}

/// The first offset at or after `from` where a whole, valid frame starts.
/// Recovery tells a torn tail (nothing valid after the damage: cut it off)
/// from damage inside the data (something valid after it) with this.
pub fn resync(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(FRAME_HEADER)).find(|&p| read(&data[p..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        let n = put(&mut buf, |b| {
            b.extend_from_slice(b"hello");
            7
        });
        assert_eq!(n, buf.len());
        let f = read(&buf).expect("frame");
        assert_eq!((f.kind, f.payload, f.size), (7, &b"hello"[..], n));
        for cut in 0..buf.len() {
            assert!(read(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(read(&bad).is_err(), "flip at {i}");
        }
    }
}
