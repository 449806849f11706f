//! Kafka's RecordBatch (magic 2): the unit the streams engine stores.
//!
//! A batch is kept on disk exactly as a producer sent it, with only the
//! fields outside its CRC rewritten (base offset, leader epoch), so a fetch
//! hands stored bytes back without re-encoding. The layout (big-endian):
//!
//! ```text
//!  0 baseOffset i64        12 partitionLeaderEpoch i32   16 magic i8 (= 2)
//!  8 batchLength i32       17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16        23 lastOffsetDelta i32        27 baseTimestamp i64
//! 35 maxTimestamp i64      43 producerId i64             51 producerEpoch i16
//! 53 baseSequence i32      57 recordCount i32            61 records...
//! ```
//!
//! `batchLength` counts the bytes after itself, so a batch is
//! `12 + batchLength` bytes. Attributes: bits 0-2 compression, bit 3 the
//! timestamp type (log-append time), bit 4 transactional, bit 5 control.
//!
//! Records inside (after inflating, when bits 0-2 name a codec) are each: length varint, attributes
//! i8, timestampDelta varlong, offsetDelta varint, key (varint length, -1
//! for none), value (likewise), header count varint, then each header's key
//! (varint length) and value (varint length, -1 for none); varints are
//! zig-zag encoded.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes before the first record.
pub const HEADER_LEN: usize = 61;
/// The only record format this engine stores.
pub const MAGIC: i8 = 2;
/// Bytes of `baseOffset` and `batchLength`, before what `batchLength` counts.
pub const LOG_OVERHEAD: usize = 12;

const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// A batch that cannot be stored as it is.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {have} bytes of {need}")]
    Truncated { have: usize, need: usize },
    #[error("unsupported record format (magic {0}); only magic 2 is stored")]
    Magic(i8),
    #[error("record batch length {0} is invalid")]
    Length(i32),
    #[error("record batch CRC mismatch")]
    Crc,
    #[error("record batch says {count} records but its offsets span {span}")]
    Count { count: i32, span: i64 },
    #[error("record is malformed: {0}")]
    Record(&'static str),
    #[error("{codec} records cannot be inflated: {reason}")]
    Compression { codec: &'static str, reason: String },
}

/// How a batch's records are compressed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// A codec number Kafka does not define.
    Unknown(u8),
}

/// The fixed fields of a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The whole batch's size in bytes (`12 + batchLength`).
    pub size: usize,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    i16::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header at the start of `b` (which may hold more than the
    /// batch, or only its first [`HEADER_LEN`] bytes). Checks the magic and
    /// the length, not the CRC.
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        // Indexing below is within HEADER_LEN, checked here.
        if b.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                have: b.len(),
                need: HEADER_LEN,
            });
        }
        let magic = b[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(BatchError::Magic(magic));
        }
        let length = be_i32(b, 8);
        let size = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|s| *s >= HEADER_LEN)
            .ok_or(BatchError::Length(length))?;
        Ok(BatchHeader {
            base_offset: be_i64(b, 0),
            size,
            leader_epoch: be_i32(b, LEADER_EPOCH_AT),
            attributes: be_i16(b, ATTRIBUTES_AT),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, MAX_TIMESTAMP_AT),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        })
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The sequence number of the batch's last record (wrapping as Kafka's do).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        // Sequences wrap at i32::MAX back to 0.
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    pub fn compression(&self) -> Compression {
        match self.attributes & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            n => Compression::Unknown(n as u8),
        }
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the producer asked for idempotence (it has an id).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

/// The CRC-32C a batch carries, computed over `attributes` to the end.
fn crc_of(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default())
}

/// Checks a whole batch: header, size, CRC, and that its record count
/// matches its offsets (a producer's batch has no gaps).
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if batch.len() != h.size {
        return Err(BatchError::Truncated {
            have: batch.len(),
            need: h.size,
        });
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&batch[CRC_AT..CRC_AT + 4]);
    if u32::from_be_bytes(stored) != crc_of(batch) {
        return Err(BatchError::Crc);
    }
    let span = i64::from(h.last_offset_delta) + 1;
    if h.record_count <= 0 || i64::from(h.record_count) != span {
        return Err(BatchError::Count {
            count: h.record_count,
            span,
        });
    }
    Ok(h)
}

/// Splits the records of one produce partition into its batches, each
/// validated. Zero copy: the batches are slices of `records`.
pub fn split(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = &records[at..];
        let h = BatchHeader::parse(rest)?;
        if rest.len() < h.size {
            return Err(BatchError::Truncated {
                have: rest.len(),
                need: h.size,
            });
        }
        let h = validate(&rest[..h.size])?;
        out.push((h, records.slice(at..at + h.size)));
        at += h.size;
    }
    Ok(out)
}

