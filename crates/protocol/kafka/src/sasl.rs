//! Authentication at the start of a connection: SASL PLAIN and
//! SCRAM-SHA-256/512 against ferry's users, as Kafka's SaslHandshake (v1)
//! and SaslAuthenticate requests carry them.
//!
//! A connection is in this phase until its first request that is neither
//! ApiVersions nor SASL. A client that authenticates acts as that user; one
//! that goes straight to other requests acts as the user its certificate
//! names, or the anonymous user (the connection is closed if there is
//! none). Once the session proper starts, SASL requests get
//! ILLEGAL_SASL_STATE (re-authentication is not supported).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferry_auth::scram::{Exchange, Mechanism};
use ferry_auth::{User, UserStore};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::handlers::{frame, text, try_frame};
use crate::wire::{self, Header};

/// The mechanisms offered, in SaslHandshake's answer.
pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Where an exchange stands.
enum State {
    /// No handshake yet.
    Start,
    /// A handshake chose PLAIN.
    Plain,
    /// A handshake chose SCRAM; its first message is awaited.
    ScramFirst(Mechanism),
    /// The server's first message was sent.
    ScramFinal(Box<Exchange>),
}

/// How the phase ended.
pub enum Outcome {
    /// The client authenticated as this user.
    Authenticated(User),
    /// The client sent another request without a handshake: the session
    /// starts with the connection's default user, that request still in
    /// the buffer.
    Skipped,
    /// The connection is done (closed, refused, or the broker stops).
    Closed,
}

