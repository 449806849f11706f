//! Overview, namespaces and queues.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Json};
use ferry_core::Broker;
use ferry_core::broker::QueueHandle;
use ferry_core::queue::{DeadLetterTarget, QueueConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, body, broker, core_error};
use crate::admin::AdminState;
use crate::admin::rates::Rates;

pub(super) fn queue_json(q: &QueueHandle, rates: &Rates) -> Value {
    let s = q.stats();
    let c = q.config();
    let dead_letter = c.dead_letter.as_ref().map(|p| match &p.target {
        DeadLetterTarget::Queue(q) => json!({ "queue": q, "max_deliveries": p.max_deliveries }),
        DeadLetterTarget::Router {
            router,
            routing_key,
        } => json!({ "router": router, "routing_key": routing_key, "max_deliveries": p.max_deliveries }),
        DeadLetterTarget::Discard => json!({ "discard": true, "max_deliveries": p.max_deliveries }),
    });
    json!({
        "namespace": q.namespace(),
        "name": q.name(),
        "durable": c.durable,
        "fifo": c.fifo,
        "exclusive": c.exclusive_owner.is_some(),
        "auto_delete": c.auto_delete,
        "encryption_key": c.encryption_key,
        "messages": {
            "ready": s.ready,
            "unacked": s.leased,
            "delayed": s.delayed,
            "bytes": s.bytes,
            "resident_bytes": s.resident_bytes,
        },
        "consumers": s.consumers,
        "counts": {
            "published": s.published,
            "delivered": s.delivered,
            "redelivered": s.redelivered,
            "acked": s.acked,
            "dead_lettered": s.dead_lettered,
            "expired": s.expired,
            "dropped": s.dropped,
        },
        "rates": rates.queue(q.id()),
        "dead_letter": dead_letter,
        "attributes": c.attributes,
    })
}

pub(super) fn all_queues(b: &Broker) -> Vec<Arc<QueueHandle>> {
    let mut out = Vec::new();
    for ns in b.namespace_names() {
        for name in b.queue_names(&ns).unwrap_or_default() {
            if let Ok(q) = b.queue(&ns, &name) {
                out.push(q);
            }
        }
    }
    out
}

pub(super) async fn overview(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let queues = all_queues(b);
    let mut totals = [0u64; 4];
    for q in &queues {
        let st = q.stats();
        totals[0] += st.ready;
        totals[1] += st.leased;
        totals[2] += st.delayed;
        totals[3] += st.consumers as u64;
    }
    let alarm = b.alarm().borrow().clone();
    let connections = s.connections.len();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        "namespaces": b.namespace_names().len(),
        "queues": queues.len(),
        "messages": { "ready": totals[0], "unacked": totals[1], "delayed": totals[2] },
        "consumers": totals[3],
        "connections": connections,
        "rates": s.rates.total(),
        "alarm": alarm,
    }))
    .into_response())
}

pub(super) async fn namespaces(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let list: Vec<Value> = b
        .namespace_names()
        .into_iter()
        .map(|ns| {
            let queues = b.queue_names(&ns).map(|q| q.len()).unwrap_or(0);
            let routers = b.router_names(&ns).map(|r| r.len()).unwrap_or(0);
            json!({ "name": ns, "queues": queues, "routers": routers })
        })
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

pub(super) async fn list(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let list: Vec<Value> = all_queues(b)
        .iter()
        .map(|q| queue_json(q, &s.rates))
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

pub(super) async fn one(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = broker(&s)?;
    let q = b.queue(&ns, &name).map_err(core_error)?;
    Ok(Json(queue_json(&q, &s.rates)).into_response())
}

/// What PUT /api/queues/{namespace}/{name} takes (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declare {
    durable: Option<bool>,
    fifo: Option<bool>,
    /// Seal its messages with this key (`--encryption-queue-key`).
    encryption_key: Option<String>,
}

pub(super) async fn declare(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let spec: Declare = body(&bytes, "queue settings")?;
    b.namespace(&ns).map_err(core_error)?;
    let mut config = if spec.fifo.unwrap_or(false) {
        QueueConfig::fifo()
    } else {
        QueueConfig::default()
    };
    config.durable = spec.durable.unwrap_or(true);
    config.encryption_key = spec.encryption_key;
    let (d, commit) = b.declare_queue(&ns, &name, config).map_err(core_error)?;
    super::durable(commit).await?;
    let status = super::created_or_ok(d.created);
    Ok((status, Json(queue_json(&d.queue, &s.rates))).into_response())
}

pub(super) async fn delete(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = Arc::clone(broker(&s)?);
    // Deleting or purging a deep queue touches every message: not on the
    // async threads.
    let queue = name.clone();
    let (n, commit) = super::blocking("delete", move || b.delete_queue(&ns, &queue, false, false))
        .await?
        .map_err(core_error)?;
    super::durable(commit).await?;
    Ok(Json(json!({ "deleted": name, "messages": n })).into_response())
}

pub(super) async fn purge(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = Arc::clone(broker(&s)?);
    let q = b.queue(&ns, &name).map_err(core_error)?;
    let (n, commit) = super::blocking("purge", move || b.purge(&q, false)).await?;
    super::durable(commit).await?;
    Ok(Json(json!({ "purged": n })).into_response())
}

/// The queue, or 404 naming it.
pub(super) fn find(b: &Broker, ns: &str, name: &str) -> Result<Arc<QueueHandle>, ApiError> {
    b.queue(ns, name).map_err(core_error)
}
