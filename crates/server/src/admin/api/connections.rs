//! Client connections (AMQP: the HTTP protocols are connectionless) and
//! their consumers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_amqp::ConnectionInfo;
use serde_json::{Value, json};

use super::{ApiError, ApiResult};
use crate::admin::AdminState;

/// Connection ids in the API carry their protocol: `amqp-7`.
const AMQP_PREFIX: &str = "amqp-";

fn connections(s: &AdminState) -> Vec<ConnectionInfo> {
    s.amqp
        .get()
        .map(|a| a.connections().list())
        .unwrap_or_default()
}

pub(super) async fn list(State(s): State<AdminState>) -> ApiResult {
    let list: Vec<Value> = connections(&s)
        .iter()
        .map(|c| {
            json!({
                "id": format!("{AMQP_PREFIX}{}", c.id),
                "protocol": "amqp",
                "peer": c.peer.to_string(),
                "user": c.user,
                "namespace": c.vhost,
                "connected_at": c.connected_at,
                "channels": c.channels,
                "consumers": c.consumers.len(),
                "recv_bytes": c.recv_bytes,
                "sent_bytes": c.sent_bytes,
                "recv_rate": s.rates.connection(c.id).0,
                "sent_rate": s.rates.connection(c.id).1,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

pub(super) async fn close(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let not_found = || ApiError::not_found(format!("no open connection '{id}'"));
    let n: u64 = id
        .strip_prefix(AMQP_PREFIX)
        .and_then(|n| n.parse().ok())
        .ok_or_else(not_found)?;
    let amqp = s.amqp.get().ok_or_else(not_found)?;
    if !amqp
        .connections()
        .close(n, "Closed via the ferry admin API")
    {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn consumers(State(s): State<AdminState>) -> ApiResult {
    let mut list = Vec::new();
    for c in connections(&s) {
        for k in &c.consumers {
            list.push(json!({
                "namespace": c.vhost,
                "queue": k.queue,
                "connection": format!("{AMQP_PREFIX}{}", c.id),
                "channel": k.channel,
                "tag": k.tag,
                "prefetch": k.prefetch,
                "ack_required": k.ack_required,
            }));
        }
    }
    Ok(Json(Value::Array(list)).into_response())
}