/// The longest a connection may take to start its session (SASL or not),
/// as RabbitMQ bounds its handshake: until then it is not registered, so
/// no operator can see or close it.
pub const PHASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The largest request taken before the session starts (Kafka's
/// `sasl.server.max.receive.size`).
const MAX_FRAME: usize = 512 * 1024;

/// Requests answered before the session starts (ApiVersions, handshakes
/// with mechanisms not offered, the exchange itself).
const MAX_REQUESTS: usize = 32;

/// Runs the phase on `stream`, answering ApiVersions and SASL requests;
/// the frames it does not handle stay in `inbuf`.
pub async fn authenticate<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    stream: &mut S,
    inbuf: &mut BytesMut,
    store: &Arc<UserStore>,
    peer: SocketAddr,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    let mut state = State::Start;
    let mut answered = 0;
    loop {
        // The size and the api key and version decide before the body is
        // waited for: a request of the session proper is left for it.
        while let Some(&[a, b, c, d, k0, k1, v0, v1]) = inbuf.get(..8) {
            let key = ApiKey::try_from(i16::from_be_bytes([k0, k1])).ok();
            let version = i16::from_be_bytes([v0, v1]);
            let sasl = matches!(
                key,
                Some(ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
            );
            if !sasl {
                if matches!(state, State::Start) {
                    return Outcome::Skipped;
                }
                // A handshake was made: nothing else until it completes.
                tracing::info!(%peer, ?key, "closing a kafka connection: a request before SASL completed");
                return Outcome::Closed;
            }
            let size = i32::from_be_bytes([a, b, c, d]);
            let Some(size) = usize::try_from(size)
                .ok()
                .filter(|s| *s >= 4 && *s <= MAX_FRAME)
            else {
                tracing::info!(%peer, size, "closing a kafka connection: a SASL-phase request size out of range");
                return Outcome::Closed;
            };
            let Some(frame) = inbuf.get(4..4 + size).map(Bytes::copy_from_slice) else {
                break; // not all of it yet
            };
            answered += 1;
            if answered > MAX_REQUESTS {
                tracing::info!(%peer, "closing a kafka connection: too many requests before its session");
                return Outcome::Closed;
            }
            let Ok((h, _, mut r)) = wire::header(frame) else {
                return Outcome::Closed;
            };
            let served = wire::supported(key.unwrap_or(ApiKey::ApiVersions))
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
            inbuf_advance(inbuf, 4 + size);
            let (reply, step) = match key {
                Some(ApiKey::ApiVersions) => (
                    crate::handlers::api_versions_answer(&h),
                    Step::Continue(state),
                ),
                Some(ApiKey::SaslHandshake) if !served => (
                    unsupported_version(&h, ApiKey::SaslHandshake),
                    Step::Continue(state),
                ),
                Some(ApiKey::SaslHandshake) if matches!(state, State::Start) => {
                    match handshake(&h, &mut r) {
                        Ok((reply, Some(next))) => (reply, Step::Continue(next)),
                        Ok((reply, None)) => (reply, Step::Continue(State::Start)),
                        Err(()) => return Outcome::Closed,
                    }
                }
                Some(ApiKey::SaslAuthenticate) if served && !matches!(state, State::Start) => {
                    let Ok(token) = wire::sasl_authenticate(&mut r, h.version) else {
                        return Outcome::Closed;
                    };
                    // Password hashing (argon2, PBKDF2) is slow on purpose:
                    // off the async threads.
                    let store = Arc::clone(store);
                    let h2 = h.clone();
                    match tokio::task::spawn_blocking(move || {
                        step(&h2, state, &token, &store, peer)
                    })
                    .await
                    {
                        Ok(done) => done,
                        Err(_) => return Outcome::Closed,
                    }
                }
                // A second handshake, an exchange without one, or a
                // version not served.
                _ => {
                    tracing::info!(%peer, ?key, version, "closing a kafka connection: a SASL request out of turn");
                    return Outcome::Closed;
                }
            };
            let Some(reply) = reply else {
                return Outcome::Closed;
            };
            if stream.write_all(&reply).await.is_err() || stream.flush().await.is_err() {
                return Outcome::Closed;
            }
            match step {
                Step::Continue(s) => state = s,
                Step::Done(user) => return Outcome::Authenticated(user),
                Step::Failed => return Outcome::Closed,
            }
        }
        tokio::select! {
            n = stream.read_buf(inbuf) => match n {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            },
            _ = stop.changed() => return Outcome::Closed,
        }
    }
}

/// UNSUPPORTED_VERSION in the response of the version asked for, if it can
/// be written (else the connection closes).
fn unsupported_version(h: &Header, key: ApiKey) -> Option<Bytes> {
    let res = SaslHandshakeResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_mechanisms(MECHANISMS.iter().map(|m| text(*m)).collect());
    try_frame(h, key, h.version, &res).ok()
}

fn inbuf_advance(inbuf: &mut BytesMut, n: usize) {
    let _ = inbuf.split_to(n.min(inbuf.len()));
}

/// SaslHandshake: the mechanisms offered, and the state the chosen one
/// starts (`None`: not offered; the client may try another).
fn handshake(h: &Header, r: &mut wire::Reader) -> Result<(Option<Bytes>, Option<State>), ()> {
    let mechanism = wire::sasl_handshake(r, h.version).map_err(|_| ())?;
    let next = match mechanism.as_str() {
        "PLAIN" => Some(State::Plain),
        m => Mechanism::from_name(m).map(State::ScramFirst),
    };
    let code = if next.is_some() {
        0
    } else {
        ResponseError::UnsupportedSaslMechanism.code()
    };
    let res = SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(MECHANISMS.iter().map(|m| text(*m)).collect());
    Ok((frame(h, ApiKey::SaslHandshake, h.version, &res), next))
}

enum Step {
    Continue(State),
    Done(User),
    Failed,
}

/// One SaslAuthenticate: the answer and what comes next.
fn step(
    h: &Header,
    state: State,
    token: &[u8],
    store: &UserStore,
    peer: SocketAddr,
) -> (Option<Bytes>, Step) {
    let answer = |bytes: Vec<u8>, error: Option<String>| {
        let mut res = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes));
        if let Some(m) = error {
            res.error_code = ResponseError::SaslAuthenticationFailed.code();
            res.error_message = Some(text(m));
        }
        frame(h, ApiKey::SaslAuthenticate, h.version, &res)
    };
    let failed = |mechanism: &str, why: String| {
        tracing::info!(%peer, mechanism, %why, "kafka SASL authentication failed");
        (
            answer(
                Vec::new(),
                Some(format!(
                    "Authentication failed: invalid credentials with SASL mechanism {mechanism}"
                )),
            ),
            Step::Failed,
        )
    };
    match state {
        State::Start => (None, Step::Failed),
        State::Plain => {
            // authzid NUL authcid NUL password (RFC 4616).
            let mut parts = token.split(|b| *b == 0);
            let (Some(authz), Some(name), Some(password), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return failed("PLAIN", "a malformed PLAIN token".into());
            };
            let (Ok(authz), Ok(name), Ok(password)) = (
                std::str::from_utf8(authz),
                std::str::from_utf8(name),
                std::str::from_utf8(password),
            ) else {
                return failed("PLAIN", "a PLAIN token that is not UTF-8".into());
            };
            if !authz.is_empty() && authz != name {
                return failed("PLAIN", format!("{name} may not act as {authz}"));
            }
            match store.authenticate(name, password, peer.ip()) {
                Ok(user) => (answer(Vec::new(), None), Step::Done(user.clone())),
                Err(e) => failed("PLAIN", format!("{name}: {e}")),
            }
        }
        State::ScramFirst(mech) => match store.scram_start(mech, token, peer.ip()) {
            Ok((first, exchange)) => (
                answer(first, None),
                Step::Continue(State::ScramFinal(Box::new(exchange))),
            ),
            Err(e) => failed(mech.name(), e.to_string()),
        },
        State::ScramFinal(exchange) => {
            let name = exchange.mechanism().name();
            match exchange.finish(token) {
                Ok((user, last)) => (answer(last, None), Step::Done(user)),
                Err(e) => failed(name, e.to_string()),
            }
        }
    }
}
