//! Framing a record for disk, sealed when it carries message data and the
//! journal (or the record's queue) has a key, and opening it again. Shared
//! by segments and kept-keys files, which seal alike.

use ferry_core::store::{Record, StoreError};

use crate::codec;
use crate::frame;
use crate::seal::{Keyring, SEALED, SEALED_NAMED, SealError};

/// A record sealed for its frame: the inner record's kind, the key's name
/// if a queue's (copied to the stack, so the caller's borrow of the name
/// ends here), and the ciphertext.
pub(super) struct Sealed {
    kind: u8,
    named: Option<([u8; 64], usize)>,
    ciphertext: Vec<u8>,
}

/// Seals `r`, to be framed at (`segment`, `offset`), under the queue's key
/// `name` or else the journal's; `None` when neither is given (it stays in
/// the clear). A new data key is made in memory (saved by the caller before
/// the frame is written): this fails only without randomness, or if a queue
/// names a key that was never given (the core checks).
pub(super) fn seal(
    keyring: &Keyring,
    name: Option<&str>,
    segment: u64,
    offset: u64,
    r: &Record,
) -> Result<Option<Sealed>, StoreError> {
    if name.is_none() && !keyring.has_key(None) {
        return Ok(None);
    }
    seal_under(keyring, name, segment, offset, r).map(Some)
}

/// Seals `r` under key `name` (`None`: the journal's), as [`seal`] does.
pub(super) fn seal_under(
    keyring: &Keyring,
    name: Option<&str>,
    segment: u64,
    offset: u64,
    r: &Record,
) -> Result<Sealed, StoreError> {
    let seal_error = |e: SealError| StoreError::Io(format!("sealing a record: {e}"));
    let mut plain = Vec::new();
    let kind = codec::encode(r, &mut plain);
    let ciphertext = keyring
        .seal(name, segment, offset, kind, &plain)
        .map_err(seal_error)?;
    // Names are at most 64 bytes (checked when given).
    let named = name.map(|n| {
        let len = n.len().min(64);
        let mut buf = [0u8; 64];
        buf[..len].copy_from_slice(&n.as_bytes()[..len]);
        (buf, len)
    });
    Ok(Sealed {
        kind,
        named,
        ciphertext,
    })
}

/// How a frame of kind `kind` with `payload` was sealed: `None` in the
/// clear, `Some(None)` under the journal's key, `Some(Some(name))` under a
/// queue's (for a frame that opened: its layout is known good).
pub(super) fn sealed_under(kind: u8, payload: &[u8]) -> Option<Option<String>> {
    match kind {
        SEALED => Some(None),
        SEALED_NAMED => {
            let len = usize::from(*payload.get(1)?);
            let name = payload.get(2..2 + len)?;
            Some(std::str::from_utf8(name).ok().map(str::to_owned))
        }
        _ => None,
    }
}

/// Appends `r`'s frame to `out` (its sealed form if given); returns the
/// frame's size.
pub(super) fn put_frame(out: &mut Vec<u8>, r: &Record, sealed: Option<&Sealed>) -> usize {
    frame::put(out, |out| match sealed {
        Some(Sealed {
            kind,
            named,
            ciphertext,
        }) => {
            out.push(*kind);
            let frame_kind = match named {
                Some((name, len)) => {
                    out.push(*len as u8);
                    out.extend_from_slice(&name[..*len]);
                    SEALED_NAMED
                }
                None => SEALED,
            };
            out.extend_from_slice(ciphertext);
            frame_kind
        }
        None => codec::encode(r, out),
    })
}

/// Why a framed record did not come back.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// Damaged bytes (or a record forged without the key).
    Damaged(String),
    /// Sealed, and the key to open it is missing: not damage to skip.
    NoKey(String),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Damaged(d) | Unreadable::NoKey(d) => f.write_str(d),
        }
    }
}

/// The record framed at (`segment`, `offset`), opened first if sealed.
pub(crate) fn decode_frame(
    keyring: Option<&Keyring>,
    segment: u64,
    offset: u64,
    kind: u8,
    payload: &[u8],
) -> Result<Record, Unreadable> {
    let damaged = |what: &str| Unreadable::Damaged(what.to_owned());
    if kind != SEALED && kind != SEALED_NAMED {
        let r = codec::decode(kind, payload).map_err(|e| Unreadable::Damaged(e.to_string()))?;
        // In a segment whose messages are sealed, a message in the clear
        // was not written by this broker.
        if matches!(r, Record::Enqueued { .. } | Record::DedupKept { .. })
            && keyring.is_some_and(|k| k.has(segment))
        {
            return Err(damaged("a message in the clear in an encrypted segment"));
        }
        return Ok(r);
    }
    let (&inner, rest) = payload
        .split_first()
        .ok_or_else(|| damaged("an empty sealed record"))?;
    let (name, sealed) = if kind == SEALED_NAMED {
        let (&len, rest) = rest
            .split_first()
            .ok_or_else(|| damaged("a sealed record without its key's name"))?;
        let (name, sealed) = rest
            .split_at_checked(usize::from(len))
            .ok_or_else(|| damaged("a sealed record without its key's name"))?;
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|n| crate::seal::valid_key_name(n))
            .ok_or_else(|| damaged("a sealed record naming no valid key"))?;
        (Some(name), sealed)
    } else {
        (None, rest)
    };
    let which = || match name {
        Some(n) => format!("the queue key '{n}'"),
        None => "the journal's key".to_owned(),
    };
    let Some(k) = keyring else {
        return Err(Unreadable::NoKey(format!(
            "a record sealed with {}, and no encryption key",
            which()
        )));
    };
    if !k.has_data_key(name, segment) {
        return Err(Unreadable::NoKey(format!(
            "segment {segment} has no data key of {} in keys.json (restored without it?)",
            which()
        )));
    }
    let plain = k
        .open_record(name, segment, offset, inner, sealed)
        .map_err(|e| Unreadable::Damaged(e.to_string()))?;
    codec::decode(inner, &plain).map_err(|e| Unreadable::Damaged(e.to_string()))
}
