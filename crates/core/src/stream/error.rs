//! What the streams engine refuses. Each face maps these to its own codes
//! in one table (Kafka's in `ferry-kafka`'s `error.rs`).

use thiserror::Error;

use super::batch::BatchError;
use crate::store::StoreError;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamError {
    #[error("stream {0} does not exist")]
    UnknownStream(String),
    #[error("stream {stream} has no partition {partition}")]
    UnknownPartition { stream: String, partition: u32 },
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("invalid stream name: {0}")]
    InvalidName(String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i64),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    #[error("batch of {size} bytes is larger than the stream's max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: u32 },
    #[error("transactional batches are not supported yet")]
    Transactional,
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("offset {offset} is outside the log ({start}..{end})")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("the broker holds at most {0} partitions")]
    TooManyPartitions(usize),
    #[error(transparent)]
    Storage(#[from] StoreError),
}
