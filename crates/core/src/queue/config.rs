//! What a queue is declared with.

use std::collections::BTreeMap;
use std::time::Duration;

/// Where dead-lettered messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetterTarget {
    /// A queue in the same namespace (SQS redrive policy).
    Queue(String),
    /// A router, with the routing key to use (`None`: keep the message's
    /// own); AMQP `x-dead-letter-exchange` / `x-dead-letter-routing-key`.
    Router {
        router: String,
        routing_key: Option<String>,
    },
    /// Nowhere: the message is dropped (a quorum queue's delivery limit
    /// without a dead-letter exchange).
    Discard,
}

/// When and where a queue dead-letters messages. A message that dies for a
/// reason not enabled here is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    pub target: DeadLetterTarget,
    /// Move a message after this many deliveries (SQS `maxReceiveCount`,
    /// RabbitMQ `x-delivery-limit`): it is delivered at most this often.
    pub max_deliveries: Option<u32>,
    pub on_rejected: bool,
    pub on_expired: bool,
    pub on_overflow: bool,
}

impl DeadLetterPolicy {
    /// SQS-style: only messages received too often move.
    pub fn after_deliveries(target: DeadLetterTarget, max: u32) -> Self {
        DeadLetterPolicy {
            target,
            max_deliveries: Some(max),
            on_rejected: false,
            on_expired: false,
            on_overflow: false,
        }
    }

    /// RabbitMQ-style: rejected, expired and overflowed messages move.
    pub fn all_reasons(target: DeadLetterTarget) -> Self {
        DeadLetterPolicy {
            target,
            max_deliveries: None,
            on_rejected: true,
            on_expired: true,
            on_overflow: true,
        }
    }
}

/// What happens when a queue at its max length or max bytes gets another message.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest ready messages to make room.
    #[default]
    DropHead,
    /// Refuse the new message.
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDeadLetter,
}

/// Which messages share a deduplication id space.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum DedupScope {
    #[default]
    Queue,
    /// Ids are unique per message group (SQS high-throughput FIFO).
    Group,
}

/// The longest deduplication window a queue may have: the journal keeps
/// its segments that long after a send (SQS's window is 5 minutes).
pub const MAX_DEDUP_WINDOW: Duration = Duration::from_secs(3600);

/// Deduplication of sends within a time window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    pub window: Duration,
    /// Without an explicit id, use the SHA-256 of the body.
    pub content_based: bool,
    pub scope: DedupScope,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window: Duration::from_secs(5 * 60),
            content_based: false,
            scope: DedupScope::Queue,
        }
    }
}

/// A queue's settings. Defaults are those of an SQS standard queue with no
/// limits, except where a field says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Survives a restart (with persistent messages).
    pub durable: bool,
    /// Strict order per message group; a group is blocked while one of its
    /// messages is leased.
    pub fifo: bool,
    pub dedup: Option<DedupConfig>,
    /// The lease length of a receive that does not name one.
    pub visibility_timeout: Duration,
    /// Delay of every message before it becomes visible.
    pub delay: Duration,
    /// Time to live of every message (retention); a per-message TTL may shorten it.
    pub message_ttl: Option<Duration>,
    pub max_length: Option<u64>,
    pub max_bytes: Option<u64>,
    pub overflow: Overflow,
    /// 0: no priorities. Otherwise message priorities above this are capped to it.
    pub max_priority: u8,
    pub dead_letter: Option<DeadLetterPolicy>,
    /// Deleted when its last consumer goes (if it ever had one).
    pub auto_delete: bool,
    /// Deleted after this long without consumers or use (AMQP `x-expires`).
    pub expires: Option<Duration>,
    /// Only one consumer at a time receives; the others wait their turn.
    pub single_active_consumer: bool,
    /// Owned by one connection; others may not use it.
    pub exclusive_owner: Option<u64>,
    /// The name of the master key that seals this queue's messages at rest,
    /// instead of the journal's own key (see [`crate::store::Store::has_key`]).
    pub encryption_key: Option<String>,
    /// Settings a protocol keeps with the queue that the core does not act
    /// on (SQS's Policy, tags, KMS settings, creation time), journaled with it.
    pub attributes: BTreeMap<String, String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            durable: true,
            fifo: false,
            dedup: None,
            visibility_timeout: Duration::from_secs(30),
            delay: Duration::ZERO,
            message_ttl: None,
            max_length: None,
            max_bytes: None,
            overflow: Overflow::DropHead,
            max_priority: 0,
            dead_letter: None,
            auto_delete: false,
            expires: None,
            single_active_consumer: false,
            exclusive_owner: None,
            encryption_key: None,
            attributes: BTreeMap::new(),
        }
    }
}

impl QueueConfig {
    /// A FIFO queue with SQS defaults: 5-minute deduplication window.
    pub fn fifo() -> Self {
        QueueConfig {
            fifo: true,
            dedup: Some(DedupConfig::default()),
            ..QueueConfig::default()
        }
    }
}
