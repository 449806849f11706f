//! Messages of one queue: peek without consuming, publish a test message,
//! and redrive (move a dead-letter queue's messages back or elsewhere).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use base64::Engine;
use ferry_core::broker::MoveTaskInfo;
use ferry_core::message::Message;
use ferry_core::queue::{Enqueued, Peeked, ReceiveMode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::headers::{headers_json, json_headers};
use super::queues::find;
use super::{ApiError, ApiResult, body, broker, core_error, required_body};
use crate::admin::AdminState;

/// Most messages one peek returns.
const PEEK_MAX: usize = 100;

/// `limit=N` from a query string (read by hand: a bad one is a JSON 400
/// like every other API error).
fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("limit="));
    match value {
        None => Ok(10),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(PEEK_MAX))
            .map_err(|_| ApiError::bad_request(format!("limit '{v}': expected a count"))),
    }
}

pub(super) async fn peek(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let b = broker(&s)?;
    let q = find(b, &ns, &name)?;
    let limit = limit(query.as_deref())?;
    let b = std::sync::Arc::clone(b);
    // Evicted messages are read back from the journal: not on the async threads.
    let peeked = super::blocking("peek", move || b.peek(&q, limit)).await?;
    let list: Vec<Value> = peeked.iter().map(peeked_json).collect();
    Ok(Json(Value::Array(list)).into_response())
}

fn peeked_json(p: &Peeked) -> Value {
    let m = &p.message;
    let (body, encoding) = match std::str::from_utf8(&m.body) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&m.body),
            "base64",
        ),
    };
    json!({
        "id": m.id.to_string(),
        "size": m.body.len(),
        "body": body,
        "body_encoding": encoding,
        "headers": headers_json(&m.headers),
        "routing_key": m.routing_key,
        "router": m.router,
        "delivery_count": p.deliveries,
        "persistent": m.persistent,
        "published_at": m.published_at.as_millis(),
    })
}

/// What POST …/get takes (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Get {
    /// How many messages at most (default 1, at most 100).
    count: Option<usize>,
    /// Put them back instead of removing them (counts as a delivery).
    #[serde(default)]
    requeue: bool,
}

/// Takes messages off a queue: delivered, then acked (or requeued), as a
/// consumer would. What `ferry consume` uses.
pub(super) async fn get(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let q = find(b, &ns, &name)?;
    let g: Get = body(&bytes, "get")?;
    let count = g.count.unwrap_or(1).clamp(1, PEEK_MAX);
    let b = std::sync::Arc::clone(b);
    let taken = super::blocking("get", move || {
        let deliveries = b.receive(&q, count, ReceiveMode::Hold);
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let settled = if g.requeue {
                b.nack(&q, d.lease, true)
            } else {
                b.ack(&q, d.lease)
            };
            if settled.is_ok() {
                out.push(Peeked {
                    message: d.message,
                    deliveries: d.delivery_count,
                    enqueued_at: d.enqueued_at,
                });
            }
        }
        out
    })
    .await?;
    let list: Vec<Value> = taken.iter().map(peeked_json).collect();
    Ok(Json(Value::Array(list)).into_response())
}

/// What POST …/messages takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    body: String,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    persistent: Option<bool>,
}

pub(super) async fn publish(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let q = find(b, &ns, &name)?;
    let p: Publish = required_body(&bytes, "message")?;
    let mut msg = Message::new(p.body.into_bytes());
    msg.routing_key = name.clone();
    msg.headers = json_headers(p.headers);
    if p.persistent.unwrap_or(true) {
        msg = msg.persistent();
    }
    let (sent, commit) = b.send(&q, msg).map_err(core_error)?;
    commit.wait().await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the message could not be stored: {e}"),
        )
    })?;
    let published = matches!(sent.outcome, Enqueued::Accepted { .. });
    let status = super::created_or_ok(published);
    Ok((
        status,
        Json(json!({ "published": published, "id": sent.id.to_string() })),
    )
        .into_response())
}

/// What POST …/redrive takes (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Redrive {
    /// Another queue of the namespace; none: where each message came from.
    destination: Option<String>,
    /// Messages per second; none: as fast as possible.
    rate: Option<u32>,
}

fn task_json(t: &MoveTaskInfo) -> Value {
    let status = match &t.status {
        ferry_core::broker::MoveStatus::Running => "running".to_owned(),
        ferry_core::broker::MoveStatus::Completed => "completed".to_owned(),
        ferry_core::broker::MoveStatus::Cancelling => "cancelling".to_owned(),
        ferry_core::broker::MoveStatus::Cancelled => "cancelled".to_owned(),
        ferry_core::broker::MoveStatus::Failed(why) => format!("failed: {why}"),
    };
    json!({
        "id": t.id,
        "source": t.source,
        "destination": t.destination,
        "rate": t.rate,
        "status": status,
        "moved": t.moved,
        "to_move": t.to_move,
        "started_at": t.started_at.as_millis(),
    })
}

pub(super) async fn redrive(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let r: Redrive = body(&bytes, "redrive")?;
    let id = b
        .start_move_task(&ns, &name, r.destination.as_deref(), r.rate)
        .map_err(core_error)?;
    let task = b
        .move_tasks(&ns, Some(&name))
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("move task {id} vanished")))?;
    Ok((StatusCode::ACCEPTED, Json(task_json(&task))).into_response())
}

pub(super) async fn redrives(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = broker(&s)?;
    find(b, &ns, &name)?;
    let list: Vec<Value> = b
        .move_tasks(&ns, Some(&name))
        .iter()
        .map(task_json)
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}
