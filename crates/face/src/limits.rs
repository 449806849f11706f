//! Connection limits, kept by the registry for every face at once: a
//! user's connections count against its limit whichever protocols they use.

use thiserror::Error;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections at once, every face together. Past it a new
    /// connection is closed at once, before any handshake: the handshake of
    /// a flood of connections is not worth its memory.
    pub max: usize,
    /// Most connections one user may have open, every face together
    /// (None: no limit). Checked when the face registers the connection,
    /// after the client has logged in.
    pub max_per_user: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 10_000,
            max_per_user: None,
        }
    }
}

/// Why a connection was not let in. Each face tells its client in its own
/// words (AMQP: connection.close 530; MQTT: CONNACK 0x97 quota exceeded).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Refused {
    #[error("the broker has reached its limit of {limit} connections")]
    TooMany { limit: usize },
    #[error("user '{user}' has reached its limit of {limit} connections")]
    TooManyForUser { user: String, limit: usize },
}

impl Refused {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refused::TooMany { .. } => "max_connections",
            Refused::TooManyForUser { .. } => "max_connections_per_user",
        }
    }
}
