//! AMQP 0-9-1 with RabbitMQ's extensions, on ferry's core.
//!
//! One task serves one connection ([`Amqp::serve`]): it reads frames,
//! runs each channel's methods against the [`Broker`], and writes replies,
//! deliveries and confirms, batching every frame of a turn into one write.
//! Vhosts are core namespaces, exchanges are routers (the default exchange
//! is the core's default router), and delivery tags are core leases.
//!
//! - [`codec`]: frames in and out on the `amq-protocol` codec.
//! - `connection`: the socket loop, the handshake, connection-level methods.
//! - `channel`: per-channel state and the methods, grouped by class as
//!   the spec groups them (exchange, queue, basic consume/publish, tx).
//! - [`error`]: reply codes and the one core-error mapping.

// Input from the network must never panic the broker: an index or unwrap
// in this crate's code is proven or justified where it stands.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod arguments;
pub mod auth;
mod channel;
pub mod codec;
mod confirms;
mod connection;
mod depth;
pub mod error;
mod events;
mod fastpath;
mod flow;
mod properties;
mod reply_to;
mod stream_queue;
mod values;

pub use ferry_auth::{AuthConfig, User, UserStore, Users};

use std::sync::Arc;
use std::time::Duration;

use ferry_core::router::{RouterConfig, RouterKind};
use ferry_core::{Broker, CoreResult};
use ferry_face::{Accepted, FaceSpec, Stream, StreamFace, Transport};

/// The vhost every broker has.
pub const DEFAULT_VHOST: &str = "/";

/// Limits and defaults offered to clients in connection.tune.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    /// Largest frame, in bytes (RabbitMQ's default: 128 KiB).
    pub frame_max: u32,
    /// Most channels per connection.
    pub channel_max: u16,
    /// Heartbeat interval offered, in seconds (0: none).
    pub heartbeat: u16,
    /// Largest message body accepted.
    pub max_message_size: u64,
    /// How long a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// Vhosts besides `/` (each with the `amq.*` exchanges).
    pub vhosts: Vec<String>,
    /// SASL EXTERNAL: a verified TLS client certificate logs in as the user
    /// its common name names, without a password. Off unless asked for, as
    /// RabbitMQ's rabbitmq_auth_mechanism_ssl.
    pub sasl_external: bool,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 16 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            vhosts: Vec::new(),
            sasl_external: false,
        }
    }
}

/// The AMQP face of a broker. Share it: one serves every connection.
pub struct Amqp {
    broker: Arc<Broker>,
    config: AmqpConfig,
    users: Arc<Users>,
    replies: reply_to::Registry,
}

/// AMQP 0-9-1 as a face: RabbitMQ's ports.
pub static SPEC: FaceSpec = FaceSpec {
    name: "amqp",
    about: "AMQP 0-9-1 (RabbitMQ clients)",
    transport: Transport::Stream,
    port: 5672,
    tls_port: 5671,
    tls_name: Some("amqps"),
    holds_back: "connection.blocked to clients that take it, then stops reading from a connection once it publishes",
};

impl Amqp {
    /// Sets up the default vhost (with the `amq.*` exchanges) and returns
    /// the protocol, ready to serve connections (each registers itself in
    /// the shared registry through the `Admission` it is accepted with).
    pub fn new(
        broker: Arc<Broker>,
        config: AmqpConfig,
        users: Arc<Users>,
    ) -> CoreResult<Arc<Amqp>> {
        let amqp = Amqp {
            broker,
            config,
            users,
            replies: reply_to::Registry::default(),
        };
        amqp.add_vhost(DEFAULT_VHOST)?;
        for v in &amqp.config.vhosts {
            amqp.add_vhost(v)?;
        }
        Ok(Arc::new(amqp))
    }

    /// Creates a vhost with RabbitMQ's predeclared exchanges, or checks
    /// that an existing one has them.
    ///
    /// Nothing here waits for the journal: vhosts are set up before the
    /// server serves anyone, and it waits for everything journaled first.
    pub fn add_vhost(&self, name: &str) -> CoreResult<()> {
        let (_, _before_serving) = self.broker.create_namespace(name)?;
        for (exchange, kind) in STANDARD_EXCHANGES {
            // Declared as RabbitMQ declares them: durable, so a redeclare
            // by a client with durable=true is equivalent.
            let config = RouterConfig::new(*kind);
            match self.broker.declare_router(name, exchange, config) {
                Ok(_) | Err(ferry_core::CoreError::RouterExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

impl StreamFace for Amqp {
    fn spec(&self) -> &'static FaceSpec {
        &SPEC
    }

    /// Serves one client connection until it closes, fails, or `stop`
    /// turns true (then the client is told the broker is shutting down).
    /// A client with a verified TLS client certificate may log in with
    /// SASL EXTERNAL, if the broker allows it.
    async fn serve<S: Stream>(self: Arc<Self>, mut conn: Accepted<S>) {
        conn.certified = conn.certified.filter(|_| self.config.sasl_external);
        connection::run(self, conn).await;
    }
}

/// The exchanges every vhost has (RabbitMQ's `amq.*`).
const STANDARD_EXCHANGES: &[(&str, RouterKind)] = &[
    ("amq.direct", RouterKind::Direct),
    ("amq.fanout", RouterKind::Fanout),
    ("amq.topic", RouterKind::Topic),
    ("amq.headers", RouterKind::Headers),
    ("amq.match", RouterKind::Headers),
];
