//! The queues the simulation drives, and the broker settings each stands
//! for. The model reads the same table, so a setting changed here changes
//! both sides.

use std::time::Duration;

use ferry_core::queue::{DeadLetterPolicy, DeadLetterTarget, DedupConfig, DedupScope, QueueConfig};

pub const NAMESPACE: &str = "sim";

/// Index of the dead-letter queue every other queue sends its dead to.
pub const DLQ: usize = 4;

/// Lease length of a receive that names none (never used: every
/// simulated receive names its own).
const VISIBILITY: Duration = Duration::from_secs(10);

pub struct Spec {
    pub name: &'static str,
    pub fifo: bool,
    /// Deduplication window (queue scope, explicit ids only).
    pub dedup_window_ms: Option<u64>,
    /// Queue delay of every message (a FIFO queue ignores per-message delays).
    pub delay_ms: u64,
    /// Queue retention (a per-message TTL may shorten it).
    pub ttl_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    pub on_rejected: bool,
    pub on_expired: bool,
    pub dead_letter: Option<usize>,
}

pub const SPECS: [Spec; 5] = [
    // SQS-style standard queue: only messages received too often move.
    Spec {
        name: "std",
        fifo: false,
        dedup_window_ms: None,
        delay_ms: 0,
        ttl_ms: None,
        max_deliveries: Some(3),
        on_rejected: false,
        on_expired: false,
        dead_letter: Some(DLQ),
    },
    // RabbitMQ-style: rejected and expired messages move too; retention 30 s.
    Spec {
        name: "rej",
        fifo: false,
        dedup_window_ms: None,
        delay_ms: 0,
        ttl_ms: Some(30_000),
        max_deliveries: Some(2),
        on_rejected: true,
        on_expired: true,
        dead_letter: Some(DLQ),
    },
    // SQS FIFO queue with a 20 s deduplication window.
    Spec {
        name: "fifo",
        fifo: true,
        dedup_window_ms: Some(20_000),
        delay_ms: 0,
        ttl_ms: None,
        max_deliveries: Some(3),
        on_rejected: false,
        on_expired: false,
        dead_letter: Some(DLQ),
    },
    // FIFO with a queue delay, retention, and every reason to dead-letter.
    Spec {
        name: "fifo-slow",
        fifo: true,
        dedup_window_ms: Some(20_000),
        delay_ms: 2_000,
        ttl_ms: Some(40_000),
        max_deliveries: Some(2),
        on_rejected: true,
        on_expired: true,
        dead_letter: Some(DLQ),
    },
    // The dead-letter queue: no policy of its own, so nothing cycles.
    Spec {
        name: "dlq",
        fifo: false,
        dedup_window_ms: None,
        delay_ms: 0,
        ttl_ms: None,
        max_deliveries: None,
        on_rejected: false,
        on_expired: false,
        dead_letter: None,
    },
];

impl Spec {
    pub fn config(&self) -> QueueConfig {
        let base = if self.fifo {
            QueueConfig::fifo()
        } else {
            QueueConfig::default()
        };
        QueueConfig {
            durable: true,
            dedup: self.dedup_window_ms.map(|w| DedupConfig {
                window: Duration::from_millis(w),
                content_based: false,
                scope: DedupScope::Queue,
            }),
            visibility_timeout: VISIBILITY,
            delay: Duration::from_millis(self.delay_ms),
            message_ttl: self.ttl_ms.map(Duration::from_millis),
            dead_letter: self.dead_letter.map(|t| DeadLetterPolicy {
                target: DeadLetterTarget::Queue(SPECS[t].name.to_owned()),
                max_deliveries: self.max_deliveries,
                on_rejected: self.on_rejected,
                on_expired: self.on_expired,
                on_overflow: false,
            }),
            ..base
        }
    }
}
