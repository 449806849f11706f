//! The web console: a page and its script and style, compiled into the
//! binary (no files to install, nothing fetched from the internet). It is
//! a client of the admin API like any other, and logs in the same way.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AdminState;

const INDEX: &str = include_str!("../../console/index.html");
const APP: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/style.css");
const ICON: &str = include_str!("../../console/favicon.svg");

/// Only the console's own files may run or load, and no other site may
/// frame it: a queue name or message body that slipped past the escaping
/// still could not run a script.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                      base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/console/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP)),
        )
        .route(
            "/console/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route("/console/favicon.svg", get(|| asset("image/svg+xml", ICON)))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // A new ferry binary brings a new console: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
