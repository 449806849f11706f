//! The records the engine writes: every durable state change, small enough
//! to replay.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::message::Message;
use crate::queue::QueueConfig;
use crate::router::{Binding, RouterConfig};

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
    /// A persistent message entered a durable queue at `at`.
    Enqueued {
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
    /// Acked, expired, dropped or moved away.
    Removed {
        queue: QueueId,
        seq: u64,
    },
    /// Many removed at once (purge).
    Purged {
        queue: QueueId,
        seqs: Vec<u64>,
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
