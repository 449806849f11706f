//! Receipt handles: an opaque, URL-safe encoding of the core lease and the
//! queue it belongs to. A handle that does not decode, or names another
//! queue, is invalid; one that decodes but whose lease went stale (the
//! message was received again) is refused by the core.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_core::queue::Lease;
use ferry_core::store::QueueId;

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 8 + 4 + 4 + 4;

pub fn encode(queue: QueueId, lease: Lease) -> String {
    let mut b = [0u8; LEN];
    b[0] = VERSION;
    b[1..9].copy_from_slice(&queue.0.to_be_bytes());
    b[9..17].copy_from_slice(&lease.seq.to_be_bytes());
    b[17..21].copy_from_slice(&lease.slot.to_be_bytes());
    b[21..25].copy_from_slice(&lease.delivery.to_be_bytes());
    b[25..29].copy_from_slice(&lease.epoch.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// The lease in `handle`, if it is a well-formed handle of `queue`.
pub fn decode(queue: QueueId, handle: &str) -> Option<Lease> {
    let b = URL_SAFE_NO_PAD.decode(handle.trim()).ok()?;
    if b.len() != LEN || b.first() != Some(&VERSION) {
        return None;
    }
    let u64_at = |i: usize| Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    if u64_at(1)? != queue.0 {
        return None;
    }
    Some(Lease {
        seq: u64_at(9)?,
        slot: u32_at(17)?,
        delivery: u32_at(21)?,
        epoch: u32_at(25)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let lease = Lease {
            seq: 42,
            slot: 7,
            delivery: 3,
            epoch: 99,
        };
        let h = encode(QueueId(5), lease);
        assert_eq!(decode(QueueId(5), &h), Some(lease));
        assert_eq!(decode(QueueId(6), &h), None, "another queue's handle");
        assert_eq!(decode(QueueId(5), "garbage!"), None);
        assert_eq!(decode(QueueId(5), ""), None);
        assert_eq!(decode(QueueId(5), &h[..h.len() - 2]), None);
    }
}
