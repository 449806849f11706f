//! The admin HTTP listener: health (for orchestrators), Prometheus
//! metrics, and the admin API under `/api/` (documented in
//! `docs/admin-api.md`), which needs a user with the `administrator` tag.
//!
//! - `auth.rs`: HTTP basic authentication against the user store.
//! - `api/`: the API's endpoints.
//! - `rates.rs`: message rates, sampled on the upkeep tick.
//! - `console.rs`: the web console's files, served at `/`.

mod api;
mod auth;
mod console;
mod logins;
pub mod rates;

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
    /// The broker, once recovered.
    pub broker: Arc<std::sync::OnceLock<Arc<ferry_core::Broker>>>,
    pub users: Arc<ferry_auth::Users>,
    /// Logins checked within the last minute (password checks are slow).
    pub logins: Arc<logins::Logins>,
    pub started: std::time::Instant,
    /// Every face's open connections (listed, and closed on request).
    pub connections: Arc<ferry_face::Registry>,
    pub rates: Arc<rates::Rates>,
    /// The streams engine and its groups, once opened.
    pub streams: Arc<std::sync::OnceLock<crate::streams_view::StreamsAndGroups>>,
}

pub fn router(state: AdminState) -> Router {
    // Outermost first: a cross-site request is refused before any login.
    let api = api::routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_administrator,
        ))
        .route_layer(axum::middleware::from_fn(auth::refuse_cross_site));
    Router::new()
        .route("/api/health/live", get(live))
        .route("/api/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(console::routes())
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
