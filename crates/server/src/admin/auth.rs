//! HTTP basic authentication for the admin API: a user of the store with
//! the `administrator` tag (`guest`, loopback only, has it by default);
//! and the refusal of requests another web site makes a browser send.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
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
    let checked: Result<bool, ferry_auth::AuthError> =
        match s.logins.recall(&name, &password, peer.ip()) {
            Some(admin) => Ok(admin),
            None => {
                // Password hashing is deliberately slow: not on the async threads.
                // The generation first: a change landing after it makes
                // this check's result unremembered.
                let logins = std::sync::Arc::clone(&s.logins);
                let generation = logins.generation();
                let users = s.users.current();
                let who = name.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    let admin = users
                        .authenticate(&who, &password, peer.ip())
                        .map(|u| u.has_tag("administrator"))?;
                    logins.remember(&who, &password, peer.ip(), admin, generation);
                    Ok(admin)
                })
                .await;
                let Ok(checked) = checked else {
                    return challenge("login could not be checked", console);
                };
                checked
            }
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

/// A browser that has the admin's credentials cached would send them with
/// a request another site's page makes (a form post, a no-cors fetch):
/// changes are refused unless they come from the console's own origin or
/// from outside a browser (no `Origin`, no `Sec-Fetch-Site`). Bodies must
/// be JSON, which a plain cross-site form cannot send.
pub async fn refuse_cross_site(req: Request, next: Next) -> Response {
    let m = req.method();
    if m == Method::GET || m == Method::HEAD || m == Method::OPTIONS {
        return next.run(req).await;
    }
    let h = req.headers();
    let fetch_site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross_site = match fetch_site {
        Some(site) => site != "same-origin" && site != "none",
        None => match (h.get(header::ORIGIN), h.get(header::HOST)) {
            (Some(origin), Some(host)) => {
                let origin = origin.to_str().unwrap_or("");
                let host = host.to_str().unwrap_or("");
                origin.split_once("://").map(|(_, rest)| rest) != Some(host)
            }
            (Some(_), None) => true,
            (None, _) => false,
        },
    };
    if cross_site {
        return error(
            StatusCode::FORBIDDEN,
            "a request from another web site's page is refused",
        );
    }
    let has_body = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "0")
        || h.contains_key(header::TRANSFER_ENCODING);
    let json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if has_body && !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be JSON (Content-Type: application/json)",
        );
    }
    next.run(req).await
}
