//! Idempotent producers, per partition: a producer id with an epoch, and
//! each batch numbered by sequence. A batch whose sequences match one of
//! the producer's last five is a retry and is answered with the original's
//! offset; one that does not follow the last is refused, as Kafka does.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
use super::error::StreamError;
use crate::store::Commit;

/// How many recent batches per producer are remembered for retries (the
/// most a Kafka client keeps in flight with idempotence on).
pub const REMEMBERED: usize = 5;

#[derive(Debug)]
struct Entry {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
    commit: Commit,
}

#[derive(Debug)]
struct Producer {
    epoch: i16,
    recent: VecDeque<Entry>,
    last_used_ms: u64,
}

/// What an idempotent batch is.
#[derive(Debug)]
pub enum Sequence {
    /// Not seen before: append it (and then [`Producers::record`] it).
    New,
    /// A retry of a batch already appended at `base_offset`; answered once
    /// `commit` (the original's) completes.
    Duplicate { base_offset: u64, commit: Commit },
}

#[derive(Debug, Default)]
pub struct Producers {
    by_id: HashMap<i64, Producer>,
}

fn follows(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

impl Producers {
    /// Checks an idempotent batch against what its producer sent before.
    pub fn check(&self, h: &BatchHeader) -> Result<Sequence, StreamError> {
        let Some(p) = self.by_id.get(&h.producer_id) else {
            // A producer this partition has not seen (or has forgotten):
            // accepted from any sequence, as Kafka does since KIP-360.
            return Ok(Sequence::New);
        };
        if h.producer_epoch < p.epoch {
            return Err(StreamError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: p.epoch,
            });
        }
        if h.producer_epoch > p.epoch {
            // A bumped epoch starts its sequences again at 0.
            if h.base_sequence != 0 {
                return Err(StreamError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(Sequence::New);
        }
        let last_seq = h.last_sequence();
        if let Some(e) = p
            .recent
            .iter()
            .find(|e| e.first_seq == h.base_sequence && e.last_seq == last_seq)
        {
            return Ok(Sequence::Duplicate {
                base_offset: e.base_offset,
                commit: e.commit.clone(),
            });
        }
        let last = p.recent.back().map_or(-1, |e| e.last_seq);
        if !follows(last, h.base_sequence) {
            return Err(StreamError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected: last.wrapping_add(1),
                got: h.base_sequence,
            });
        }
        Ok(Sequence::New)
    }

    /// Notes a batch appended at `base_offset` (after a `New` check, or in
    /// recovery, with a done commit).
    pub fn record(&mut self, h: &BatchHeader, base_offset: u64, commit: Commit, now_ms: u64) {
        let p = self.by_id.entry(h.producer_id).or_insert(Producer {
            epoch: h.producer_epoch,
            recent: VecDeque::with_capacity(REMEMBERED),
            last_used_ms: now_ms,
        });
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.recent.clear();
        }
        if p.recent.len() == REMEMBERED {
            p.recent.pop_front();
        }
        p.recent.push_back(Entry {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
            commit,
        });
        p.last_used_ms = now_ms;
    }

    /// Forgets producers idle since before `cutoff_ms` (Kafka's
    /// `producer.id.expiration.ms`); their next batch starts afresh.
    pub fn expire(&mut self, cutoff_ms: u64) {
        self.by_id.retain(|_, p| p.last_used_ms >= cutoff_ms);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::batch::{BatchHeader, Record, build, validate};
    use bytes::Bytes;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        let rs: Vec<Record> = (0..n)
            .map(|i| Record {
                offset: i as i64,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(b"x")),
                headers: vec![],
            })
            .collect();
        validate(&build(&rs, Some((pid, epoch, seq)))).unwrap()
    }

    #[test]
    fn retries_are_recognised_and_gaps_refused() {
        let mut p = Producers::default();
        let a = batch(1, 0, 0, 3);
        assert!(matches!(p.check(&a), Ok(Sequence::New)));
        p.record(&a, 10, Commit::done(), 0);
        assert!(matches!(
            p.check(&a),
            Ok(Sequence::Duplicate {
                base_offset: 10,
                ..
            })
        ));
        let b = batch(1, 0, 3, 2);
        assert!(matches!(p.check(&b), Ok(Sequence::New)));
        p.record(&b, 13, Commit::done(), 0);
        assert!(matches!(
            p.check(&batch(1, 0, 6, 1)),
            Err(StreamError::OutOfOrderSequence {
                expected: 5,
                got: 6,
                ..
            })
        ));
        assert!(matches!(p.check(&batch(1, 0, 5, 1)), Ok(Sequence::New)));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut p = Producers::default();
        let a = batch(1, 2, 0, 1);
        p.record(&a, 0, Commit::done(), 0);
        assert!(matches!(
            p.check(&batch(1, 1, 1, 1)),
            Err(StreamError::ProducerFenced { .. })
        ));
        assert!(matches!(
            p.check(&batch(1, 3, 4, 1)),
            Err(StreamError::OutOfOrderSequence { .. })
        ));
        let b = batch(1, 3, 0, 1);
        assert!(matches!(p.check(&b), Ok(Sequence::New)));
        p.record(&b, 1, Commit::done(), 0);
        // Only the last five batches are remembered.
        for i in 1..=5 {
            p.record(&batch(1, 3, i, 1), 1 + i as u64, Commit::done(), 0);
        }
        assert!(matches!(
            p.check(&b),
            Err(StreamError::OutOfOrderSequence { .. })
        ));
        p.expire(1);
        assert!(p.is_empty());
    }
}
