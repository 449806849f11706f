//! Batches sealed at rest, in segments whose header has the sealed flag
//! (written while the broker has an encryption key).
//!
//! A sealed batch keeps its 61-byte header in the clear: offsets, counts,
//! timestamps and producer fields are what the index, retention, recovery
//! and idempotent producers read, and none of them needs a key. Its records
//! (keys, values, headers) become nonce || AES-256-GCM ciphertext || tag
//! under the segment's data key from the partition's `keys.json`, and
//! `batchLength` and the CRC are reframed over the stored bytes, so a scan
//! checks a sealed batch as it checks any other. The associated data is the
//! stream, the partition, and the clear header (all of it but the CRC): a
//! batch moved to another place or relabelled does not open.
//!
//! Opening restores the batch as the producer framed it: the same records,
//! `batchLength` and CRC (recomputed; the CRC covers nothing the log
//! rewrites). A fetch from a sealed segment therefore decrypts, where a
//! clear one hands stored bytes back as they are.

use bytes::{Bytes, BytesMut};
use ferry_core::store::StoreError;
use ferry_core::stream::batch::{self, HEADER_LEN};

use crate::seal::Keyring;

/// What sealing adds to a batch: the nonce and the tag.
pub const OVERHEAD: usize = 12 + 16;

/// The CRC's place in the header, left out of the associated data (it is
/// computed over the ciphertext, after sealing).
const CRC: std::ops::Range<usize> = 17..21;
const AAD_LEN: usize = 12 + HEADER_LEN - 4;

/// Where a batch is kept: what binds it.
#[derive(Copy, Clone, Debug)]
pub struct Place {
    pub stream: u64,
    pub partition: u32,
    /// The segment's base offset, which names its data key.
    pub segment: u64,
}

fn aad(place: Place, header: &[u8]) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..8].copy_from_slice(&place.stream.to_le_bytes());
    a[8..12].copy_from_slice(&place.partition.to_le_bytes());
    a[12..12 + CRC.start].copy_from_slice(&header[..CRC.start]);
    a[12 + CRC.start..].copy_from_slice(&header[CRC.end..HEADER_LEN]);
    a
}

/// The stored form of the validated batch `raw`.
pub fn seal(keys: &Keyring, place: Place, raw: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (header, records) = raw.split_at(HEADER_LEN.min(raw.len()));
    let mut out = Vec::with_capacity(raw.len() + OVERHEAD);
    out.extend_from_slice(header);
    if out.len() < HEADER_LEN {
        return Err(StoreError::Io(
            "sealing a batch shorter than its header".into(),
        ));
    }
    // The stored length goes into the associated data: set it first.
    let stored_length = (raw.len() + OVERHEAD - batch::LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&stored_length.to_be_bytes());
    let sealed = keys
        .seal_bound(place.segment, &aad(place, &out), records)
        .map_err(|e| StoreError::Io(format!("sealing a batch: {e}")))?;
    out.extend_from_slice(&sealed);
    batch::reframe(&mut out);
    Ok(out)
}

/// The batches of a read from a sealed segment (`stored`: whole batches
/// back to back, as the segment holds them), opened.
pub fn open_all(
    keys: &Keyring,
    place: Place,
    file: &std::path::Path,
    position: u64,
    stored: &Bytes,
) -> Result<Bytes, StoreError> {
    let mut out = BytesMut::with_capacity(stored.len());
    let mut end = 0usize;
    for (at, h) in batch::headers(stored) {
        let damaged = |detail: &str| StoreError::Corrupt {
            file: file.display().to_string(),
            offset: position + at as u64,
            detail: detail.to_owned(),
        };
        let b = stored
            .get(at..at + h.size)
            .filter(|b| b.len() >= HEADER_LEN + OVERHEAD)
            .ok_or_else(|| damaged("a sealed batch is shorter than its header and seal"))?;
        let plain = keys
            .open_bound(place.segment, &aad(place, b), &b[HEADER_LEN..])
            .map_err(|e| damaged(&format!("a sealed batch does not open: {e}")))?;
        let from = out.len();
        out.extend_from_slice(&b[..HEADER_LEN]);
        out.extend_from_slice(&plain);
        batch::reframe(&mut out[from..]);
        end = at + h.size;
    }
    if end != stored.len() {
        return Err(StoreError::Corrupt {
            file: file.display().to_string(),
            offset: position + end as u64,
            detail: "a sealed read ends inside a batch".into(),
        });
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::MasterKey;
    use ferry_core::stream::batch::{Record, build, records, validate};

    const PLACE: Place = Place {
        stream: 3,
        partition: 1,
        segment: 0,
    };

    fn ring(dir: &std::path::Path) -> Keyring {
        let key = MasterKey::generate().expect("key");
        let ring = Keyring::open(dir, Some(&key), &Default::default(), &[])
            .expect("open")
            .expect("a keyring");
        ring.ensure(None, 0).expect("segment 0's data key");
        ring
    }

    fn sample() -> Bytes {
        let r = Record {
            offset: 0,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"the key")),
            value: Some(Bytes::from_static(b"secret value")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"header value")))],
        };
        let second = Record {
            offset: 1,
            ..r.clone()
        };
        build(&[r, second], Some((7, 1, 0)))
    }

    #[test]
    fn a_sealed_batch_validates_as_stored_and_opens_to_the_producers_bytes() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = ring(dir.path());
        let place = PLACE;
        let raw = sample();
        let stored = seal(&keys, place, &raw).expect("seal");
        assert_eq!(stored.len(), raw.len() + OVERHEAD);
        let h = validate(&stored).expect("a stored sealed batch passes the scan's checks");
        assert_eq!((h.record_count, h.producer_id), (2, 7));
        for secret in [&b"secret value"[..], b"the key", b"header value"] {
            assert!(
                !stored.windows(secret.len()).any(|w| w == secret),
                "{:?} is in the clear",
                String::from_utf8_lossy(secret)
            );
        }
        let two = Bytes::from([stored.clone(), stored.clone()].concat());
        let opened = open_all(&keys, place, dir.path(), 40, &two).expect("open");
        assert_eq!(opened, Bytes::from([raw.to_vec(), raw.to_vec()].concat()));
        assert_eq!(
            records(&opened.slice(..raw.len())).expect("records").len(),
            2
        );
    }

    #[test]
    fn a_batch_moved_relabelled_or_damaged_does_not_open() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = ring(dir.path());
        let place = PLACE;
        let stored = Bytes::from(seal(&keys, place, &sample()).expect("seal"));
        let elsewhere = Place {
            partition: 2,
            ..place
        };
        assert!(open_all(&keys, elsewhere, dir.path(), 40, &stored).is_err());
        // Another base offset in the clear header.
        let mut relabelled = stored.to_vec();
        relabelled[7] ^= 1;
        assert!(open_all(&keys, place, dir.path(), 40, &Bytes::from(relabelled)).is_err());
        let mut flipped = stored.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_all(&keys, place, dir.path(), 40, &Bytes::from(flipped)).is_err());
        // Cut inside a batch.
        assert!(
            open_all(
                &keys,
                place,
                dir.path(),
                40,
                &stored.slice(..stored.len() - 1)
            )
            .is_err()
        );
    }
}
