//! Inflating the records of a compressed RecordBatch, for the faces that
//! read records one by one (AMQP stream consumers; later Kinesis and Redis
//! streams). The log never inflates: it stores and serves a producer's
//! batch as it came, and Kafka consumers inflate it themselves.
//!
//! What each codec holds, as Kafka's clients write it:
//! - gzip: one or more gzip members (RFC 1952).
//! - snappy: either raw snappy (librdkafka, kafkajs) or the xerial
//!   framing of snappy-java (the Java client, kafka-python): a 16-byte
//!   header, then blocks of a big-endian u32 length and a raw snappy chunk.
//! - lz4: LZ4 frames (the standard frame format, for magic 2).
//! - zstd: one or more zstd frames.
//!
//! Invariant: what a batch inflates to is at most [`MAX_INFLATED`] bytes,
//! checked as it inflates, so a small hostile batch cannot make a reader
//! allocate without bound.

use std::io::Read;

use super::batch::{BatchError, Compression};

/// The most bytes one batch's records may inflate to. Producers batch a
/// megabyte or so before compressing (librdkafka's `batch.size`, the Java
/// client's 16 KiB), so this leaves them room while bounding a reader.
pub const MAX_INFLATED: usize = 64 << 20;

/// The xerial (snappy-java) stream header: a magic and two version words.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// The records section of a batch compressed with `codec`, inflated.
pub fn inflate(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    inflate_within(codec, data, MAX_INFLATED)
}

/// [`inflate`] with the bound as a parameter (tests use a small one).
fn inflate_within(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_bounded("gzip", flate2::read::MultiGzDecoder::new(data), limit),
        Compression::Snappy => snappy(data, limit),
        Compression::Lz4 => lz4(data, limit),
        Compression::Zstd => zstd(data, limit),
        Compression::Unknown(n) => Err(BatchError::Compression {
            codec: "unknown",
            reason: format!("codec {n} is not one Kafka defines"),
        }),
    }
}

fn failed(codec: &'static str, e: impl std::fmt::Display) -> BatchError {
    BatchError::Compression {
        codec,
        reason: e.to_string(),
    }
}

fn too_large(codec: &'static str, limit: usize) -> BatchError {
    failed(codec, format!("inflates past {limit} bytes"))
}

