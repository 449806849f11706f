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
mod registry;
mod reply_to;
mod values;

pub use ferry_auth::{AuthConfig, User, UserStore, Users};
pub use registry::{ConnectionInfo, ConsumerInfo, Registry};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_core::router::{RouterConfig, RouterKind};
use ferry_core::{Broker, CoreResult};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

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
    /// Most connections at once (past it, new ones are closed at once).
    pub max_connections: usize,
    /// Most connections one user may have open (None: no limit).
    pub max_connections_per_user: Option<usize>,
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
            max_connections: 10_000,
            max_connections_per_user: None,
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
    next_connection: AtomicU64,
    connections: Arc<Registry>,
    /// One permit per connection being served (handshakes included).
    slots: Arc<tokio::sync::Semaphore>,
}

impl Amqp {
    /// Sets up the default vhost (with the `amq.*` exchanges) and returns
    /// the protocol, ready to serve connections.
    pub fn new(
        broker: Arc<Broker>,
        config: AmqpConfig,
        users: Arc<Users>,
    ) -> CoreResult<Arc<Amqp>> {
        let slots = config
            .max_connections
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let amqp = Amqp {
            broker,
            config,
            users,
            replies: reply_to::Registry::default(),
            next_connection: AtomicU64::new(1),
            connections: Arc::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
        };
        amqp.add_vhost(DEFAULT_VHOST)?;
        for v in &amqp.config.vhosts {
            amqp.add_vhost(v)?;
        }
        Ok(Arc::new(amqp))
    }

    /// Creates a vhost with RabbitMQ's predeclared exchanges, or checks
    /// that an existing one has them.
    pub fn add_vhost(&self, name: &str) -> CoreResult<()> {
        self.broker.create_namespace(name);
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

    /// The open connections (listed and closed by the admin API).
    pub fn connections(&self) -> &Arc<Registry> {
        &self.connections
    }

    /// Serves one client connection until it closes, fails, or `stop`
    /// turns true (then the client is told the broker is shutting down).
    /// `certified`: the user a verified TLS client certificate names (the
    /// client may then log in with SASL EXTERNAL).
    pub async fn serve<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        certified: Option<String>,
        stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        // Past the limit the socket is closed unanswered: the handshake
        // of a flood of connections is not worth its memory.
        let Ok(_slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(%peer, limit = self.config.max_connections, "connection limit reached; closing a new connection");
            return;
        };
        let certified = certified.filter(|_| self.config.sasl_external);
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        connection::run(self, id, stream, peer, certified, stop).await;
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
