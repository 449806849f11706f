//! Dispatch: a request's header picks its handler; every handler decodes
//! its own body and gives back the answer.

mod admin;
mod fetch;
mod fetch_session;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod producers;
mod topics;
mod unsupported;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use ferry_auth::Access;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

pub use fetch_session::FetchSessions;

use crate::Kafka;
use crate::session::{Answer, Client};
use crate::wire::{self, DecodeError, Header};

pub async fn handle(kafka: &Arc<Kafka>, client: &Arc<Client>, frame: Bytes) -> Answer {
    let (h, key, mut r) = match wire::header(frame) {
        Ok(x) => x,
        Err(e) => return Answer::Close(e.to_string()),
    };
    let Some(key) = key else {
        return Answer::Close(format!("unknown api key {}", h.api_key));
    };
    if matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        // Only before the session starts (sasl.rs); re-authentication
        // (KIP-368) is not supported.
        return sasl_state(&h, key);
    }
    if key == ApiKey::ApiVersions {
        return Answer::Now(api_versions_answer(&h));
    }
    let served = wire::supported(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&h.version));
    if !served {
        return unsupported::answer(&h, key);
    }
    let v = h.version;
    let answer = match key {
        ApiKey::Metadata => metadata::metadata(kafka, client, &h, &mut r).await,
        ApiKey::Produce => produce::produce(kafka, client, &h, &mut r),
        ApiKey::Fetch => fetch::fetch(kafka, client, &h, &mut r),
        ApiKey::ListOffsets => fetch::list_offsets(kafka, client, &h, &mut r),
        ApiKey::CreateTopics => topics::create_topics(kafka, client, &h, &mut r).await,
        ApiKey::DeleteTopics => topics::delete_topics(kafka, client, &h, &mut r).await,
        ApiKey::InitProducerId => producers::init_producer_id(kafka, &h, &mut r),
        ApiKey::FindCoordinator => groups::find_coordinator(kafka, &h, &mut r),
        ApiKey::JoinGroup => groups::join_group(kafka, client, &h, &mut r),
        ApiKey::SyncGroup => groups::sync_group(kafka, client, &h, &mut r),
        ApiKey::Heartbeat => groups::heartbeat(kafka, client, &h, &mut r),
        ApiKey::LeaveGroup => groups::leave_group(kafka, client, &h, &mut r),
        ApiKey::DescribeGroups => groups::describe_groups(kafka, client, &h, &mut r),
        ApiKey::ListGroups => groups::list_groups(kafka, client, &h, &mut r),
        ApiKey::DeleteGroups => groups::delete_groups(kafka, client, &h, &mut r),
        ApiKey::OffsetCommit => offsets::offset_commit(kafka, client, &h, &mut r),
        ApiKey::OffsetFetch => offsets::offset_fetch(kafka, client, &h, &mut r),
        ApiKey::OffsetDelete => offsets::offset_delete(kafka, client, &h, &mut r),
        ApiKey::CreatePartitions => admin::create_partitions(kafka, client, &h, &mut r),
        ApiKey::DeleteRecords => admin::delete_records(kafka, client, &h, &mut r),
        ApiKey::DescribeConfigs => admin::describe_configs(kafka, client, &h, &mut r),
        ApiKey::AlterConfigs => admin::alter_configs(kafka, client, &h, &mut r, false),
        ApiKey::IncrementalAlterConfigs => admin::alter_configs(kafka, client, &h, &mut r, true),
        ApiKey::DescribeCluster => admin::describe_cluster(kafka, &h, &mut r),
        _ => Ok(unsupported::answer(&h, key)),
    };
    answer.unwrap_or_else(|e: DecodeError| Answer::Close(format!("{key:?} v{v}: {e}")))
}

/// ApiVersions' answer, in the version asked for if it is served (else,
/// Kafka's rule, in version 0 with UNSUPPORTED_VERSION and the versions
/// it has), before and after SASL alike.
pub fn api_versions_answer(h: &Header) -> Option<Bytes> {
    match wire::supported(ApiKey::ApiVersions) {
        Some((lo, hi)) if (lo..=hi).contains(&h.version) => {
            metadata::api_versions(h, h.version, false)
        }
        _ => metadata::api_versions(h, 0, true),
    }
}

/// SASL after the session started: ILLEGAL_SASL_STATE.
fn sasl_state(h: &Header, key: ApiKey) -> Answer {
    let code = kafka_protocol::ResponseError::IllegalSaslState.code();
    let v = h.version;
    let encoded = match key {
        ApiKey::SaslHandshake => try_frame(
            h,
            key,
            v,
            &kafka_protocol::messages::SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(crate::sasl::MECHANISMS.iter().map(|m| text(*m)).collect()),
        ),
        _ => try_frame(
            h,
            key,
            v,
            &kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(
                    "already authenticated; re-authentication is not supported",
                ))),
        ),
    };
    match encoded {
        Ok(f) => Answer::Now(Some(f)),
        Err(e) => Answer::Close(format!("{key:?} v{v}: {e}")),
    }
}

/// A response frame: size, header (in the version `key` takes at `version`),
/// body. `None` (logged) if the message cannot be encoded in that version,
/// which is a bug here, never the client's doing.
pub fn frame<T: Encodable>(h: &Header, key: ApiKey, version: i16, body: &T) -> Option<Bytes> {
    try_frame(h, key, version, body)
        .map_err(
            |e| tracing::error!(?key, version, error = %e, "could not encode a kafka response"),
        )
        .ok()
}

/// A response frame, or why `body` cannot be encoded in `version` (a
/// field set that the version lacks, or a version past the crate's).
pub fn try_frame<T: Encodable>(
    h: &Header,
    key: ApiKey,
    version: i16,
    body: &T,
) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(h.correlation_id);
    let header_version = key.response_header_version(version);
    // Sized up front: a fetch answer holds up to megabytes of records, and
    // growing the buffer as it is written would copy them again.
    let size = header
        .compute_size(header_version)
        .and_then(|hs| Ok(hs + body.compute_size(version)?))
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .and_then(|()| body.encode(&mut buf, version))
        .map_err(|e| e.to_string())?;
    let size = (buf.len() - 4) as i32;
    if let Some(head) = buf.get_mut(..4) {
        head.copy_from_slice(&size.to_be_bytes());
    }
    Ok(buf.freeze())
}

pub fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Whether the client may do `access` to `topic`.
pub fn may(client: &Client, access: Access, topic: &str) -> bool {
    client.user.may(&client.namespace, access, topic)
}
