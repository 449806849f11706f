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

use bytes::{Bytes, BytesMut};
use ferry_auth::scram::{Exchange, Mechanism};
use ferry_auth::{User, UserStore};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::handlers::{frame, text};
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

/// Runs the phase on `stream`, answering ApiVersions and SASL requests;
/// the frames it does not handle stay in `inbuf`.
pub async fn authenticate<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    stream: &mut S,
    inbuf: &mut BytesMut,
    store: &UserStore,
    peer: SocketAddr,
    max_request: usize,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    let mut state = State::Start;
    loop {
        // Whole frames already read first.
        while let Some(&[a, b, c, d]) = inbuf.get(..4) {
            let size = i32::from_be_bytes([a, b, c, d]);
            let Some(size) = usize::try_from(size)
                .ok()
                .filter(|s| *s > 0 && *s <= max_request)
            else {
                tracing::info!(%peer, size, "closing a kafka connection: request size out of range");
                return Outcome::Closed;
            };
            let Some(frame) = inbuf.get(4..4 + size).map(Bytes::copy_from_slice) else {
                break; // not all of it yet
            };
            let Ok((h, key, mut r)) = wire::header(frame) else {
                return Outcome::Closed;
            };
            let reply = match key {
                Some(ApiKey::ApiVersions) => crate::handlers::api_versions_answer(&h),
                Some(ApiKey::SaslHandshake) if matches!(state, State::Start) => {
                    match handshake(&h, &mut r) {
                        Ok((reply, next)) => {
                            if let Some(next) = next {
                                state = next;
                            }
                            reply
                        }
                        Err(()) => return Outcome::Closed,
                    }
                }
                Some(ApiKey::SaslAuthenticate) if !matches!(state, State::Start) => {
                    let Ok(token) = wire::sasl_authenticate(&mut r, h.version) else {
                        return Outcome::Closed;
                    };
                    let (reply, next) = step(&h, state, &token, store, peer);
                    inbuf_advance(inbuf, 4 + size);
                    write(stream, reply.as_ref()).await;
                    match next {
                        Step::Continue(s) => {
                            state = s;
                            continue;
                        }
                        Step::Done(user) => return Outcome::Authenticated(user),
                        Step::Failed => return Outcome::Closed,
                    }
                }
                _ if matches!(state, State::Start) => return Outcome::Skipped,
                // A handshake was made: nothing else until it completes.
                _ => {
                    tracing::info!(%peer, ?key, "closing a kafka connection: a request before SASL completed");
                    return Outcome::Closed;
                }
            };
            inbuf_advance(inbuf, 4 + size);
            write(stream, reply.as_ref()).await;
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

fn inbuf_advance(inbuf: &mut BytesMut, n: usize) {
    let _ = inbuf.split_to(n.min(inbuf.len()));
}

async fn write<S: AsyncWriteExt + Unpin>(stream: &mut S, frame: Option<&Bytes>) {
    if let Some(f) = frame {
        let _ = stream.write_all(f).await;
    }
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
