//! Streams (Kafka topics) and consumer groups: partitions, offsets,
//! sizes, members and lag.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_core::group::Phase;
use ferry_core::stream::Stream;
use serde_json::{Value, json};

use super::{ApiError, ApiResult};
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
        "records": parts.iter().map(|p| p.high_watermark - p.log_start).sum::<u64>(),
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
