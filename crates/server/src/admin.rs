//! The admin HTTP listener. For now it serves the health endpoints that
//! orchestrators and scripts poll; the admin API and console build on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Value, json};

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// Set once recovery has finished and the broker serves.
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<crate::metrics::Exporter>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/health/live", get(live))
        .route("/api/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Prometheus text format.
async fn metrics(State(s): State<AdminState>) -> impl axum::response::IntoResponse {
    let body = tokio::task::spawn_blocking(move || s.metrics.render())
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// The process is up and answering.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The broker has recovered its state and accepts work.
async fn ready(State(s): State<AdminState>) -> (StatusCode, Json<Value>) {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting" })),
        )
    }
}
