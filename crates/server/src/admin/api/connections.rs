//! Client connections of every connection-oriented face (the HTTP
//! protocols are connectionless), and their consumers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_face::ConnectionInfo;
use serde_json::{Value, json};

use super::{ApiError, ApiResult};
use crate::admin::AdminState;

/// Connection ids in the API carry their protocol, `amqp-7`, so an id
/// says where it came from; the number alone is unique across faces.
fn api_id(c: &ConnectionInfo) -> String {
    format!("{}-{}", c.protocol, c.id)
}

pub(super) async fn list(State(s): State<AdminState>) -> ApiResult {
    let list: Vec<Value> = s
        .connections
        .list()
        .iter()
        .map(|c| {
            let rates = s.rates.connection(c.id);
            json!({
                "id": api_id(c),
                "protocol": c.protocol,
                "peer": c.peer.to_string(),
                "user": c.user,
                "namespace": c.namespace,
                "connected_at": c.connected_at,
                "channels": c.channels,
                "consumers": c.consumers.len(),
                "recv_bytes": c.recv_bytes,
                "sent_bytes": c.sent_bytes,
                "recv_messages": c.recv_messages,
                "sent_messages": c.sent_messages,
                "recv_rate": rates.recv_bytes,
                "sent_rate": rates.sent_bytes,
                "recv_message_rate": rates.recv_messages,
                "sent_message_rate": rates.sent_messages,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

pub(super) async fn close(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let not_found = || ApiError::not_found(format!("no open connection '{id}'"));
    // `PROTOCOL-N`: the protocol must be the connection's own.
    let (protocol, n) = id.rsplit_once('-').ok_or_else(not_found)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return Err(not_found());
    }
    let n: u64 = n.parse().map_err(|_| not_found())?;
    if !s
        .connections
        .close_if(protocol, n, "Closed via the ferry admin API")
    {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn consumers(State(s): State<AdminState>) -> ApiResult {
    let mut list = Vec::new();
    for c in s.connections.list() {
        for k in &c.consumers {
            list.push(json!({
                "namespace": c.namespace,
                "queue": k.queue,
                "connection": api_id(&c),
                "protocol": c.protocol,
                "channel": k.channel,
                "tag": k.tag,
                "prefetch": k.prefetch,
                "ack_required": k.ack_required,
            }));
        }
    }
    Ok(Json(Value::Array(list)).into_response())
}
