//! Message id generation, injected like the clock so tests can be exact.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::MessageId;

pub trait IdGenerator: Send + Sync + 'static {
    fn next_id(&self) -> MessageId;
}

/// Unique ids without a syscall or lock per message: a random 64-bit prefix
/// chosen at start, and a counter. Shown as a UUID, it reads like a v4 one
/// (version and variant bits set) so SQS clients that parse it are content.
#[derive(Debug)]
pub struct RandomIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RandomIds {
    pub fn new() -> Self {
        // RandomState is seeded from the OS's randomness once per process.
        let s = RandomState::new();
        let prefix = s.hash_one(std::process::id()) ^ s.hash_one(std::time::SystemTime::now());
        let counter = s.hash_one(prefix);
        RandomIds {
            prefix,
            counter: AtomicU64::new(counter),
        }
    }
}

impl Default for RandomIds {
    fn default() -> Self {
        Self::new()
    }
}

impl IdGenerator for RandomIds {
    fn next_id(&self) -> MessageId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Version 4 in bits 76..80 of the u128, variant 0b10 in bits 62..64.
        let hi = (self.prefix & !0xf000) | 0x4000;
        let lo = (n & !(0b11 << 62)) | (0b10 << 62);
        MessageId((u128::from(hi) << 64) | u128::from(lo))
    }
}

/// 1, 2, 3, ...: for tests.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn next_id(&self) -> MessageId {
        MessageId(u128::from(self.0.fetch_add(1, Ordering::Relaxed) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_distinct_and_look_like_uuid_v4() {
        let g = RandomIds::new();
        let a = g.next_id();
        let b = g.next_id();
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
    }
}
