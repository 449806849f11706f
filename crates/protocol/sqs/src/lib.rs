//! The Amazon SQS API on ferry's core: both wire protocols (AWS JSON 1.0,
//! which current SDKs speak, and the query protocol with XML answers), on
//! one HTTP endpoint. An SQS queue is a core queue in the configured
//! namespace, so other protocols can share it.
//!
//! Layout, grouped as the SQS API reference groups its actions:
//! - `wire/`: the two protocols, turned into one request shape and back;
//! - `actions/queue.rs`: queue actions; `actions/message.rs`: message
//!   actions;
//! - `attributes.rs`, `message_attributes.rs`, `md5.rs`, `receipt.rs`,
//!   `names.rs`: the rules the actions share;
//! - `error.rs`: SQS's error codes, and the mapping from core errors.

// Input from the network must never panic the broker: an index or unwrap
// in this crate's code is proven or justified where it stands.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod access;
mod actions;
mod attributes;
pub mod error;
mod input;
mod md5;
mod message_attributes;
mod names;
mod receipt;
pub mod sigv4;
pub mod wire;
mod wording;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use ferry_core::Broker;
use ferry_core::broker::QueueHandle;
use ferry_core::clock::Timestamp;
use ferry_core::ids::{IdGenerator, RandomIds};

use error::SqsError;

/// Where SQS lives in ferry, and how it names things.
#[derive(Clone, Debug)]
pub struct SqsConfig {
    pub region: String,
    pub account_id: String,
    /// The core namespace SQS queues live in (shared with AMQP's vhost of
    /// the same name, so both see the same queues).
    pub namespace: String,
    /// The broker's own keys (everything allowed). With any, or with any
    /// user's, every request must be signed (SigV4) by a known key.
    pub credentials: sigv4::Credentials,
}

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            namespace: "/".into(),
            credentials: sigv4::Credentials::default(),
        }
    }
}

/// The SQS service: what its handlers share.
pub struct Sqs {
    broker: Arc<Broker>,
    config: SqsConfig,
    /// Users, whose access keys sign requests and whose permissions apply.
    users: Arc<ferry_auth::Users>,
    /// The broker's resource alarm (senders are throttled while it is up).
    alarm: tokio::sync::watch::Receiver<Option<String>>,
    /// Requests must be signed: a key has existed since the start.
    signed: std::sync::atomic::AtomicBool,
    request_ids: RandomIds,
    /// When each queue was last purged (SQS allows one purge a minute).
    purges: Mutex<HashMap<String, Timestamp>>,
    /// Recently deleted queue names (a name may be reused after a minute).
    deleted: Mutex<HashMap<String, Timestamp>>,
    /// FIFO receives by ReceiveRequestAttemptId, for retries.
    attempts: Mutex<HashMap<(String, String), actions::Attempt>>,
}

impl Sqs {
    /// The SQS face on `broker`; its namespace is created if need be
    /// (durable once everything journaled before serving is: the server
    /// waits for that before it listens).
    pub fn new(
        broker: Arc<Broker>,
        config: SqsConfig,
        users: Arc<ferry_auth::Users>,
    ) -> ferry_core::CoreResult<Arc<Sqs>> {
        let (_, _before_serving) = broker.create_namespace(&config.namespace)?;
        if config.credentials.is_empty() && !users.current().has_access_keys() {
            tracing::warn!(
                "no AWS credentials configured: SQS accepts any access key, unsigned or not"
            );
        }
        Ok(Arc::new(Sqs {
            signed: std::sync::atomic::AtomicBool::new(
                !config.credentials.is_empty() || users.current().has_access_keys(),
            ),
            alarm: broker.alarm(),
            broker,
            config,
            users,
            request_ids: RandomIds::new(),
            purges: Mutex::new(HashMap::new()),
            deleted: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
        }))
    }

    fn queue(&self, name: &str) -> Result<Arc<QueueHandle>, SqsError> {
        self.broker
            .queue(&self.config.namespace, name)
            .map_err(|_| SqsError::no_queue())
    }
}

