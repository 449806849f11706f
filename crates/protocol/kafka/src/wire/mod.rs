//! Kafka requests off the wire. Requests are decoded here, by hand, into
//! the few fields the broker acts on; responses are encoded with the
//! `kafka-protocol` crate's generated message types (its request decoders
//! reserve memory from counts read off the wire before checking them, so
//! they are not used on what clients send).
//!
//! A frame is a 4-byte big-endian size and then the request: api key,
//! api version, correlation id, client id (a classic nullable string even
//! in flexible versions), tagged fields (flexible versions), the body.

mod admin;
mod groups;
mod reader;
mod requests;
mod sasl;
#[cfg(test)]
mod testing;

pub use admin::*;
pub use groups::*;
pub use reader::Reader;
pub use requests::*;
pub use sasl::*;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// A request's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// The versions of each API this broker serves, as ApiVersions tells them.
/// Ranges start where Kafka 4 starts them.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    // Version 0 of the handshake sends the tokens as bare frames, not as
    // SaslAuthenticate requests; clients since Kafka 1.0 use version 1.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The versions served of `key`, if it is served.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, a, b)| (*a, *b))
}

/// Decodes the body of any served request, keeping nothing: what the
/// fuzz target and the decoders' property tests drive.
pub fn decode_any(key: ApiKey, version: i16, r: &mut Reader) -> Result<(), DecodeError> {
    let v = version;
    match key {
        ApiKey::Metadata => metadata(r, v).map(drop),
        ApiKey::Produce => produce(r, v).map(drop),
        ApiKey::Fetch => fetch(r, v).map(drop),
        ApiKey::ListOffsets => list_offsets(r, v).map(drop),
        ApiKey::CreateTopics => create_topics(r, v).map(drop),
        ApiKey::DeleteTopics => delete_topics(r, v).map(drop),
        ApiKey::InitProducerId => init_producer_id(r, v).map(drop),
        ApiKey::FindCoordinator => find_coordinator(r, v).map(drop),
        ApiKey::JoinGroup => join_group(r, v).map(drop),
        ApiKey::SyncGroup => sync_group(r, v).map(drop),
        ApiKey::Heartbeat => heartbeat(r, v).map(drop),
        ApiKey::LeaveGroup => leave_group(r, v).map(drop),
        ApiKey::OffsetCommit => offset_commit(r, v).map(drop),
        ApiKey::OffsetFetch => offset_fetch(r, v).map(drop),
        ApiKey::DescribeGroups => describe_groups(r, v).map(drop),
        ApiKey::ListGroups => list_groups(r, v).map(drop),
        ApiKey::DeleteGroups => delete_groups(r, v).map(drop),
        ApiKey::OffsetDelete => offset_delete(r, v).map(drop),
        ApiKey::DeleteRecords => delete_records(r, v).map(drop),
        ApiKey::CreatePartitions => create_partitions(r, v).map(drop),
        ApiKey::DescribeConfigs => describe_configs(r, v).map(drop),
        ApiKey::AlterConfigs => alter_configs(r, v, false).map(drop),
        ApiKey::IncrementalAlterConfigs => alter_configs(r, v, true).map(drop),
        ApiKey::DescribeCluster => describe_cluster(r, v).map(drop),
        ApiKey::SaslHandshake => sasl_handshake(r, v).map(drop),
        ApiKey::SaslAuthenticate => sasl_authenticate(r, v).map(drop),
        _ => Ok(()),
    }
}

/// Whether `key` at `version` uses the flexible encoding.
pub fn flexible(key: ApiKey, version: i16) -> bool {
    key.request_header_version(version) >= 2
}

/// Reads a request's header; the reader is left at the body.
pub fn header(frame: Bytes) -> Result<(Header, Option<ApiKey>, Reader), DecodeError> {
    let mut r = Reader::new(frame, 0, false);
    let api_key = r.i16()?;
    let version = r.i16()?;
    let correlation_id = r.i32()?;
    let key = ApiKey::try_from(api_key).ok();
    let client_id = r.classic_nullable_string()?;
    if let Some(k) = key {
        r.flexible = flexible(k, version);
        r.tagged()?;
    }
    Ok((
        Header {
            api_key,
            version,
            correlation_id,
            client_id,
        },
        key,
        r,
    ))
}

#[cfg(test)]
mod any_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Every served decoder, at every served version (the list
        /// ApiVersions gives, so none is left out), on arbitrary bodies:
        /// an answer, never a panic.
        #[test]
        fn every_served_decoder_takes_arbitrary_bodies(body in testing::body()) {
            let body = Bytes::from(body);
            for &(key, lo, hi) in SUPPORTED {
                for v in lo..=hi {
                    let mut r = Reader::new(body.clone(), 0, flexible(key, v));
                    let _ = decode_any(key, v, &mut r);
                }
            }
        }
    }
}
