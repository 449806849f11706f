//! The records the engine writes: every durable state change, small enough
//! to replay.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::message::Message;
use crate::queue::QueueConfig;
use crate::router::{Binding, RouterConfig};

/// Where a store put an `Enqueued` record, as the store encodes it (a
/// journal: segment and offset). Opaque to the core, which keeps it with
/// the message and hands it back when the message is removed, so the store
/// can tell which of its files still hold live messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location(pub u64);

/// A queue's identity in storage; never reused within a data directory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    NamespaceCreated {
        name: String,
    },
    NamespaceDeleted {
        name: String,
    },
    QueueDeclared {
        id: QueueId,
        namespace: String,
        name: String,
        config: QueueConfig,
    },
    QueueDeleted {
        id: QueueId,
    },
    /// A persistent message entered a durable queue at `at`, having been
    /// delivered `deliveries` times before. With `replaces`, it is a copy of
    /// a live message written earlier at that location (compaction moves
    /// live messages out of old files): the old record no longer counts.
    Enqueued {
        queue: QueueId,
        seq: u64,
        at: Timestamp,
        deliveries: u32,
        message: Arc<Message>,
        replaces: Option<Location>,
        /// Moved here from another queue (a dead letter, a redrive), not
        /// sent: recovery opens no deduplication window for it.
        forwarded: bool,
    },
    /// A deduplication key that a send to `queue` opened at `at`, kept by
    /// the store after it reclaimed the send's own `Enqueued` record, so a
    /// restart within the window still answers a retry as a duplicate of
    /// message `seq`. `message` is a stand-in carrying only what the window
    /// keys and answers with: id, publish time, deduplication id, group.
    /// The core never appends it; a store hands it back on recovery.
    DedupKept {
        queue: QueueId,
        seq: u64,
        at: Timestamp,
        message: Arc<Message>,
    },
    /// The message's delivery count became `count`.
    Delivered {
        queue: QueueId,
        seq: u64,
        count: u32,
    },
    /// Acked, expired, dropped or moved away. `loc` is where its `Enqueued`
    /// record is; `None` if that record is in the same `append` call.
    Removed {
        queue: QueueId,
        seq: u64,
        loc: Option<Location>,
    },
    /// Many removed at once (purge): (seq, location) pairs.
    Purged {
        queue: QueueId,
        removed: Vec<(u64, Option<Location>)>,
    },
    RouterDeclared {
        namespace: String,
        name: String,
        config: RouterConfig,
    },
    RouterDeleted {
        namespace: String,
        name: String,
    },
    Bound {
        namespace: String,
        binding: Binding,
    },
    Unbound {
        namespace: String,
        binding: Binding,
    },
}