/// The largest request body: a batch's 1 MiB, URL-encoded by the query
/// protocol (up to three bytes for one).
const BODY_MAX: usize = 4 << 20;
/// The HTTP routes of the SQS API: every path, GET and POST.
pub fn router(sqs: Arc<Sqs>) -> Router {
    Router::new().fallback(handle).with_state(sqs)
}

/// A body that could not be taken whole.
enum Unread {
    /// Past the limit: its first `max` bytes (enough to tell a
    /// query-protocol request's action, to answer it in its own words).
    TooLarge(Bytes),
    /// The upload broke off: nothing of it is acted on.
    Broken,
}

/// An oversized body is read on (and dropped) up to this much, so the
/// client that is still sending it reads the answer, not a reset.
const DRAIN_MAX: usize = 64 << 20;

/// `declared`: the Content-Length, if the client sent one (the buffer is
/// sized once for it, rather than grown).
async fn read_limited(
    body: axum::body::Body,
    max: usize,
    declared: Option<usize>,
) -> Result<Bytes, Unread> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut got = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(max));
    let mut seen = 0usize;
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Unread::Broken);
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if too_large {
            if seen > DRAIN_MAX {
                break;
            }
            continue;
        }
        if got.len() + data.len() > max {
            let room = max - got.len();
            got.extend_from_slice(data.get(..room).unwrap_or_default());
            too_large = true;
            continue;
        }
        got.extend_from_slice(&data);
    }
    if too_large {
        Err(Unread::TooLarge(got.freeze()))
    } else {
        Ok(got.freeze())
    }
}

/// Every answer carries its request id (`x-amzn-RequestId`; the SDKs
/// show it as `ResponseMetadata.RequestId`), errors included.
async fn handle(
    State(sqs): State<Arc<Sqs>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let request_id = sqs.request_ids.next_id().to_string();
    let mut response = answer(&sqs, &request_id, method, uri, headers, body).await;
    if let Ok(id) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

async fn answer(
    sqs: &Sqs,
    request_id: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // A body past the limit is refused in the request's own protocol,
    // never as a bare HTTP 413.
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body: Bytes = match read_limited(body, BODY_MAX, declared).await {
        Ok(b) => b,
        Err(Unread::Broken) => {
            let (protocol, action) = wire::protocol_of(&headers, uri.query(), &[]);
            let e = SqsError::invalid_parameter("The request body was cut short.");
            return wire::render(
                protocol,
                action.as_deref().unwrap_or(""),
                request_id,
                Err(e),
            );
        }
        Err(Unread::TooLarge(prefix)) => {
            let n = declared.unwrap_or(BODY_MAX + 1);
            let (protocol, action) = wire::protocol_of(&headers, uri.query(), &prefix);
            let e = if action.as_deref() == Some("SendMessageBatch") {
                wording::batch_too_long(attributes::MAX_BATCH_SIZE, n)
            } else {
                SqsError::invalid_parameter(&format!(
                    "One or more parameters are invalid. Reason: the request of {n} bytes is longer than {BODY_MAX} bytes."
                ))
            };
            return wire::render(
                protocol,
                action.as_deref().unwrap_or(""),
                request_id,
                Err(e),
            );
        }
    };
    match wire::parse(&method, &headers, uri.path(), uri.query(), &body) {
        Ok(req) => {
            let who = match access::authenticate(
                sqs,
                &method,
                uri.path(),
                uri.query(),
                &headers,
                &body,
            ) {
                Ok(who) => who,
                Err(e) => return wire::render(req.protocol, &req.action, request_id, Err(e)),
            };
            let result = actions::dispatch(sqs, &who, &req).await;
            if let Err(e) = &result {
                tracing::debug!(action = %req.action, error = %e, "sqs request refused");
            }
            wire::render(req.protocol, &req.action, request_id, result)
        }
        Err((protocol, e)) => wire::render(protocol, "", request_id, Err(e)),
    }
}
