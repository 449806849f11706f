//! Committed offsets: where each consumer group is in each partition, and
//! the storage boundary that keeps them. The durable implementation is
//! `ferry-storage`'s offsets log; [`MemoryOffsets`] keeps nothing.

use crate::store::{Commit, StoreError};

/// One group's position in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub namespace: String,
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

/// What a commit stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the group will read (Kafka's convention).
    pub offset: i64,
    /// The leader epoch the client saw (-1: none); handed back as given.
    pub leader_epoch: i32,
    /// The client's own string (Kafka's `offset.metadata.max.bytes` caps it).
    pub metadata: String,
    /// When the broker took the commit, in ms since the epoch.
    pub commit_ms: i64,
}

/// One change to the committed offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetChange {
    Commit(OffsetKey, Committed),
    /// Forgets one partition's offset (OffsetDelete, a deleted topic).
    Delete(OffsetKey),
    /// Forgets every offset of a group (DeleteGroups, expiry).
    DeleteGroup {
        namespace: String,
        group: String,
    },
}

/// Where committed offsets live.
///
/// Invariants every implementation keeps:
/// - Changes apply in the order of `record` calls, and within a call in
///   vector order; `load` gives the result of applying every durable
///   change (a `Commit` replaces an earlier one of the same key; a
///   `Delete` or `DeleteGroup` removes what it names).
/// - `record` never blocks on I/O; the [`Commit`] it returns completes
///   once the changes (and every change recorded before them) are
///   durable, or fails if they never will be. A change whose commit has
///   not completed may be lost by a crash; one whose commit completed is
///   not.
/// - What is stored is bounded by what is live (old versions of a key are
///   compacted away), so `load`'s cost does not grow with the number of
///   commits ever made.
pub trait OffsetStore: Send + Sync + 'static {
    /// Every committed offset, as of the last durable change.
    fn load(&self) -> Result<Vec<(OffsetKey, Committed)>, StoreError>;
    /// Records `changes` (see the invariants above).
    fn record(&self, changes: Vec<OffsetChange>) -> Commit;
}

/// Offsets kept in memory only: nothing to load, every change "durable"
/// at once (the groups keep the live offsets themselves).
#[derive(Default)]
pub struct MemoryOffsets;

impl OffsetStore for MemoryOffsets {
    fn load(&self) -> Result<Vec<(OffsetKey, Committed)>, StoreError> {
        Ok(Vec::new())
    }

    fn record(&self, _changes: Vec<OffsetChange>) -> Commit {
        Commit::done()
    }
}
