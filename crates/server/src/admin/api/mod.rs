//! The admin API, version 1 (`docs/admin-api.md`): the broker's state as
//! JSON, and the actions an operator needs without writing code.
//!
//! - `queues.rs`: overview, namespaces, queues (declare, delete, purge).
//! - `messages.rs`: peek, publish a test message, redrive a dead-letter queue.
//! - `routers.rs`: routers and bindings.
//! - `connections.rs`: client connections (list, close) and consumers.
//! - `access.rs`: users and permissions (listed; changed for the API's own).
//! - `definitions.rs`: the durable topology as one document, out and in.
//! - `streams.rs`: streams (Kafka topics) and consumer groups, with lag.

mod access;
mod connections;
mod definitions;
mod headers;
mod messages;
mod queues;
mod routers;
mod streams;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use ferry_core::{Broker, CoreError};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AdminState;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/overview", get(queues::overview))
        .route("/api/namespaces", get(queues::namespaces))
        .route("/api/queues", get(queues::list))
        .route(
            "/api/queues/{namespace}/{name}",
            get(queues::one).put(queues::declare).delete(queues::delete),
        )
        .route(
            "/api/queues/{namespace}/{name}/contents",
            axum::routing::delete(queues::purge),
        )
        .route(
            "/api/queues/{namespace}/{name}/bindings",
            get(routers::queue_bindings),
        )
        .route(
            "/api/queues/{namespace}/{name}/messages",
            get(messages::peek).post(messages::publish),
        )
        .route("/api/queues/{namespace}/{name}/get", post(messages::get))
        .route(
            "/api/queues/{namespace}/{name}/redrive",
            get(messages::redrives).post(messages::redrive),
        )
        .route("/api/routers", get(routers::list))
        .route(
            "/api/routers/{namespace}/{name}",
            get(routers::one)
                .put(routers::declare)
                .delete(routers::delete),
        )
        .route(
            "/api/routers/{namespace}/{name}/bindings",
            post(routers::bind).delete(routers::unbind),
        )
        .route("/api/streams", get(streams::list))
        .route(
            "/api/streams/{namespace}/{name}",
            get(streams::one)
                .put(streams::create)
                .delete(streams::delete),
        )
        .route("/api/groups", get(streams::groups))
        .route(
            "/api/groups/{namespace}/{name}",
            get(streams::group).delete(streams::delete_group),
        )
        .route(
            "/api/groups/{namespace}/{name}/reset-offsets",
            post(streams::reset_offsets),
        )
        .route("/api/connections", get(connections::list))
        .route(
            "/api/connections/{id}",
            axum::routing::delete(connections::close),
        )
        .route("/api/consumers", get(connections::consumers))
        .route("/api/users", get(access::users))
        .route(
            "/api/users/{name}",
            axum::routing::put(access::put_user).delete(access::delete_user),
        )
        .route("/api/permissions", get(access::permissions))
        .route(
            "/api/permissions/{namespace}/{user}",
            axum::routing::put(access::put_permission).delete(access::delete_permission),
        )
        .route(
            "/api/definitions",
            get(definitions::export).post(definitions::import),
        )
        // Anything else under /api/ is a JSON 404 like every other error,
        // a known path with another method a JSON 405.
        .route("/api/{*rest}", axum::routing::any(unknown))
        .method_not_allowed_fallback(not_allowed)
        // Definitions of a large broker run to megabytes.
        .layer(axum::extract::DefaultBodyLimit::max(DEFINITIONS_MAX))
}

/// The largest request body (a definitions document).
const DEFINITIONS_MAX: usize = 64 << 20;

async fn not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn unknown(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// A JSON error: `{"error": <status text>, "reason": <what happened>}`.
pub fn error(status: StatusCode, reason: &str) -> Response {
    let text = status.canonical_reason().unwrap_or("error").to_lowercase();
    (status, Json(json!({ "error": text, "reason": reason }))).into_response()
}

/// A failed API call: its status and reason.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, reason.into())
    }

    fn not_found(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, reason.into())
    }
}

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

/// Waits for a change to be durable before it is answered.
async fn durable(commit: ferry_core::store::Commit) -> Result<(), ApiError> {
    commit
        .wait()
        .await
        .map_err(|e| core_error(CoreError::Storage(e)))
}

fn core_error(e: CoreError) -> ApiError {
    let status = match e {
        CoreError::NamespaceNotFound(_)
        | CoreError::QueueNotFound(_)
        | CoreError::RouterNotFound(_)
        | CoreError::TaskNotFound(_) => StatusCode::NOT_FOUND,
        // The request clashes with the state of the thing it names.
        CoreError::QueueExists { .. }
        | CoreError::RouterExists { .. }
        | CoreError::TaskRunning(_)
        | CoreError::QueueInUse(_)
        | CoreError::QueueNotEmpty(_)
        | CoreError::ExclusiveConsumer(_)
        | CoreError::QueueFull(_)
        | CoreError::TooManyQueues { .. } => StatusCode::CONFLICT,
        CoreError::ExclusiveQueue(_) => StatusCode::LOCKED,
        CoreError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // What the request asked for is wrong in itself.
        CoreError::LeaseNotFound
        | CoreError::ConsumerNotFound
        | CoreError::UnknownKey(_)
        | CoreError::FixedSetting
        | CoreError::DedupWindowTooLong { .. }
        | CoreError::LeaseTooLong { .. }
        | CoreError::InvalidRate
        | CoreError::NoDeadLetterSource
        | CoreError::DefaultRouter
        | CoreError::InternalRouter(_) => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

/// 201 for what a declare created, 200 for what was there already.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Runs `f` off the async threads (work that reads the journal, syncs a
/// file or walks a deep queue); `what` names it if the task dies.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed")))
}

/// A JSON request body; an empty body is `T::default()`. Bad JSON and
/// unknown fields are a 400 that says what is wrong.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("bad {what}: {e}")))
}

/// Like [`body`], for bodies that must be there.
fn required_body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("bad {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status the admin API answers each core error with (exhaustive:
    /// a new error must be given its status here).
    fn expected(e: &CoreError) -> StatusCode {
        match e {
            CoreError::NamespaceNotFound(_)
            | CoreError::QueueNotFound(_)
            | CoreError::RouterNotFound(_)
            | CoreError::TaskNotFound(_) => StatusCode::NOT_FOUND,
            CoreError::QueueExists { .. }
            | CoreError::RouterExists { .. }
            | CoreError::TaskRunning(_)
            | CoreError::QueueInUse(_)
            | CoreError::QueueNotEmpty(_)
            | CoreError::ExclusiveConsumer(_)
            | CoreError::QueueFull(_)
            | CoreError::TooManyQueues { .. } => StatusCode::CONFLICT,
            CoreError::ExclusiveQueue(_) => StatusCode::LOCKED,
            CoreError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CoreError::LeaseNotFound
            | CoreError::ConsumerNotFound
            | CoreError::UnknownKey(_)
            | CoreError::FixedSetting
            | CoreError::DedupWindowTooLong { .. }
            | CoreError::LeaseTooLong { .. }
            | CoreError::InvalidRate
            | CoreError::NoDeadLetterSource
            | CoreError::DefaultRouter
            | CoreError::InternalRouter(_) => StatusCode::BAD_REQUEST,
        }
    }

    #[test]
    fn every_core_error_has_its_status() {
        for e in CoreError::examples() {
            let ApiError(status, text) = core_error(e.clone());
            assert_eq!(status, expected(&e), "{e:?}");
            assert_eq!(text, e.to_string());
        }
    }
}
