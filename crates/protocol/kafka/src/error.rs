//! The one table from the streams engine's refusals to Kafka error codes
//! (with the message Kafka's newer responses can carry).

use ferry_core::group::GroupError;
use ferry_core::store::StoreError;
use ferry_core::stream::StreamError;
use ferry_core::stream::batch::BatchError;
use kafka_protocol::ResponseError;

/// The Kafka error for a refusal.
pub fn kafka_error(e: &StreamError) -> ResponseError {
    match e {
        StreamError::UnknownStream(_) | StreamError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        StreamError::StreamExists(_) => ResponseError::TopicAlreadyExists,
        StreamError::InvalidName(_) => ResponseError::InvalidTopicException,
        StreamError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        StreamError::InvalidConfig(_) => ResponseError::InvalidConfig,
        StreamError::InvalidBatch(BatchError::Magic(_)) => {
            ResponseError::UnsupportedForMessageFormat
        }
        StreamError::InvalidBatch(_) => ResponseError::CorruptMessage,
        StreamError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        // Transactions come in a later release; the message says so.
        StreamError::Transactional => ResponseError::InvalidRequest,
        StreamError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StreamError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        StreamError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StreamError::TooManyPartitions(_) => ResponseError::PolicyViolation,
        StreamError::Storage(StoreError::Closed) => ResponseError::NotLeaderOrFollower,
        StreamError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

/// The code and message of a refusal.
pub fn code_and_message(e: &StreamError) -> (i16, String) {
    (kafka_error(e).code(), e.to_string())
}

/// Names Kafka accepts for a topic: 1 to 249 of `[a-zA-Z0-9._-]`, not `.`
/// or `..`.
pub fn valid_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is illegal"));
    }
    if name.len() > 249 {
        return Err("topic name is longer than 249 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "topic name {name:?} has characters other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The Kafka error for a group coordinator's refusal.
pub fn group_error(e: &GroupError) -> ResponseError {
    match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
        GroupError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::FencedInstanceId(_) => ResponseError::FencedInstanceId,
        GroupError::GroupMaxSizeReached(_) => ResponseError::GroupMaxSizeReached,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::GroupIdNotFound(_) => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
        // The offsets log failed: clients retry against "another"
        // coordinator, which is where an operator's fix shows up.
        GroupError::Store(_) => ResponseError::CoordinatorNotAvailable,
    }
}

/// The error code of a group call's outcome (0 for success).
pub fn group_code<T>(r: &Result<T, GroupError>) -> i16 {
    match r {
        Ok(_) => 0,
        Err(e) => group_error(e).code(),
    }
}
