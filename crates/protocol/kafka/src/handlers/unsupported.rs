//! Answers to the APIs and versions this broker does not serve. Clients
//! are meant to ask ApiVersions first and keep to what it lists; one that
//! does not still gets Kafka's own error, in the response the API has at
//! the version it asked for, wherever that response has a top-level
//! error code. Only where it has none (or the version is past what the
//! `kafka-protocol` crate knows, so no response can be written) is the
//! connection closed, as Kafka closes it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;

use super::try_frame;
use crate::session::Answer;
use crate::wire::Header;

/// The error an API that is not served at all gets, and why.
fn why_not(key: ApiKey) -> (ResponseError, &'static str) {
    match key {
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::WriteTxnMarkers
        | ApiKey::DescribeTransactions
        | ApiKey::ListTransactions => (
            ResponseError::UnsupportedVersion,
            "transactions (exactly-once) come in a later release",
        ),
        // ferry's users and permissions are managed in its own admin API.
        ApiKey::DescribeAcls | ApiKey::CreateAcls | ApiKey::DeleteAcls => (
            ResponseError::SecurityDisabled,
            "Kafka ACLs are not used: ferry's permissions apply (admin API)",
        ),
        _ => (
            ResponseError::UnsupportedVersion,
            "not served by this broker",
        ),
    }
}

/// Whether `key`'s response has its top-level error code at `version`.
/// Where the specs give the field to some versions only, the encoder
/// would drop it silently elsewhere, and an empty answer without an error
/// reads as success (an AddPartitionsToTxn with nothing to add).
fn has_top_level_error(key: ApiKey, version: i16) -> bool {
    let (lo, hi) = match key {
        ApiKey::AddPartitionsToTxn => (4, i16::MAX),
        ApiKey::DescribeLogDirs => (3, i16::MAX),
        ApiKey::ElectLeaders => (1, i16::MAX),
        ApiKey::Fetch => (7, i16::MAX),
        ApiKey::FindCoordinator => (1, 3),
        ApiKey::Metadata => (13, i16::MAX),
        ApiKey::OffsetFetch => (2, 7),
        _ => (0, i16::MAX),
    };
    (lo..=hi).contains(&version)
}

/// Kafka's error answer to `key` at `h.version`, which is not served.
pub fn answer(h: &Header, key: ApiKey) -> Answer {
    let v = h.version;
    let (error, reason) = if crate::wire::supported(key).is_some() {
        (ResponseError::UnsupportedVersion, "version not served")
    } else {
        why_not(key)
    };
    let code = error.code();
    if !has_top_level_error(key, v) {
        return Answer::Close(format!(
            "{key:?} v{v} is not served ({reason}) and its response has no error to say so"
        ));
    }
    macro_rules! top_level_error {
        ($($api:ident => $resp:ty),* $(,)?) => {
            match key {
                $(ApiKey::$api => try_frame(h, key, v, &<$resp>::default().with_error_code(code)),)*
                _ => Err(String::new()),
            }
        };
    }
    let frame = top_level_error! {
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        AddPartitionsToTxn => AddPartitionsToTxnResponse,
        AllocateProducerIds => AllocateProducerIdsResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        DescribeAcls => DescribeAclsResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        DescribeCluster => DescribeClusterResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
        DescribeQuorum => DescribeQuorumResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        ElectLeaders => ElectLeadersResponse,
        EndTxn => EndTxnResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        Fetch => FetchResponse,
        FindCoordinator => FindCoordinatorResponse,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
        Heartbeat => HeartbeatResponse,
        InitProducerId => InitProducerIdResponse,
        JoinGroup => JoinGroupResponse,
        LeaveGroup => LeaveGroupResponse,
        ListGroups => ListGroupsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        ListTransactions => ListTransactionsResponse,
        Metadata => MetadataResponse,
        OffsetDelete => OffsetDeleteResponse,
        OffsetFetch => OffsetFetchResponse,
        PushTelemetry => PushTelemetryResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        ShareAcknowledge => ShareAcknowledgeResponse,
        ShareFetch => ShareFetchResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        SyncGroup => SyncGroupResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        UpdateFeatures => UpdateFeaturesResponse,
    };
    match frame.ok() {
        Some(f) => {
            tracing::debug!(?key, version = v, %reason, "answered an api that is not served");
            Answer::Now(Some(f))
        }
        None => Answer::Close(format!(
            "{key:?} v{v} is not served ({reason}) and its response has no error to say so"
        )),
    }
}
