//! The two wire protocols of the SQS API, and the one shape both are
//! turned into: an action name and a JSON object of its parameters, named
//! as in the AWS JSON protocol. Actions produce a JSON object the same way;
//! each protocol renders it back (JSON as is, query as XML).

pub mod json;
pub mod query;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::error::SqsError;

/// Which protocol a request came in, so the answer goes out the same way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.0: `X-Amz-Target: AmazonSQS.<Action>`, JSON body.
    Json,
    /// The query protocol: `Action=<Action>&...` form (or query string), XML answers.
    Query,
}

/// A request in protocol-neutral form.
#[derive(Debug)]
pub struct Request {
    pub protocol: Protocol,
    pub action: String,
    pub input: Map<String, Value>,
    /// The request's path (the query protocol may address a queue by URL path).
    pub path: String,
    /// Host and port the client addressed, for queue URLs.
    pub host: String,
}

/// The protocol a request speaks and its action, from its headers, URL
/// and the first part of an oversized body (which is answered in them):
/// JSON has `X-Amz-Target`; the query protocol names its action in the URL
/// or the form.
pub fn protocol_of(
    headers: &HeaderMap,
    query: Option<&str>,
    prefix: &[u8],
) -> (Protocol, Option<String>) {
    if let Some(target) = headers.get("x-amz-target") {
        let action = target
            .to_str()
            .ok()
            .and_then(|t| t.strip_prefix("AmazonSQS."))
            .map(str::to_owned);
        return (Protocol::Json, action);
    }
    let named = |form: &[u8]| {
        form.split(|&b| b == b'&')
            .find_map(|kv| kv.strip_prefix(b"Action="))
            .and_then(|a| std::str::from_utf8(a).ok())
            .map(str::to_owned)
    };
    let action = query
        .and_then(|q| named(q.as_bytes()))
        .or_else(|| named(prefix));
    (Protocol::Query, action)
}

/// Parses a request; an unparseable one still says which protocol to answer in.
pub fn parse(
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Request, (Protocol, SqsError)> {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    if let Some(target) = headers.get("x-amz-target") {
        let target = target.to_str().map_err(|_| {
            (
                Protocol::Json,
                SqsError::invalid_action("X-Amz-Target is not text"),
            )
        })?;
        let action = target
            .strip_prefix("AmazonSQS.")
            .ok_or_else(|| (Protocol::Json, SqsError::invalid_action(target)))?
            .to_owned();
        let input = json::parse_input(body).map_err(|e| (Protocol::Json, e))?;
        return Ok(Request {
            protocol: Protocol::Json,
            action,
            input,
            path: path.to_owned(),
            host,
        });
    }
    let form: &[u8] = if *method == Method::POST && !body.is_empty() {
        body
    } else {
        query.unwrap_or_default().as_bytes()
    };
    let (action, input) = query::parse_input(form).map_err(|e| (Protocol::Query, e))?;
    Ok(Request {
        protocol: Protocol::Query,
        action,
        input,
        path: path.to_owned(),
        host,
    })
}

/// Renders an action's result in the request's protocol.
pub fn render(
    protocol: Protocol,
    action: &str,
    request_id: &str,
    result: Result<Value, SqsError>,
) -> Response {
    match (protocol, result) {
        (Protocol::Json, Ok(v)) => json::render_ok(&v),
        (Protocol::Json, Err(e)) => json::render_error(&e),
        (Protocol::Query, Ok(v)) => query::render_ok(action, request_id, &v),
        (Protocol::Query, Err(e)) => query::render_error(&e, request_id),
    }
}

pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [("content-type", content_type)], body).into_response()
}
