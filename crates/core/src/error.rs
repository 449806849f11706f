//! The core's one error type. Each protocol maps these to its own wire codes
//! in one place (an AWS error code, an AMQP reply code, a Kafka error code).

use thiserror::Error;

use crate::store::StoreError;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    #[error("namespace '{0}' does not exist")]
    NamespaceNotFound(String),
    #[error("queue '{0}' does not exist")]
    QueueNotFound(String),
    #[error("router '{0}' does not exist")]
    RouterNotFound(String),
    #[error("queue '{name}' already exists with different settings: {detail}")]
    QueueExists { name: String, detail: String },
    #[error("router '{name}' already exists with a different kind or settings")]
    RouterExists { name: String },
    #[error("queue '{0}' is exclusive to another connection")]
    ExclusiveQueue(String),
    #[error("queue '{0}' is in use (it has consumers)")]
    QueueInUse(String),
    #[error("queue '{0}' is not empty")]
    QueueNotEmpty(String),
    #[error("queue '{0}' already has an exclusive consumer")]
    ExclusiveConsumer(String),
    #[error("queue '{0}' is full")]
    QueueFull(String),
    #[error("namespace '{namespace}' has reached its limit of {limit} queues")]
    TooManyQueues { namespace: String, limit: usize },
    #[error("the lease is unknown or stale (the message was received again, acked or removed)")]
    LeaseNotFound,
    #[error("consumer not found")]
    ConsumerNotFound,
    #[error("move task '{0}' not found")]
    TaskNotFound(String),
    #[error("a move task is already running on queue '{0}'")]
    TaskRunning(String),
    #[error("no encryption key named '{0}' is configured")]
    UnknownKey(String),
    #[error("fifo, max priority, durability and exclusivity cannot change on an existing queue")]
    FixedSetting,
    #[error("a deduplication window is at most {max_secs} s")]
    DedupWindowTooLong { max_secs: u64 },
    #[error("the lease may not end more than {limit_secs} s after it began")]
    LeaseTooLong { limit_secs: u64 },
    #[error("a move task's rate must be positive")]
    InvalidRate,
    #[error("a message has no dead-letter source to return to")]
    NoDeadLetterSource,
    #[error("the default router cannot be declared")]
    DefaultRouter,
    #[error("router '{0}' is internal: publish to it through another router")]
    InternalRouter(String),
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
}

impl CoreError {
    /// One error of every kind, for the faces' tests of their error tables.
    pub fn examples() -> Vec<CoreError> {
        let all = vec![
            CoreError::NamespaceNotFound("ns".into()),
            CoreError::QueueNotFound("q".into()),
            CoreError::RouterNotFound("r".into()),
            CoreError::QueueExists {
                name: "q".into(),
                detail: "durable differs".into(),
            },
            CoreError::RouterExists { name: "r".into() },
            CoreError::ExclusiveQueue("q".into()),
            CoreError::QueueInUse("q".into()),
            CoreError::QueueNotEmpty("q".into()),
            CoreError::ExclusiveConsumer("q".into()),
            CoreError::QueueFull("q".into()),
            CoreError::TooManyQueues {
                namespace: "ns".into(),
                limit: 1,
            },
            CoreError::LeaseNotFound,
            CoreError::ConsumerNotFound,
            CoreError::TaskNotFound("t".into()),
            CoreError::TaskRunning("q".into()),
            CoreError::UnknownKey("k".into()),
            CoreError::FixedSetting,
            CoreError::DedupWindowTooLong { max_secs: 3600 },
            CoreError::LeaseTooLong { limit_secs: 43_200 },
            CoreError::InvalidRate,
            CoreError::NoDeadLetterSource,
            CoreError::DefaultRouter,
            CoreError::InternalRouter("r".into()),
            CoreError::Storage(StoreError::Full),
        ];
        // A new variant fails to compile here: list it above too.
        for e in &all {
            match e {
                CoreError::NamespaceNotFound(_)
                | CoreError::QueueNotFound(_)
                | CoreError::RouterNotFound(_)
                | CoreError::QueueExists { .. }
                | CoreError::RouterExists { .. }
                | CoreError::ExclusiveQueue(_)
                | CoreError::QueueInUse(_)
                | CoreError::QueueNotEmpty(_)
                | CoreError::ExclusiveConsumer(_)
                | CoreError::QueueFull(_)
                | CoreError::TooManyQueues { .. }
                | CoreError::LeaseNotFound
                | CoreError::ConsumerNotFound
                | CoreError::TaskNotFound(_)
                | CoreError::TaskRunning(_)
                | CoreError::UnknownKey(_)
                | CoreError::FixedSetting
                | CoreError::DedupWindowTooLong { .. }
                | CoreError::LeaseTooLong { .. }
                | CoreError::InvalidRate
                | CoreError::NoDeadLetterSource
                | CoreError::DefaultRouter
                | CoreError::InternalRouter(_)
                | CoreError::Storage(_) => {}
            }
        }
        all
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
