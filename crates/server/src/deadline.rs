//! A deadline on whole HTTP requests: a client that sends its request too
//! slowly (a byte at a time) is cut off instead of holding a task and a
//! buffer for ever. Long polling waits at most 20 s, so a minute is far
//! past any honest request.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How long one request may take, its body's arrival included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// `router` with every request bounded by [`REQUEST_DEADLINE`].
pub fn bounded(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(within_deadline))
}

async fn within_deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "the request took too long").into_response(),
    }
}
