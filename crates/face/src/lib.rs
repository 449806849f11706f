//! The face contract: what a protocol face declares, and what the server
//! gives every connection it accepts for a face.
//!
//! A face is one wire protocol on ferry's core (AMQP, and next Kafka,
//! MQTT, RESP, STOMP; the AWS APIs are HTTP faces). The server owns what
//! every face shares and a face owns only its protocol:
//!
//! | the server (generic accept loop)           | the face                                  |
//! |--------------------------------------------|-------------------------------------------|
//! | binding `--NAME-listen` / `--NAME-tls-listen` | its codec, session state machine, handlers |
//! | TLS handshakes (bounded in number and time) | authentication, and then [`Admission::register`] |
//! | the connection limit in all ([`Registry::admit`]) | telling its client a refusal in its own words |
//! | graceful shutdown: stop accepting, signal `stop`, wait | closing its sessions when `stop` turns true |
//! | metrics labelled by protocol, the registry the admin API lists | keeping its [`Entry`] current (bytes, messages, consumers) |
//!
//! Holding publishers back under a memory or disk alarm is the face's own
//! business, because only the protocol knows how to say it (AMQP sends
//! `connection.blocked` and stops reading; SQS answers `RequestThrottled`);
//! each face watches `Broker::alarm()` and writes down in its
//! [`FaceSpec::holds_back`] what it does.
//!
//! This crate knows no sockets and no broker: it is the shape both sides
//! agree on, so that a protocol crate depends on it and not on the server.

// Input from the network must never panic the broker: an index or unwrap
// in this crate's code is proven or justified where it stands.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod limits;
mod registry;

pub use limits::{ConnectionLimits, Refused};
pub use registry::{Admission, ConnectionInfo, ConsumerInfo, Entry, Registered, Registry};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// How a face is reached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A byte stream per connection (TCP, or TLS over TCP): the server
    /// accepts and hands each connection to [`StreamFace::serve`].
    Stream,
    /// HTTP requests: the face is a router on an HTTP listener.
    Http,
}

/// What a face declares to be listened for. Flags and config keys are made
/// from it the same way for every face: `--NAME-listen` and
/// `--NAME-tls-listen`, `NAME-listen` / `NAME-tls-listen` in the config
/// file (or `listen` / `tls-listen` in its `[NAME]` section).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FaceSpec {
    /// Lower case, no spaces: names the flags, the config section, the
    /// `protocol` label of metrics and the registry's protocol column.
    pub name: &'static str,
    /// What it is, for the flags' help: "AMQP 0-9-1 (RabbitMQ clients)".
    pub about: &'static str,
    pub transport: Transport,
    /// The plain listener's default port on 127.0.0.1 (on by default).
    pub port: u16,
    /// The TLS listener's default port (on by default once a certificate
    /// is configured).
    pub tls_port: u16,
    /// The TLS listener's name in `listening NAME ADDR` lines, and an alias
    /// of its flag and key (`amqps`: `--amqps-listen`), as its users call
    /// it. `None`: `NAME-tls`.
    pub tls_name: Option<&'static str>,
    /// One line for operators: what one sentence says the face does to its
    /// publishers while the memory or disk alarm is up.
    pub holds_back: &'static str,
}

impl FaceSpec {
    /// The TLS listener's name (`amqps`, `aws-tls`).
    pub fn tls_listener_name(&self) -> String {
        match self.tls_name {
            Some(n) => n.to_owned(),
            None => format!("{}-tls", self.name),
        }
    }
}

/// A byte stream a face reads and writes: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// One connection the server accepted for a face, past the connection
/// limit and (on a TLS listener) past its handshake.
pub struct Accepted<S> {
    pub stream: S,
    pub peer: SocketAddr,
    /// The user a verified TLS client certificate names (its common name),
    /// for faces that let such a client log in without a password.
    pub certified: Option<String>,
    /// The connection's place under the limits; the face registers it once
    /// the client has logged in ([`Admission::register`]).
    pub admission: Admission,
    /// Turns true when the broker shuts down: the face tells its client in
    /// its own words and ends the session.
    pub stop: watch::Receiver<bool>,
}

/// A face that serves connections (AMQP, MQTT, Kafka, RESP, STOMP).
pub trait StreamFace: Send + Sync + 'static {
    fn spec(&self) -> &'static FaceSpec;

    /// Serves one connection until it closes, fails or is stopped.
    fn serve<S: Stream>(self: Arc<Self>, conn: Accepted<S>) -> impl Future<Output = ()> + Send;
}
