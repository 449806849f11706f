//! The storage boundary: what the engine writes, and the trait a storage
//! engine implements. The core never touches files; the durable journal
//! lives in its own crate and implements [`Store`].

mod memory;
mod record;
mod state;

pub use memory::MemoryStore;
pub use record::{Location, QueueId, Record};
pub use state::{DurableQueue, DurableState, StoredMessage};

use thiserror::Error;
use tokio::sync::watch;

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
}

/// How far a store's writer has come: everything up to `durable` is on
/// stable storage; from `failed` on, nothing will be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub durable: u64,
    pub failed: Option<(u64, StoreError)>,
}

/// Completes when appended records are durable. Awaiting it costs no
/// allocation: it watches the writer's progress for a sequence number.
#[derive(Debug)]
pub struct Commit {
    state: CommitState,
}

#[derive(Debug)]
enum CommitState {
    Done,
    Pending(u64, watch::Receiver<Progress>),
    Failed(StoreError),
}

impl Commit {
    /// Already durable (or nothing needed to be).
    pub fn done() -> Self {
        Commit {
            state: CommitState::Done,
        }
    }

    /// Durable once the writer's progress reaches `seq`.
    pub fn pending(seq: u64, progress: watch::Receiver<Progress>) -> Self {
        Commit {
            state: CommitState::Pending(seq, progress),
        }
    }

    /// Will never be durable.
    pub fn failed(err: StoreError) -> Self {
        Commit {
            state: CommitState::Failed(err),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, CommitState::Done)
    }

    /// A commit that completes when both have (they are of the same store,
    /// so waiting for the later one covers both).
    pub fn and(self, other: Commit) -> Commit {
        use CommitState::*;
        let state = match (self.state, other.state) {
            (Failed(e), _) | (_, Failed(e)) => Failed(e),
            (Done, s) | (s, Done) => s,
            (Pending(a, ra), Pending(b, rb)) => {
                if a >= b {
                    Pending(a, ra)
                } else {
                    Pending(b, rb)
                }
            }
        };
        Commit { state }
    }

    pub async fn wait(self) -> Result<(), StoreError> {
        let (seq, mut rx) = match self.state {
            CommitState::Done => return Ok(()),
            CommitState::Failed(e) => return Err(e),
            CommitState::Pending(seq, rx) => (seq, rx),
        };
        loop {
            {
                let p = rx.borrow_and_update();
                if let Some((from, err)) = &p.failed
                    && *from <= seq
                {
                    return Err(err.clone());
                }
                if p.durable >= seq {
                    return Ok(());
                }
            }
            if rx.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }
}
