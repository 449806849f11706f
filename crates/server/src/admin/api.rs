//! The admin API, version 1: the broker's state as JSON, and the actions
//! an operator needs without writing code (declare, delete, purge).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get};
use ferry_core::broker::QueueHandle;
use ferry_core::queue::{DeadLetterTarget, QueueConfig};
use ferry_core::{Broker, CoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/namespaces", get(namespaces))
        .route("/api/queues", get(queues))
        .route(
            "/api/queues/{namespace}/{name}",
            get(queue).put(declare).delete(delete_queue),
        )
        .route("/api/queues/{namespace}/{name}/contents", delete(purge))
        .route("/api/routers", get(routers))
}

/// A JSON error: `{"error": <status text>, "reason": <what happened>}`.
pub fn error(status: StatusCode, reason: &str) -> Response {
    let text = status.canonical_reason().unwrap_or("error").to_lowercase();
    (status, Json(json!({ "error": text, "reason": reason }))).into_response()
}

/// A failed API call: its status and reason.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

type ApiResult = Result<Response, ApiError>;

fn broker(s: &AdminState) -> Result<&Arc<Broker>, ApiError> {
    s.broker.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker is still recovering".into(),
        )
    })
}

fn core_error(e: CoreError) -> ApiError {
    let status = match e {
        CoreError::NamespaceNotFound(_)
        | CoreError::QueueNotFound(_)
        | CoreError::RouterNotFound(_) => StatusCode::NOT_FOUND,
        CoreError::QueueExists { .. } | CoreError::RouterExists { .. } => StatusCode::CONFLICT,
        CoreError::ExclusiveQueue(_) => StatusCode::LOCKED,
        CoreError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

fn queue_json(q: &QueueHandle) -> Value {
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
        "dead_letter": dead_letter,
        "attributes": c.attributes,
    })
}

fn all_queues(b: &Broker) -> Vec<Arc<QueueHandle>> {
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

async fn overview(State(s): State<AdminState>) -> ApiResult {
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
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        "namespaces": b.namespace_names().len(),
        "queues": queues.len(),
        "messages": { "ready": totals[0], "unacked": totals[1], "delayed": totals[2] },
        "consumers": totals[3],
        "alarm": alarm,
    }))
    .into_response())
}

async fn namespaces(State(s): State<AdminState>) -> ApiResult {
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

async fn queues(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let list: Vec<Value> = all_queues(b).iter().map(|q| queue_json(q)).collect();
    Ok(Json(Value::Array(list)).into_response())
}

async fn queue(State(s): State<AdminState>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let b = broker(&s)?;
    let q = b.queue(&ns, &name).map_err(core_error)?;
    Ok(Json(queue_json(&q)).into_response())
}

/// What PUT /api/queues/{namespace}/{name} takes (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declare {
    durable: Option<bool>,
    fifo: Option<bool>,
}

async fn declare(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> ApiResult {
    let b = broker(&s)?;
    let spec: Declare = match body {
        None => Declare::default(),
        Some(Json(v)) => serde_json::from_value(v)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad queue settings: {e}")))?,
    };
    b.namespace(&ns).map_err(core_error)?;
    let mut config = if spec.fifo.unwrap_or(false) {
        QueueConfig::fifo()
    } else {
        QueueConfig::default()
    };
    config.durable = spec.durable.unwrap_or(true);
    let d = b.declare_queue(&ns, &name, config).map_err(core_error)?;
    let status = if d.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(queue_json(&d.queue))).into_response())
}

async fn delete_queue(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = broker(&s)?;
    let n = b
        .delete_queue(&ns, &name, false, false)
        .map_err(core_error)?;
    Ok(Json(json!({ "deleted": name, "messages": n })).into_response())
}

async fn purge(State(s): State<AdminState>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let b = broker(&s)?;
    let q = b.queue(&ns, &name).map_err(core_error)?;
    let n = b.purge(&q, false);
    Ok(Json(json!({ "purged": n })).into_response())
}

async fn routers(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let mut list = Vec::new();
    for ns in b.namespace_names() {
        for name in b.router_names(&ns).unwrap_or_default() {
            let Ok(c) = b.router_config(&ns, &name) else {
                continue;
            };
            let bindings = b.bindings(&ns, &name).map(|v| v.len()).unwrap_or(0);
            list.push(json!({
                "namespace": ns,
                "name": name,
                "kind": format!("{:?}", c.kind).to_lowercase(),
                "durable": c.durable,
                "internal": c.internal,
                "alternate": c.alternate,
                "bindings": bindings,
            }));
        }
    }
    Ok(Json(Value::Array(list)).into_response())
}
