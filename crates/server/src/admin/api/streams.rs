//! Streams (Kafka topics) and consumer groups: partitions, offsets,
//! sizes, members and lag.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_core::group::{Committer, GroupError, OffsetCommit, Phase};
use ferry_core::stream::{Stream, StreamConfig, StreamError};
use serde_json::{Value, json};

use super::{ApiError, ApiResult, blocking, body, durable, required_body};
use crate::admin::AdminState;
use crate::streams_view::{self, StreamsAndGroups};

fn engines(s: &AdminState) -> Result<&StreamsAndGroups, ApiError> {
    s.streams.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the streams are still opening".into(),
        )
    })
}

fn stream_json(s: &Stream) -> Value {
    let meta = s.meta();
    let parts = streams_view::partitions(s);
    let config: serde_json::Map<String, Value> = s
        .config()
        .entries()
        .into_iter()
        .map(|(k, v, _)| (k.to_owned(), Value::String(v)))
        .collect();
    json!({
        "namespace": meta.namespace,
        "name": meta.name,
        "topic_id": uuid_text(meta.topic_id),
        "records": parts.iter().map(|p| p.high_watermark.saturating_sub(p.log_start)).sum::<u64>(),
        "bytes": parts.iter().map(|p| p.bytes).sum::<u64>(),
        "partitions": parts.iter().map(|p| json!({
            "partition": p.index,
            "log_start_offset": p.log_start,
            "high_watermark": p.high_watermark,
            "bytes": p.bytes,
        })).collect::<Vec<_>>(),
        "config": config,
    })
}

fn uuid_text(id: u128) -> String {
    let h = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub async fn list(State(s): State<AdminState>) -> ApiResult {
    let e = engines(&s)?;
    let mut all = e.streams.all();
    all.sort_by_key(|s| {
        let m = s.meta();
        (m.namespace, m.name)
    });
    let out: Vec<Value> = all.iter().map(|s| stream_json(s)).collect();
    Ok(Json(out).into_response())
}

pub async fn one(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let e = engines(&s)?;
    let stream = e
        .streams
        .get(&ns, &name)
        .ok_or_else(|| ApiError::not_found(format!("no stream {name} in namespace {ns}")))?;
    let mut v = stream_json(&stream);
    // The groups that have committed offsets on it, with their lag.
    let mut groups = Vec::new();
    for g in e.groups.list(&ns) {
        let lag: Vec<Value> = streams_view::group_lag(e, &ns, &g.group)
            .into_iter()
            .filter(|l| l.topic == name)
            .map(|l| json!({ "partition": l.partition, "committed": l.committed, "lag": l.lag }))
            .collect();
        if !lag.is_empty() {
            groups.push(json!({ "group": g.group, "partitions": lag }));
        }
    }
    put(&mut v, "groups", Value::Array(groups));
    Ok(Json(v).into_response())
}

fn group_json(e: &StreamsAndGroups, ns: &str, group: &str, phase: Phase, detail: bool) -> Value {
    let lags = streams_view::group_lag(e, ns, group);
    let view = e.groups.describe(ns, group);
    let mut v = json!({
        "namespace": ns,
        "group": group,
        "state": phase.name(),
        "protocol_type": view.protocol_type,
        "protocol": view.protocol,
        "generation": view.generation,
        "members": view.members.len(),
        "lag": lags.iter().map(|l| l.lag).sum::<u64>(),
    });
    if detail {
        put(
            &mut v,
            "members",
            Value::Array(
                view.members
                    .iter()
                    .map(|m| {
                        json!({
                            "member_id": m.member_id,
                            "group_instance_id": m.instance_id,
                            "client_id": m.client_id,
                            "client_host": m.client_host,
                        })
                    })
                    .collect(),
            ),
        );
        put(
            &mut v,
            "offsets",
            Value::Array(
                lags.iter()
                    .map(|l| {
                        json!({
                            "topic": l.topic,
                            "partition": l.partition,
                            "committed": l.committed,
                            "high_watermark": l.high_watermark,
                            "lag": l.lag,
                        })
                    })
                    .collect(),
            ),
        );
    }
    v
}

/// Sets `key` of the JSON object `v`.
fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

pub async fn groups(State(s): State<AdminState>) -> ApiResult {
    let e = engines(&s)?;
    let mut out = Vec::new();
    for ns in e.groups.namespaces() {
        for g in e.groups.list(&ns) {
            out.push(group_json(e, &ns, &g.group, g.phase, false));
        }
    }
    Ok(Json(out).into_response())
}

pub async fn group(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let e = engines(&s)?;
    let Some(g) = e.groups.list(&ns).into_iter().find(|g| g.group == name) else {
        return Err(ApiError::not_found(format!(
            "no group {name} in namespace {ns}"
        )));
    };
    Ok(Json(group_json(e, &ns, &name, g.phase, true)).into_response())
}

/// PUT /api/streams/{namespace}/{name}'s body.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStream {
    /// 1 if not given.
    partitions: Option<u32>,
    /// Topic config keys (`retention.ms`, ...), as Kafka names them.
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
}

