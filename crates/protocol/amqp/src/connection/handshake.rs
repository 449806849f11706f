//! The opening of a connection: protocol header, start/start-ok (SASL),
//! tune/tune-ok, open/open-ok.

use std::fmt;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::{Buf, BytesMut};
use ferry_face::{Admission, Registered};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::next_frame;
use crate::Amqp;
use crate::auth::{MECHANISMS, MECHANISMS_WITH_CERTIFICATE};
use crate::codec::{FRAME_MIN_SIZE, Incoming, Output, PROTOCOL_HEADER};
use crate::error::{Failure, ReplyCode};
use crate::values::{long, short};

/// What the handshake settled.
pub struct Tuned {
    pub user: ferry_auth::User,
    pub vhost: String,
    pub frame_max: u32,
    pub channel_max: u16,
    /// Zero: no heartbeats.
    pub heartbeat: Duration,
    /// The client handles a server-sent basic.cancel.
    pub cancel_notify: bool,
    /// The client handles connection.blocked / unblocked.
    pub blocked_notify: bool,
}

/// Why a handshake ended without an open connection.
#[derive(Debug)]
pub enum End {
    /// The client went away.
    Gone,
    /// The client spoke another protocol or version (our header was sent).
    WrongProtocol,
    /// Refused with a connection.close (queued in the output).
    Failed(Failure),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Gone => f.write_str("client went away"),
            End::WrongProtocol => f.write_str("not AMQP 0-9-1"),
            End::Failed(e) => write!(f, "{e}"),
        }
    }
}

pub async fn handshake<R, W>(
    amqp: &Amqp,
    admission: Admission,
    certified: Option<&str>,
    reader: &mut R,
    writer: &mut W,
    inbuf: &mut BytesMut,
    out: &mut Output,
) -> Result<(Tuned, Registered), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer = admission.peer();
    while inbuf.len() < PROTOCOL_HEADER.len() {
        match reader.read_buf(inbuf).await {
            Ok(0) | Err(_) => return Err(End::Gone),
            Ok(_) => {}
        }
    }
    if !inbuf.starts_with(PROTOCOL_HEADER) {
        // The spec's answer to another protocol or version: our header, then close.
        out.protocol_header();
        return Err(End::WrongProtocol);
    }
    inbuf.advance(PROTOCOL_HEADER.len());

    let config = &amqp.config;
    out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongString::from(
                if certified.is_some() {
                    MECHANISMS_WITH_CERTIFICATE
                } else {
                    MECHANISMS
                }
                .as_bytes()
                .to_vec(),
            ),
            locales: LongString::from(b"en_US".to_vec()),
        })),
    );
    send(writer, out).await?;

    // Before tune-ok, frames may be at most the spec's minimum size.
    let start_ok = match expect(reader, inbuf, FRAME_MIN_SIZE, out).await? {
        connection::AMQPMethod::StartOk(m) => m,
        other => return Err(unexpected(out, "connection.start-ok", &other)),
    };
    // Password hashing is deliberately slow: not on the async threads.
    // The store as it is now: a user changed later does not change this login.
    let users = amqp.users.current();
    let mechanism = start_ok.mechanism.as_str().to_owned();
    let response = start_ok.response.as_bytes().to_vec();
    let certified = certified.map(str::to_owned);
    let user = tokio::task::spawn_blocking(move || {
        crate::auth::authenticate(
            &users,
            &mechanism,
            &response,
            peer.ip(),
            certified.as_deref(),
        )
    })
    .await
    .map_err(|_| End::Gone)?
    .map_err(|f| refuse(out, f))?;
    let capabilities = match start_ok.client_properties.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.clone(),
        _ => FieldTable::default(),
    };
    let has = |cap: &str| {
        matches!(
            capabilities.inner().get(cap),
            Some(AMQPValue::Boolean(true))
        )
    };
    let cancel_notify = has("consumer_cancel_notify");
    let blocked_notify = has("connection.blocked");

    out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
            channel_max: config.channel_max,
            frame_max: config.frame_max,
            heartbeat: config.heartbeat,
        })),
    );
    send(writer, out).await?;
    let tune_ok = match expect(reader, inbuf, FRAME_MIN_SIZE, out).await? {
        connection::AMQPMethod::TuneOk(m) => m,
        other => return Err(unexpected(out, "connection.tune-ok", &other)),
    };
    let frame_max = match tune_ok.frame_max {
        0 => config.frame_max,
        n if n < FRAME_MIN_SIZE => {
            return Err(refuse(
                out,
                Failure::connection(
                    ReplyCode::NotAllowed,
                    format!("frame_max={n} < {FRAME_MIN_SIZE} min size"),
                ),
            ));
        }
        n if n > config.frame_max => {
            return Err(refuse(
                out,
                Failure::connection(
                    ReplyCode::NotAllowed,
                    format!("frame_max={n} > {} max size", config.frame_max),
                ),
            ));
        }
        n => n,
    };
    let channel_max = match tune_ok.channel_max {
        0 => config.channel_max,
        n => n.min(config.channel_max),
    };
    let heartbeat = Duration::from_secs(u64::from(tune_ok.heartbeat));

    let open = match expect(reader, inbuf, frame_max, out).await? {
        connection::AMQPMethod::Open(m) => m,
        other => return Err(unexpected(out, "connection.open", &other)),
    };
    let vhost = open.virtual_host.as_str().to_owned();
    if amqp.broker.namespace(&vhost).is_err() {
        return Err(refuse(
            out,
            Failure::connection(ReplyCode::NotAllowed, format!("vhost '{vhost}' not found")),
        ));
    }
    if !user.may_enter(&vhost) {
        return Err(refuse(
            out,
            Failure::connection(
                ReplyCode::NotAllowed,
                format!("access to vhost '{vhost}' refused for user '{}'", user.name),
            ),
        ));
    }
    // The user's limit is checked and the connection registered at once.
    let registered = match admission.register(&user.name, &vhost, amqp.broker.now().as_millis()) {
        Ok(r) => r,
        Err(refused) => {
            return Err(refuse(
                out,
                Failure::connection(
                    ReplyCode::NotAllowed,
                    format!("connection refused: {refused}"),
                ),
            ));
        }
    };
    out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
    );
    send(writer, out).await?;
    let tuned = Tuned {
        user,
        vhost,
        frame_max,
        channel_max,
        heartbeat,
        cancel_notify,
        blocked_notify,
    };
    Ok((tuned, registered))
}

