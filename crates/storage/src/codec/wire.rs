//! Primitive encoders and a bounds-checked decoder. Decoding never panics:
//! every read checks what is left and fails with [`DecodeError`].

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record ends early (wanted {wanted} more bytes at {at})")]
    Short { at: usize, wanted: usize },
    #[error("bad varint at {0}")]
    Varint(usize),
    #[error("text is not UTF-8 at {0}")]
    Utf8(usize),
    #[error("unknown {what} tag {tag}")]
    Tag { what: &'static str, tag: u8 },
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    #[error("{0} bytes left over after the record")]
    Trailing(usize),
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// Appends primitive values to a buffer.
pub struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    pub fn u128_le(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32_le(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i32_le(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64_le(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// LEB128.
    pub fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub fn zigzag(&mut self, v: i64) {
        self.var(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.var(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    /// A tagged field: tag, length, then what `f` writes. Readers skip
    /// tags they do not know, so later versions can add fields.
    pub fn field(&mut self, tag: u8, f: impl FnOnce(&mut Enc<'_>)) {
        let mut inner = Vec::new();
        f(&mut Enc(&mut inner));
        self.u8(tag);
        self.bytes(&inner);
    }

    /// Ends a list of tagged fields.
    pub fn end_fields(&mut self) {
        self.u8(0);
    }
}

/// Reads primitive values from a slice.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::Short {
                at: self.pos,
                wanted: n,
            }),
        }
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> DecodeResult<bool> {
        Ok(self.u8()? != 0)
    }

    /// The next `N` bytes, for fixed-width values.
    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u128_le(&mut self) -> DecodeResult<u128> {
        self.array().map(u128::from_le_bytes)
    }

    pub fn u32_le(&mut self) -> DecodeResult<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn i32_le(&mut self) -> DecodeResult<i32> {
        self.array().map(i32::from_le_bytes)
    }

    pub fn i64_le(&mut self) -> DecodeResult<i64> {
        self.array().map(i64::from_le_bytes)
    }

    pub fn f64(&mut self) -> DecodeResult<f64> {
        self.array().map(f64::from_le_bytes)
    }

    pub fn var(&mut self) -> DecodeResult<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    return Err(DecodeError::Varint(start));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Varint(start))
    }

    pub fn var_u32(&mut self) -> DecodeResult<u32> {
        let at = self.pos;
        u32::try_from(self.var()?).map_err(|_| DecodeError::Varint(at))
    }

    pub fn zigzag(&mut self) -> DecodeResult<i64> {
        let v = self.var()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A length, checked against what is left so a corrupt one cannot make
    /// a caller reserve absurd amounts of memory.
    pub fn len(&mut self) -> DecodeResult<usize> {
        let at = self.pos;
        let n = usize::try_from(self.var()?).map_err(|_| DecodeError::Varint(at))?;
        if n > self.remaining() {
            return Err(DecodeError::Short { at, wanted: n });
        }
        Ok(n)
    }

    pub fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    pub fn owned_bytes(&mut self) -> DecodeResult<Bytes> {
        Ok(Bytes::copy_from_slice(self.bytes()?))
    }

    pub fn str(&mut self) -> DecodeResult<String> {
        let at = self.pos;
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8(at))
    }

    pub fn opt_str(&mut self) -> DecodeResult<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }

    /// Reads tagged fields until the end marker, handing each known one to
    /// `f` (which returns false for a tag it does not know: skipped).
    pub fn fields(
        &mut self,
        mut f: impl FnMut(u8, &mut Dec<'a>) -> DecodeResult<bool>,
    ) -> DecodeResult<()> {
        loop {
            let tag = self.u8()?;
            if tag == 0 {
                return Ok(());
            }
            let body = self.bytes()?;
            let mut d = Dec::new(body);
            f(tag, &mut d)?;
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn finish(self) -> DecodeResult<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            Enc(&mut buf).var(v);
            assert_eq!(Dec::new(&buf).var(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            Enc(&mut buf).zigzag(v);
            assert_eq!(Dec::new(&buf).zigzag(), Ok(v));
        }
        assert!(Dec::new(&[0xff; 11]).var().is_err());
        assert!(
            Dec::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .var()
                .is_err()
        );
    }

    #[test]
    fn lengths_beyond_the_buffer_are_refused() {
        let mut buf = Vec::new();
        Enc(&mut buf).var(1 << 40);
        assert!(matches!(
            Dec::new(&buf).bytes(),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut buf = Vec::new();
        let mut e = Enc(&mut buf);
        e.field(1, |e| e.var(7));
        e.field(99, |e| e.str("from the future"));
        e.end_fields();
        let mut seen = Vec::new();
        Dec::new(&buf)
            .fields(|tag, d| {
                if tag == 1 {
                    seen.push(d.var()?);
                    Ok(true)
                } else {
                    Ok(false)
                }
            })
            .expect("fields");
        assert_eq!(seen, [7]);
    }
}