fn stream_error(e: StreamError) -> ApiError {
    let status = match e {
        StreamError::UnknownStream(_) | StreamError::UnknownPartition { .. } => {
            StatusCode::NOT_FOUND
        }
        StreamError::StreamExists(_) | StreamError::TooManyPartitions(_) => StatusCode::CONFLICT,
        StreamError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        StreamError::InvalidName(_)
        | StreamError::InvalidPartitions(_)
        | StreamError::InvalidConfig(_)
        | StreamError::InvalidBatch(_)
        | StreamError::BatchTooLarge { .. }
        | StreamError::Transactional
        | StreamError::OutOfOrderSequence { .. }
        | StreamError::ProducerFenced { .. }
        | StreamError::OffsetOutOfRange { .. } => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

pub async fn create(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let e = engines(&s)?.clone();
    let req: NewStream = body(&bytes, "stream")?;
    // Names Kafka clients can address (the Kafka face's own rule).
    ferry_kafka::error::valid_topic_name(&name).map_err(ApiError::bad_request)?;
    let mut config = StreamConfig::default();
    for (k, v) in &req.config {
        config.set(k, v).map_err(ApiError::bad_request)?;
    }
    let partitions = req.partitions.unwrap_or(1);
    let created = blocking("creating the stream", move || {
        e.streams.create(&ns, &name, partitions, config)
    })
    .await?
    .map_err(stream_error)?;
    Ok((StatusCode::CREATED, Json(stream_json(&created))).into_response())
}

pub async fn delete(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let e = engines(&s)?.clone();
    let n = name.clone();
    // In one task that runs to its end even if the request is dropped: the
    // groups' offsets on the stream go with it (as DeleteTopics does),
    // also when the files could not all be removed after the stream left.
    let (deleted, forgotten) = blocking("deleting the stream", move || {
        let deleted = e.streams.delete(&ns, &n);
        let gone = e.streams.get(&ns, &n).is_none();
        let forgotten = match &deleted {
            Err(StreamError::UnknownStream(_)) => None,
            Ok(()) => Some(e.groups.forget_topic(&ns, &n)),
            Err(_) => gone.then(|| e.groups.forget_topic(&ns, &n)),
        };
        (deleted, forgotten)
    })
    .await?;
    if let Some(commit) = forgotten {
        durable(commit).await?;
    }
    deleted.map_err(stream_error)?;
    Ok(Json(json!({ "deleted": name })).into_response())
}

pub async fn delete_group(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let e = engines(&s)?;
    let commit = e.groups.delete(&ns, &name).map_err(group_error)?;
    durable(commit).await?;
    Ok(Json(json!({ "deleted": name })).into_response())
}

fn group_error(e: GroupError) -> ApiError {
    let status = match e {
        GroupError::GroupIdNotFound(_) => StatusCode::NOT_FOUND,
        // The group's members are in the way (for an admin's commit: a
        // member joined after the check).
        GroupError::NonEmptyGroup
        | GroupError::RebalanceInProgress
        | GroupError::UnknownMemberId
        | GroupError::IllegalGeneration { .. }
        | GroupError::FencedInstanceId(_)
        | GroupError::GroupSubscribedToTopic
        | GroupError::GroupMaxSizeReached(_) => StatusCode::CONFLICT,
        GroupError::CoordinatorNotAvailable => StatusCode::SERVICE_UNAVAILABLE,
        GroupError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        GroupError::InvalidGroupId
        | GroupError::InvalidSessionTimeout { .. }
        | GroupError::MemberIdRequired(_)
        | GroupError::InconsistentGroupProtocol
        | GroupError::OffsetMetadataTooLarge { .. } => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

/// POST /api/groups/{namespace}/{name}/reset-offsets's body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    stream: String,
    /// `earliest`, `latest`, or an offset.
    to: Value,
    /// Only these partitions (all if not given).
    partitions: Option<Vec<u32>>,
    /// Answer the offsets the reset would commit, and commit nothing (the
    /// default of Kafka's tool, which needs `--execute`).
    #[serde(default)]
    dry_run: bool,
}

/// Moves a group's committed offsets on one stream, as Kafka's
/// `kafka-consumer-groups --reset-offsets` does: only while the group has
/// no members (it would overwrite them at its next commit otherwise).
pub async fn reset_offsets(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let e = engines(&s)?;
    let req: Reset = required_body(&bytes, "reset")?;
    let stream = e.streams.get(&ns, &req.stream).ok_or_else(|| {
        ApiError::not_found(format!("no stream {} in namespace {ns}", req.stream))
    })?;
    // A group that does not exist yet is made by the commit (Dead here).
    if !matches!(
        e.groups.describe(&ns, &name).phase,
        Phase::Empty | Phase::Dead
    ) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("group {name} has members: stop them before resetting its offsets"),
        ));
    }
    enum To {
        Earliest,
        Latest,
        At(u64),
    }
    let to = match &req.to {
        Value::String(s) if s == "earliest" => To::Earliest,
        Value::String(s) if s == "latest" => To::Latest,
        v => To::At(v.as_u64().ok_or_else(|| {
            ApiError::bad_request("\"to\" is \"earliest\", \"latest\" or an offset")
        })?),
    };
    let parts = streams_view::partitions(&stream);
    if let Some(asked) = &req.partitions {
        if asked.is_empty() {
            return Err(ApiError::bad_request("\"partitions\" is empty"));
        }
        if let Some(missing) = asked.iter().find(|a| !parts.iter().any(|p| p.index == **a)) {
            return Err(ApiError::not_found(format!(
                "stream {} has no partition {missing}",
                req.stream
            )));
        }
    }
    let chosen: Vec<_> = parts
        .iter()
        .filter(|p| {
            req.partitions
                .as_ref()
                .is_none_or(|ps| ps.contains(&p.index))
        })
        .collect();
    let mut offsets = Vec::new();
    for p in &chosen {
        let to = match to {
            To::Earliest => p.log_start,
            To::Latest => p.high_watermark,
            // Kept within what the partition holds, as Kafka's tool does.
            To::At(n) => n.max(p.log_start).min(p.high_watermark),
        };
        offsets.push(OffsetCommit {
            topic: req.stream.clone(),
            partition: p.index,
            offset: i64::try_from(to).unwrap_or(i64::MAX),
            leader_epoch: -1,
            metadata: None,
        });
    }
    let admin = Committer {
        generation: -1,
        member_id: String::new(),
        instance_id: None,
    };
    let set: Vec<Value> = offsets
        .iter()
        .map(|o| json!({ "partition": o.partition, "offset": o.offset }))
        .collect();
    if req.dry_run {
        return Ok(Json(
            json!({ "group": name, "stream": req.stream, "offsets": set, "dry_run": true }),
        )
        .into_response());
    }
    let (answers, commit) = e
        .groups
        .commit(&ns, &name, &admin, offsets)
        .map_err(group_error)?;
    if let Some(Err(err)) = answers.into_iter().find(Result::is_err) {
        return Err(group_error(err));
    }
    durable(commit).await?;
    Ok(Json(json!({ "group": name, "stream": req.stream, "offsets": set })).into_response())
}