/// Sets `batchLength` to what `batch` holds and recomputes its CRC: for a
/// batch whose records were replaced (the log seals them at rest, and
/// opens them again). A buffer shorter than a header is left as it is.
pub fn reframe(batch: &mut [u8]) {
    if batch.len() < HEADER_LEN {
        return;
    }
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc_of(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A copy of `batch` as the log stores it: its first record at
/// `base_offset`, the leader epoch set, and with `append_time` the batch's
/// timestamps made log-append time (which changes the CRC, recomputed).
pub fn stamp(batch: &[u8], base_offset: u64, leader_epoch: i32, append_time: Option<i64>) -> Bytes {
    let mut b = BytesMut::from(batch);
    if b.len() < HEADER_LEN {
        // Callers pass validated batches; keep this total anyway.
        return b.freeze();
    }
    b[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    b[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(ts) = append_time {
        let attrs = be_i16(&b, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&ts.to_be_bytes());
        let crc = crc_of(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
    b.freeze()
}

/// Walks the batches laid back to back in `buf` (a log read), yielding each
/// header and where it starts; stops at the first that does not fit whole.
pub fn headers(buf: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = buf.get(at..)?;
        let h = BatchHeader::parse(rest).ok()?;
        if rest.len() < h.size {
            return None;
        }
        let start = at;
        at += h.size;
        Some((start, h))
    })
}

/// One record of a batch, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes records into one uncompressed batch (for publishes that do not
/// arrive as Kafka batches, and for tests). Offsets and timestamps are
/// taken relative to the first record's.
pub fn build(records: &[Record], producer: Option<(i64, i16, i32)>) -> Bytes {
    let base_offset = records.first().map_or(0, |r| r.offset);
    let base_ts = records.first().map_or(0, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let mut body = BytesMut::new();
    for r in records {
        let mut rec = BytesMut::new();
        rec.put_i8(0);
        put_varlong(&mut rec, r.timestamp - base_ts);
        put_varlong(&mut rec, r.offset - base_offset);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let last_delta = records.last().map_or(0, |r| r.offset - base_offset) as i32;
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    b.put_i64(base_offset);
    b.put_i32((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32);
    b.put_i32(-1);
    b.put_i8(MAGIC);
    b.put_u32(0);
    b.put_i16(0);
    b.put_i32(last_delta);
    b.put_i64(base_ts);
    b.put_i64(max_ts);
    b.put_i64(pid);
    b.put_i16(epoch);
    b.put_i32(seq);
    b.put_i32(records.len() as i32);
    b.extend_from_slice(&body);
    let crc = crc_of(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// The records of a batch, inflated first if its producer compressed them
/// (see [`super::compression`]). Uncompressed records are zero copy:
/// keys and values are slices of `batch`.
pub fn records(batch: &Bytes) -> Result<Vec<Record>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let end = h.size.min(batch.len());
    let body = match h.compression() {
        Compression::None => batch.slice(HEADER_LEN..end),
        codec => {
            let packed = batch.get(HEADER_LEN..end).unwrap_or_default();
            Bytes::from(super::compression::inflate(codec, packed)?)
        }
    };
    let mut r = Reader {
        buf: &body,
        at: 0,
        end: body.len(),
    };
    let count = usize::try_from(h.record_count).map_err(|_| BatchError::Record("count"))?;
    // A record is at least 7 bytes; the count is checked against what is
    // there as the records are read, not trusted for the allocation.
    let mut out = Vec::with_capacity(count.min(body.len() / 7).min(4096));
    for i in 0..count {
        let len = r.varint()?;
        let end =
            r.at.checked_add(usize::try_from(len).map_err(|_| BatchError::Record("length"))?)
                .filter(|e| *e <= r.end)
                .ok_or(BatchError::Record("length"))?;
        let outer = r.end;
        r.end = end;
        let _attributes = r.byte()?;
        let ts_delta = r.varint()?;
        let off_delta = r.varint()?;
        // A producer numbers its records 0, 1, 2...: a batch that does
        // not (say, a compressed one whose inside was never checked when
        // it was stored) would hand out one offset many times.
        if off_delta != i as i64 {
            return Err(BatchError::Record("offset deltas are not 0, 1, 2..."));
        }
        let key = r.bytes()?;
        let value = r.bytes()?;
        let n = r.varint()?;
        let n = usize::try_from(n).map_err(|_| BatchError::Record("header count"))?;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = r.bytes()?.ok_or(BatchError::Record("null header key"))?;
            let k = String::from_utf8(k.to_vec()).map_err(|_| BatchError::Record("header key"))?;
            headers.push((k, r.bytes()?));
        }
        if r.at != end {
            return Err(BatchError::Record("record length"));
        }
        r.end = outer;
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        out.push(Record {
            offset: h.base_offset.wrapping_add(off_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
    end: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        if self.at >= self.end {
            return Err(BatchError::Record("truncated"));
        }
        let b = self
            .buf
            .get(self.at)
            .copied()
            .ok_or(BatchError::Record("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    /// A zig-zag varint of up to 64 bits.
    fn varint(&mut self) -> Result<i64, BatchError> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(BatchError::Record("varint too long"))
    }

    fn bytes(&mut self) -> Result<Option<Bytes>, BatchError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| BatchError::Record("length"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.end)
            .ok_or(BatchError::Record("field past its record"))?;
        let b = self.buf.slice(self.at..end);
        self.at = end;
        Ok(Some(b))
    }
}

fn put_varlong(b: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    b.put_u8(z as u8);
}

fn put_bytes(b: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => put_varlong(b, -1),
        Some(v) => {
            put_varlong(b, v.len() as i64);
            b.extend_from_slice(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, ts: i64, key: Option<&str>, value: &str) -> Record {
        Record {
            offset,
            timestamp: ts,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"v"))),
                ("n".into(), None),
            ],
        }
    }

    #[test]
    fn built_batches_validate_and_decode_back() {
        let rs = vec![rec(0, 1000, Some("k"), "one"), rec(1, 1005, None, "two")];
        let b = build(&rs, Some((7, 1, 3)));
        let h = validate(&b).unwrap();
        assert_eq!((h.record_count, h.last_offset_delta), (2, 1));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 1, 3)
        );
        assert_eq!(h.last_sequence(), 4);
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(records(&b).unwrap(), rs);
    }

    /// `batch` with its records gzipped, as a producer set to gzip sends it.
    fn gzipped(batch: &Bytes) -> Bytes {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&batch[HEADER_LEN..]).unwrap();
        let mut b = batch[..HEADER_LEN].to_vec();
        b.extend_from_slice(&e.finish().unwrap());
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&1i16.to_be_bytes());
        reframe(&mut b);
        Bytes::from(b)
    }

    #[test]
    fn compressed_batches_decode_to_the_same_records() {
        let rs = vec![rec(5, 1000, Some("k"), "one"), rec(6, 1005, None, "two")];
        let plain = build(&rs, None);
        let packed = gzipped(&plain);
        let h = validate(&packed).unwrap();
        assert_eq!(h.compression(), Compression::Gzip);
        assert_eq!(records(&packed).unwrap(), rs);
        // Damaged compressed records are an error, not a panic.
        let mut bad = packed.to_vec();
        bad.truncate(HEADER_LEN + 4);
        reframe(&mut bad);
        assert!(matches!(
            records(&Bytes::from(bad)),
            Err(BatchError::Compression { codec: "gzip", .. })
        ));
    }

    #[test]
    fn stamping_moves_offsets_and_keeps_the_crc_valid() {
        let b = build(&[rec(0, 10, None, "a"), rec(1, 20, None, "b")], None);
        let s = stamp(&b, 40, 0, None);
        let h = validate(&s).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch), (40, 0));
        assert_eq!(records(&s).unwrap()[1].offset, 41);
        let s = stamp(&b, 40, 0, Some(99));
        let h = validate(&s).unwrap();
        assert!(h.is_log_append_time());
        assert!(records(&s).unwrap().iter().all(|r| r.timestamp == 99));
    }

    #[test]
    fn damage_is_refused() {
        let b = build(&[rec(0, 10, None, "abc")], None);
        let mut bad = b.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(validate(&bad), Err(BatchError::Crc));
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut magic = b.to_vec();
        magic[MAGIC_AT] = 1;
        assert_eq!(validate(&magic), Err(BatchError::Magic(1)));
        let mut len = b.to_vec();
        len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(validate(&len), Err(BatchError::Length(-5)));
        assert!(split(&Bytes::from_static(&[0u8; 10])).is_err());
        // Records that do not number themselves 0, 1, 2... inside.
        let repeated = build(&[rec(0, 10, None, "a"), rec(0, 10, None, "b")], None);
        assert!(matches!(records(&repeated), Err(BatchError::Record(_))));
    }

    #[test]
    fn split_and_headers_walk_batches_back_to_back() {
        let a = build(&[rec(0, 1, None, "a")], None);
        let b = build(&[rec(0, 2, None, "bb"), rec(1, 3, None, "c")], None);
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b);
        let both = both.freeze();
        let parts = split(&both).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1, b);
        let starts: Vec<usize> = headers(&both).map(|(at, _)| at).collect();
        assert_eq!(starts, vec![0, a.len()]);
        // A torn second batch stops the walk after the first.
        assert_eq!(headers(&both[..both.len() - 1]).count(), 1);
    }

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i64::MAX, i64::MIN] {
            let mut b = BytesMut::new();
            put_varlong(&mut b, v);
            let bytes = b.freeze();
            let mut r = Reader {
                buf: &bytes,
                at: 0,
                end: bytes.len(),
            };
            assert_eq!(r.varint().unwrap(), v);
        }
    }
}
