//! HTTP basic authentication for the admin API: a user of the store with
//! the `administrator` tag (`guest`, loopback only, has it by default).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::AdminState;
use super::api::error;

pub async fn require_administrator(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    // The console shows its own login form: a challenge would make the
    // browser pop up its dialog over it.
    let console = req.headers().contains_key("x-ferry-console");
    let Some((name, password)) = credentials(req.headers()) else {
        return challenge("credentials required (HTTP basic authentication)", console);
    };
    // Password hashing is deliberately slow: not on the async threads.
    let users = std::sync::Arc::clone(&s.users);
    let who = name.clone();
    let checked = tokio::task::spawn_blocking(move || {
        users
            .authenticate(&who, &password, peer.ip())
            .map(|u| u.has_tag("administrator"))
    })
    .await;
    let Ok(checked) = checked else {
        return challenge("login could not be checked", console);
    };
    match checked {
        Ok(true) => next.run(req).await,
        Ok(false) => error(
            StatusCode::FORBIDDEN,
            &format!("user '{name}' is not an administrator"),
        ),
        Err(e) => {
            tracing::info!(user = %name, %peer, error = %e, "admin login refused");
            challenge("login refused", console)
        }
    }
}

fn challenge(reason: &str, console: bool) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, reason);
    if console {
        return r;
    }
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"ferry\""),
    );
    r.into_response()
}

/// `Authorization: Basic base64(name:password)`.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}
