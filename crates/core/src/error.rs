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
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
}

pub type CoreResult<T> = Result<T, CoreError>;
