//! Reading Kafka's primitive types from a request body, in both the
//! classic and the "flexible" (compact, tagged) encodings.
//!
//! Every length and count is checked against the bytes left before
//! anything is allocated for it: each array element takes at least one
//! byte on the wire, so a count larger than what remains is a malformed
//! request, not a reason to reserve gigabytes.

use bytes::Bytes;

use super::DecodeError;

pub struct Reader {
    buf: Bytes,
    at: usize,
    /// Compact lengths and tagged fields (the version is flexible).
    pub flexible: bool,
}

type R<T> = Result<T, DecodeError>;

fn short(what: &'static str) -> DecodeError {
    DecodeError::Malformed(format!("request ends inside {what}"))
}

impl Reader {
    pub fn new(buf: Bytes, at: usize, flexible: bool) -> Reader {
        Reader { buf, at, flexible }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.at)
    }

    fn take(&mut self, n: usize, what: &'static str) -> R<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| short(what))?;
        let s = self.buf.get(self.at..end).ok_or_else(|| short(what))?;
        self.at = end;
        Ok(s)
    }

    fn array_of<const N: usize>(&mut self, what: &'static str) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn i8(&mut self) -> R<i8> {
        Ok(i8::from_be_bytes(self.array_of("an int8")?))
    }

    pub fn bool(&mut self) -> R<bool> {
        Ok(self.i8()? != 0)
    }

    pub fn i16(&mut self) -> R<i16> {
        Ok(i16::from_be_bytes(self.array_of("an int16")?))
    }

    pub fn i32(&mut self) -> R<i32> {
        Ok(i32::from_be_bytes(self.array_of("an int32")?))
    }

    pub fn i64(&mut self) -> R<i64> {
        Ok(i64::from_be_bytes(self.array_of("an int64")?))
    }

    pub fn uuid(&mut self) -> R<u128> {
        Ok(u128::from_be_bytes(self.array_of("a uuid")?))
    }

    /// An unsigned varint of at most 32 bits.
    pub fn uvarint(&mut self) -> R<u32> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.array_of::<1>("a varint")?[0];
            if i == 4 && b > 0x0f {
                return Err(DecodeError::Malformed("varint longer than 32 bits".into()));
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint longer than 32 bits".into()))
    }

    /// A length prefix: `None` for null.
    fn length(&mut self, wide: bool) -> R<Option<usize>> {
        let n: i64 = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::Malformed(format!("negative length {n}"))),
            n => {
                let n = n as usize;
                if n > self.remaining() {
                    return Err(DecodeError::Malformed(format!(
                        "length {n} is more than the {} bytes left",
                        self.remaining()
                    )));
                }
                Ok(Some(n))
            }
        }
    }

    pub fn nullable_string(&mut self) -> R<Option<String>> {
        let Some(n) = self.length(false)? else {
            return Ok(None);
        };
        let b = self.take(n, "a string")?;
        std::str::from_utf8(b)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| DecodeError::Malformed("string is not UTF-8".into()))
    }

    pub fn string(&mut self) -> R<String> {
        self.nullable_string()?
            .ok_or_else(|| DecodeError::Malformed("null where a string is required".into()))
    }

    /// A string that is never compact: the request header's client id.
    pub fn classic_nullable_string(&mut self) -> R<Option<String>> {
        let flexible = std::mem::replace(&mut self.flexible, false);
        let s = self.nullable_string();
        self.flexible = flexible;
        s
    }

    /// Bytes, shared with the request buffer (no copy).
    pub fn nullable_bytes(&mut self) -> R<Option<Bytes>> {
        let Some(n) = self.length(true)? else {
            return Ok(None);
        };
        let start = self.at;
        self.take(n, "bytes")?;
        Ok(Some(self.buf.slice(start..start + n)))
    }

    /// An array of `f`'s items; `None` for a null array.
    pub fn nullable_array<T>(&mut self, mut f: impl FnMut(&mut Self) -> R<T>) -> R<Option<Vec<T>>> {
        let Some(n) = self.length(true)? else {
            return Ok(None);
        };
        // `n` is at most the bytes left (checked in `length`).
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(Some(v))
    }

    pub fn array<T>(&mut self, f: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        Ok(self.nullable_array(f)?.unwrap_or_default())
    }

    /// Skips the tagged fields of a flexible version (none otherwise).
    pub fn tagged(&mut self) -> R<()> {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size, "a tagged field")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_past_the_end_are_refused_before_allocating() {
        // An array claiming i32::MAX elements in a 6-byte body.
        let mut r = Reader::new(
            Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0]),
            0,
            false,
        );
        assert!(r.array(|r| r.i8()).is_err());
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x07]), 0, true);
        assert!(r.array(|r| r.i8()).is_err());
        let mut r = Reader::new(
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            0,
            true,
        );
        assert!(r.uvarint().is_err());
    }

    #[test]
    fn compact_and_classic_strings() {
        let mut r = Reader::new(
            Bytes::from_static(&[0, 2, b'h', b'i', 3, b'y', b'o', 0]),
            0,
            false,
        );
        assert_eq!(r.string().unwrap(), "hi");
        r.flexible = true;
        assert_eq!(r.string().unwrap(), "yo");
        assert_eq!(r.nullable_string().unwrap(), None);
        assert!(r.i8().is_err());
    }
}