/// The next frame, which must be a connection method on channel 0.
async fn expect<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbuf: &mut BytesMut,
    frame_max: u32,
    out: &mut Output,
) -> Result<connection::AMQPMethod, End> {
    loop {
        let frame = next_frame(reader, inbuf, frame_max)
            .await
            .map_err(|e| match e {
                End::Failed(f) => refuse(out, f),
                e => e,
            })?;
        match frame {
            Incoming::Heartbeat => continue,
            Incoming::Method(0, class) => match *class {
                AMQPClass::Connection(m) => return Ok(m),
                other => {
                    return Err(refuse(
                        out,
                        Failure::connection(
                            ReplyCode::CommandInvalid,
                            format!(
                                "method {}.{} is not allowed during the handshake",
                                other.get_amqp_class_id(),
                                other.get_amqp_method_id()
                            ),
                        ),
                    ));
                }
            },
            _ => {
                return Err(refuse(
                    out,
                    Failure::connection(
                        ReplyCode::UnexpectedFrame,
                        "only connection methods on channel 0 are allowed during the handshake",
                    ),
                ));
            }
        }
    }
}

fn unexpected(out: &mut Output, wanted: &str, got: &connection::AMQPMethod) -> End {
    let got = AMQPClass::Connection(got.clone());
    refuse(
        out,
        Failure::connection(
            ReplyCode::CommandInvalid,
            format!(
                "expected {wanted}, got method {}.{}",
                got.get_amqp_class_id(),
                got.get_amqp_method_id()
            ),
        ),
    )
}

/// Queues a connection.close for `f` and ends the handshake with it.
fn refuse(out: &mut Output, f: Failure) -> End {
    out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: f.code.code(),
            reply_text: short(&f.text()),
            class_id: 0,
            method_id: 0,
        })),
    );
    End::Failed(f)
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, out: &mut Output) -> Result<(), End> {
    writer
        .write_all(out.pending())
        .await
        .map_err(|_| End::Gone)?;
    let n = out.len();
    out.consume(n);
    Ok(())
}

/// What connection.start tells clients about us; clients read
/// `capabilities` to decide which extensions to use.
fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(long(s));
    p.insert("product".into(), text("ferry"));
    p.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    p.insert("platform".into(), text("Rust"));
    p.insert("cluster_name".into(), text("ferry"));
    p.insert(
        "information".into(),
        text("ferry: one broker for queues, pub/sub and streams"),
    );
    p.insert("copyright".into(), text("ferry authors"));
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}
