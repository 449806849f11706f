//! The storage boundary: what the engine writes, and the trait a storage
//! engine implements. The core never touches files; the durable journal
//! lives in its own crate and implements [`Store`].

mod commit;
mod memory;
mod record;
mod state;

pub use commit::{Commit, Tracker};
pub use memory::MemoryStore;
pub use record::{Location, QueueId, Record};
pub use state::{DurableQueue, DurableState, StoredMessage};

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("I/O error: {0}")]
    Io(String),
    #[error("no space left for the journal")]
    Full,
    #[error("corrupt record in {file} at offset {offset}: {detail}")]
    Corrupt {
        file: String,
        offset: u64,
        detail: String,
    },
    #[error("the store is closed")]
    Closed,
}

/// A storage engine for the broker's durable state.
///
/// Invariants every implementation keeps:
/// - Records are applied in the order of `append` calls; within one call, in
///   vector order. The engine calls `append` while it holds the lock of the
///   queue the records are about, so a queue's records are in the order of
///   its state changes.
/// - When `append` returns, the records are accepted but not necessarily
///   durable; the returned [`Commit`] completes once they (and every record
///   appended before them) are durable, or fails if they never will be.
/// - `append` never blocks on I/O: it hands the records to a writer.
/// - `recover` visits, in order, a sequence of records whose replay gives
///   the durable state as of the last durable record (possibly compacted:
///   records that no longer matter may be gone).
pub trait Store: Send + Sync + 'static {
    /// Takes every record out of `records` (leaving it empty for reuse) and
    /// pushes onto `locations` one [`Location`] per `Enqueued` record, in order.
    fn append(
        &self,
        records: &mut Vec<Record>,
        locations: &mut Vec<Location>,
    ) -> Result<Commit, StoreError>;
    /// Replays what is stored, oldest first; `Enqueued` records come with
    /// their location.
    fn recover(&self, visit: &mut dyn FnMut(Record, Option<Location>)) -> Result<(), StoreError>;

    /// Reads back the message an `Enqueued` record at `loc` holds (for
    /// messages the broker keeps out of memory). Stores that cannot say so
    /// in [`Store::loadable`].
    fn load(&self, _loc: Location) -> Result<std::sync::Arc<crate::message::Message>, StoreError> {
        Err(StoreError::Io(
            "this store does not read messages back".into(),
        ))
    }

    /// Whether [`Store::load`] can read the record at `loc` now (it is
    /// written, not only appended).
    fn loadable(&self, _loc: Location) -> bool {
        false
    }

    /// Recovery is over; these are the locations of the messages that
    /// survived it (by queue). A store that counts live messages per file
    /// takes its counts from here: replaying removals alone can miscount
    /// one whose message never reached the disk (a failed write).
    fn recovered(&self, _live: &mut dyn Iterator<Item = (QueueId, Location)>) {}

    /// A commit that completes once everything appended before this call is
    /// durable (a deduplicated send waits on it: its original may not be yet).
    fn barrier(&self) -> Commit {
        Commit::done()
    }

    /// Whether this store holds a master key of this name to seal a
    /// queue's messages with ([`crate::queue::QueueConfig::encryption_key`]).
    /// A queue may name only such a key.
    fn has_key(&self, _name: &str) -> bool {
        false
    }
}

/// How far a store's writer has come. Commit sequence numbers are the
/// store's own, one per `append` call, increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every commit up to here has been settled: durable, unless listed in `failed`.
    pub done: u64,
    /// Recent failed ranges `(first, last, error)`, oldest first, at most
    /// [`Progress::MAX_FAILED`] of them.
    pub failed: Vec<(u64, u64, StoreError)>,
    /// The end of the newest range dropped from `failed` to keep it short:
    /// an unlisted commit at or below it cannot be told apart and counts as
    /// failed (no confirm is ever sent for data that may be lost).
    pub forgotten: u64,
}

impl Progress {
    pub const MAX_FAILED: usize = 64;

    /// Notes that commits `first..=last` will never be durable.
    pub fn fail(&mut self, first: u64, last: u64, err: StoreError) {
        if first > last {
            return;
        }
        if self.failed.len() == Self::MAX_FAILED {
            let (_, end, _) = self.failed.remove(0);
            self.forgotten = self.forgotten.max(end);
        }
        self.failed.push((first, last, err));
        self.done = self.done.max(last);
    }

    /// Whether one of commits `first..=last` is known to have failed (a
    /// range listed in `failed`; an outcome forgotten since is unknown,
    /// not failed).
    pub fn known_failed(&self, first: u64, last: u64) -> bool {
        self.failed
            .iter()
            .any(|(a, b, _)| *a <= last && first <= *b)
    }

    /// The outcome of commits `first..=last` together, once all are settled.
    pub fn outcome_of_range(&self, first: u64, last: u64) -> Option<Result<(), StoreError>> {
        if last > self.done {
            return None;
        }
        if let Some((_, _, e)) = self
            .failed
            .iter()
            .find(|(a, b, _)| *a <= last && first <= *b)
        {
            return Some(Err(e.clone()));
        }
        self.outcome(last)
    }

    /// The outcome of commit `seq`, once settled.
    pub fn outcome(&self, seq: u64) -> Option<Result<(), StoreError>> {
        if seq > self.done {
            return None;
        }
        if let Some((_, _, e)) = self
            .failed
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&seq))
        {
            return Some(Err(e.clone()));
        }
        if seq <= self.forgotten {
            return Some(Err(StoreError::Io(
                "outcome unknown after many storage failures".into(),
            )));
        }
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_outcomes() {
        let mut p = Progress::default();
        assert_eq!(p.outcome(1), None);
        p.done = 3;
        assert_eq!(p.outcome(3), Some(Ok(())));
        p.fail(4, 5, StoreError::Full);
        assert_eq!(p.outcome(4), Some(Err(StoreError::Full)));
        assert_eq!(p.outcome(6), None);
        for i in 0..Progress::MAX_FAILED as u64 {
            p.fail(10 + 2 * i, 10 + 2 * i, StoreError::Full);
        }
        assert_eq!(p.failed.len(), Progress::MAX_FAILED);
        assert!(
            p.outcome(5).is_some_and(|o| o.is_err()),
            "forgotten failure stays a failure"
        );
        assert!(
            p.outcome(3).is_some_and(|o| o.is_err()),
            "below a forgotten failure nothing can be told apart: no confirm"
        );
        assert_eq!(p.outcome(200), None);
    }
}