/// Reads `r` to its end, refusing more than `limit` bytes.
fn read_bounded(codec: &'static str, r: impl Read, limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| failed(codec, e))?;
    if out.len() > limit {
        return Err(too_large(codec, limit));
    }
    Ok(out)
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    if !data.starts_with(XERIAL_MAGIC) {
        let mut out = Vec::new();
        raw_snappy(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| failed("snappy", "xerial header truncated"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| failed("snappy", "xerial block length truncated"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(failed("snappy", "xerial block truncated"));
        }
        let (chunk, after) = tail.split_at(len);
        raw_snappy(chunk, &mut out, limit)?;
        rest = after;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its stated length first.
fn raw_snappy(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), BatchError> {
    let len = snap::raw::decompress_len(block).map_err(|e| failed("snappy", e))?;
    if out.len().saturating_add(len) > limit {
        return Err(too_large("snappy", limit));
    }
    let at = out.len();
    out.resize(at + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[at..])
        .map_err(|e| failed("snappy", e))?;
    out.truncate(at + n);
    Ok(())
}

/// Inflates frame after frame of `data` (a producer may write several)
/// with `one`, which opens a decoder on what is left, reads at most `room`
/// bytes of its frame into `out` and leaves the rest after it.
fn frames(
    codec: &'static str,
    data: &[u8],
    limit: usize,
    mut one: impl FnMut(&mut &[u8], &mut Vec<u8>, u64) -> std::io::Result<()>,
) -> Result<Vec<u8>, BatchError> {
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let before = rest.len();
        // `out` is at most `limit` here (checked below), so room >= 1.
        let room = (limit + 1 - out.len()) as u64;
        one(&mut rest, &mut out, room).map_err(|e| failed(codec, e))?;
        if out.len() > limit {
            return Err(too_large(codec, limit));
        }
        if rest.len() == before {
            return Err(failed(codec, "a frame that reads nothing"));
        }
    }
    Ok(out)
}

fn lz4(data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    frames("lz4", data, limit, |rest, out, room| {
        lz4_flex::frame::FrameDecoder::new(rest)
            .take(room)
            .read_to_end(out)
            .map(drop)
    })
}

fn zstd(data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    frames("zstd", data, limit, |rest, out, room| {
        ruzstd::decoding::StreamingDecoder::new(rest)
            .map_err(std::io::Error::other)?
            .take(room)
            .read_to_end(out)
            .map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4_frame(data: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd_frame(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn xerial(data: &[u8], block: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for chunk in data.chunks(block) {
            let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn every_codec_inflates_what_its_producers_write() {
        let data = sample();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let cases = [
            (Compression::None, data.clone()),
            (Compression::Gzip, gzip(&data)),
            (Compression::Snappy, raw_snappy),
            (Compression::Snappy, xerial(&data, 32 * 1024)),
            (Compression::Lz4, lz4_frame(&data)),
            (Compression::Zstd, zstd_frame(&data)),
        ];
        for (codec, packed) in cases {
            assert_eq!(inflate(codec, &packed).unwrap(), data, "{codec:?}");
        }
    }

    #[test]
    fn concatenated_members_and_frames_inflate_whole() {
        let (a, b) = (b"first part ".repeat(50), b"second part".repeat(70));
        let joined = [a.clone(), b.clone()].concat();
        let two_gzip = [gzip(&a), gzip(&b)].concat();
        assert_eq!(inflate(Compression::Gzip, &two_gzip).unwrap(), joined);
        let two_zstd = [zstd_frame(&a), zstd_frame(&b)].concat();
        assert_eq!(inflate(Compression::Zstd, &two_zstd).unwrap(), joined);
        let two_lz4 = [lz4_frame(&a), lz4_frame(&b)].concat();
        assert_eq!(inflate(Compression::Lz4, &two_lz4).unwrap(), joined);
    }

    #[test]
    fn damage_and_unknown_codecs_are_errors_not_panics() {
        let data = sample();
        for (codec, mut packed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Snappy, xerial(&data, 4096)),
            (Compression::Lz4, lz4_frame(&data)),
            (Compression::Zstd, zstd_frame(&data)),
        ] {
            packed.truncate(packed.len() / 2);
            assert!(
                matches!(inflate(codec, &packed), Err(BatchError::Compression { .. })),
                "{codec:?} truncated"
            );
        }
        assert!(inflate(Compression::Snappy, b"\xff\xff\xff\xff\x0f").is_err());
        assert!(inflate(Compression::Unknown(6), b"x").is_err());
        // A xerial block that claims more than is there.
        let mut torn = xerial(&data, 4096);
        torn.truncate(XERIAL_HEADER_LEN + 6);
        assert!(inflate(Compression::Snappy, &torn).is_err());
    }

    #[test]
    fn a_bomb_is_refused_at_the_bound() {
        const LIMIT: usize = 1 << 20;
        let zeros = vec![0u8; LIMIT + 1];
        for (codec, packed) in [
            (Compression::Gzip, gzip(&zeros)),
            (Compression::Lz4, lz4_frame(&zeros)),
            (Compression::Zstd, zstd_frame(&zeros)),
            (Compression::Snappy, xerial(&zeros, 64 * 1024)),
        ] {
            assert!(packed.len() < LIMIT / 16, "{codec:?} packs small");
            let e = inflate_within(codec, &packed, LIMIT).unwrap_err();
            assert!(e.to_string().contains("inflates past"), "{codec:?}: {e}");
            // Exactly at the bound is allowed.
            let at = &zeros[..LIMIT];
            let fits = match codec {
                Compression::Gzip => gzip(at),
                Compression::Lz4 => lz4_frame(at),
                Compression::Zstd => zstd_frame(at),
                _ => xerial(at, 64 * 1024),
            };
            assert_eq!(inflate_within(codec, &fits, LIMIT).unwrap().len(), LIMIT);
        }
    }
}
