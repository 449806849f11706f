//! Server settings.
//!
//! Settings come in layers, each over the one before: defaults < the
//! config file < the environment < flags. Every layer is a TOML table of
//! the same shape ([`layers`]); the merged table is read once into
//! [`Settings`], a section per face, and [`Settings::resolve`] turns that
//! into the [`ServerConfig`] the server starts with (reading key files,
//! checking limits). An option is declared once here, with its default,
//! and once as a flag with its help.

mod layers;
mod settings;

pub use layers::{Table, from_file, merge, normalize};
pub use settings::{AdminSection, AmqpSection, AwsSection, Settings};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ferry_face::{ConnectionLimits, FaceSpec};
use ferry_storage::{FsyncPolicy, JournalConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a listener listens, or that it is off.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;

    /// `off`, `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`; port 0 picks a free port.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        if let Some(port) = s.strip_prefix("localhost:") {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("'{s}': the port must be a number from 0 to 65535"))?;
            return Ok(Listen::At(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }
        s.parse::<SocketAddr>()
            .map(Listen::At)
            .map_err(|_| format!("'{s}': expected HOST:PORT (e.g. 127.0.0.1:5672) or 'off'"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::At(a) => write!(f, "{a}"),
        }
    }
}

impl Listen {
    /// 127.0.0.1 on `port`.
    pub const fn loopback(port: u16) -> Listen {
        Listen::At(SocketAddr::new(
            std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
        ))
    }
}

impl Serialize for Listen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// When the journal syncs to disk (see `FsyncPolicy` for what each risks).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

impl FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Fsync::Always),
            "interval" => Ok(Fsync::Interval),
            "never" => Ok(Fsync::Never),
            other => Err(format!("'{other}': expected always, interval or never")),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Interval => "interval",
            Fsync::Never => "never",
        })
    }
}

impl Serialize for Fsync {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub const DEFAULT_DATA_DIR: &str = "./ferry-data";
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 100;
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;
/// Enough for any real application; a client declaring queues in a loop
/// stops here instead of at the end of memory.
pub const DEFAULT_MAX_QUEUES: usize = 100_000;

/// Where one face listens, plain and over TLS.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FaceListen {
    pub plain: Listen,
    pub tls: Listen,
}

impl FaceListen {
    pub const OFF: FaceListen = FaceListen {
        plain: Listen::Off,
        tls: Listen::Off,
    };

    /// A face's defaults: its plain port on loopback; its TLS port too if
    /// the broker has a certificate.
    pub fn defaults(spec: &FaceSpec, tls: bool) -> FaceListen {
        FaceListen {
            plain: Listen::loopback(spec.port),
            tls: if tls {
                Listen::loopback(spec.tls_port)
            } else {
                Listen::Off
            },
        }
    }
}

/// Where every face listens, by face name. A face not in it is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listeners(pub BTreeMap<&'static str, FaceListen>);

impl Listeners {
    pub fn of(&self, face: &FaceSpec) -> FaceListen {
        self.0.get(face.name).copied().unwrap_or(FaceListen::OFF)
    }

    pub fn set(&mut self, face: &'static FaceSpec, listen: FaceListen) {
        self.0.insert(face.name, listen);
    }

    /// Whether any plain (not TLS) listener is on.
    pub fn any_plain(&self) -> bool {
        self.0.values().any(|l| l.plain != Listen::Off)
    }
}

/// Settings after every layer is merged and resolved.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listeners: Listeners,
    pub tls: Option<crate::TlsSettings>,
    /// The SQS (and later SNS) HTTP APIs.
    pub sqs: ferry_sqs::SqsConfig,
    /// AMQP 0-9-1.
    pub amqp: ferry_amqp::AmqpConfig,
    /// Kafka (its advertised address is the listener's unless set).
    pub kafka: ferry_kafka::KafkaConfig,
    /// Consumer groups' timeouts and limits (set in `[kafka]`).
    pub groups: ferry_core::group::GroupConfig,
    /// How often streams' retention runs.
    pub retention_check: std::time::Duration,
    /// Connections of every face together, in all and per user.
    pub limits: ConnectionLimits,
    /// The config file's users and permissions. Users made through the
    /// admin API are kept in the data directory.
    pub users: ferry_auth::AuthConfig,
    pub journal: JournalConfig,
    /// Bytes of message bodies kept in memory; journaled ones beyond it are
    /// read back from the journal when needed.
    pub memory_budget: u64,
    /// Resident memory past which publishers are held back.
    pub memory_high_watermark: u64,
    /// Free disk space under which publishers are held back.
    pub disk_free_limit: u64,
    /// Most queues per namespace.
    pub max_queues: usize,
    /// Most messages any queue may hold (None: no cap beyond the queue's own).
    pub max_queue_length: Option<u64>,
    /// Per-queue series at /metrics (off: totals only, for many queues).
    pub metrics_per_queue: bool,
    /// Asks the process's allocator to give freed memory back to the OS
    /// (the binary knows its allocator; called while memory is short).
    pub reclaim: Option<fn()>,
}

/// The journal policy for an fsync setting and interval.
pub fn fsync_policy(fsync: Fsync, interval_ms: u64) -> FsyncPolicy {
    match fsync {
        Fsync::Always => FsyncPolicy::Always,
        Fsync::Interval => {
            FsyncPolicy::Interval(std::time::Duration::from_millis(interval_ms.max(1)))
        }
        Fsync::Never => FsyncPolicy::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert_eq!("off".parse::<Listen>(), Ok(Listen::Off));
        assert_eq!(
            "127.0.0.1:0".parse::<Listen>(),
            Ok(Listen::At("127.0.0.1:0".parse().expect("addr")))
        );
        assert_eq!(
            "localhost:5672".parse::<Listen>(),
            Ok(Listen::loopback(5672))
        );
        assert!("[::1]:80".parse::<Listen>().is_ok());
        assert!("nowhere".parse::<Listen>().is_err());
        assert!("localhost:99999".parse::<Listen>().is_err());
    }
}
