use thiserror::Error;

use crate::store::StoreError;

/// Why a group call was refused. Each variant is one of Kafka's group
/// error codes (the Kafka face's error table maps them one to one).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("session timeout {given} ms is outside {min}..={max} ms")]
    InvalidSessionTimeout { given: i32, min: i32, max: i32 },
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    /// A new dynamic member must rejoin with the id it was given (KIP-394).
    #[error("rejoin with member id {0}")]
    MemberIdRequired(String),
    #[error("generation {given} is not the group's generation {current}")]
    IllegalGeneration { given: i32, current: i32 },
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the member's protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("another member has joined with group instance id {0}")]
    FencedInstanceId(String),
    #[error("the group has its most members ({0})")]
    GroupMaxSizeReached(usize),
    #[error("the group is being deleted")]
    CoordinatorNotAvailable,
    #[error("no group {0}")]
    GroupIdNotFound(String),
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group's members are subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("metadata of {given} bytes is over the {max}-byte limit")]
    OffsetMetadataTooLarge { given: usize, max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}
