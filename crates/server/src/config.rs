//! Server settings: what `ferry serve` flags and the TOML config file say.
//! Every flag has a config key of the same name; flags win.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ferry_storage::{FsyncPolicy, JournalConfig};
use serde::{Deserialize, Deserializer};

use crate::error::ServerError;

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

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The config file. Keys are the flag names without the leading dashes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub admin_listen: Option<Listen>,
    pub aws_listen: Option<Listen>,
    pub amqp_listen: Option<Listen>,
    pub amqps_listen: Option<Listen>,
    pub aws_tls_listen: Option<Listen>,
    pub admin_tls_listen: Option<Listen>,
    /// The server's certificate chain and key (PEM files).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates client certificates must chain to (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// `none`, `optional` or `required`.
    pub tls_client_certs: Option<String>,
    pub aws_region: Option<String>,
    pub aws_account_id: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub fsync: Option<Fsync>,
    pub fsync_interval_ms: Option<u64>,
    pub segment_size: Option<u64>,
    pub repair: Option<bool>,
    pub memory_budget: Option<u64>,
    pub memory_high_watermark: Option<u64>,
    pub disk_free_limit: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_user: Option<usize>,
    pub max_queues: Option<usize>,
    pub max_queue_length: Option<u64>,
    pub amqp_frame_max: Option<u32>,
    pub amqp_channel_max: Option<u16>,
    pub amqp_max_message_size: Option<u64>,
    pub amqp_sasl_external: Option<bool>,
    pub encryption_key_file: Option<PathBuf>,
    /// Keys queues may name to seal their messages with: name = key file.
    pub encryption_queue_keys: Option<std::collections::BTreeMap<String, PathBuf>>,
    pub metrics_per_queue: Option<bool>,
    /// Vhosts besides `/`.
    pub vhosts: Option<Vec<String>>,
    /// `[[users]]` and `[[permissions]]` tables (see ferry_auth::AuthConfig).
    #[serde(default)]
    pub users: Vec<ferry_auth::UserConfig>,
    #[serde(default)]
    pub permissions: Vec<ferry_auth::PermissionConfig>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ServerError::Config {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }
}

pub const DEFAULT_DATA_DIR: &str = "./ferry-data";
pub const DEFAULT_ADMIN_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    15672,
));

pub const DEFAULT_AMQP_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    5672,
));

/// The TLS listeners' defaults once a certificate is configured
/// (RabbitMQ's ports for AMQPS and management over TLS).
pub const DEFAULT_AMQPS_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    5671,
));
pub const DEFAULT_ADMIN_TLS_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    15671,
));
pub const DEFAULT_AWS_TLS_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    9325,
));

pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 100;
pub const DEFAULT_AWS_LISTEN: Listen = Listen::At(SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
    9324,
));

/// Settings after flags, file and defaults are merged.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub admin_listen: Listen,
    /// The SQS (and later SNS) HTTP APIs.
    pub aws_listen: Listen,
    pub sqs: ferry_sqs::SqsConfig,
    /// AMQP 0-9-1.
    pub amqp_listen: Listen,
    /// The same three over TLS (off unless a certificate is configured).
    pub amqps_listen: Listen,
    pub aws_tls_listen: Listen,
    pub admin_tls_listen: Listen,
    pub tls: Option<crate::TlsSettings>,
    pub amqp: ferry_amqp::AmqpConfig,
    /// The config file's users and permissions (AMQP and the admin API
    /// now; the other protocols as they take users). Users made through the
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

pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;
/// Enough for any real application; a client declaring queues in a loop
/// stops here instead of at the end of memory.
pub const DEFAULT_MAX_QUEUES: usize = 100_000;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            admin_listen: DEFAULT_ADMIN_LISTEN,
            aws_listen: DEFAULT_AWS_LISTEN,
            sqs: ferry_sqs::SqsConfig::default(),
            amqp_listen: DEFAULT_AMQP_LISTEN,
            amqps_listen: Listen::Off,
            aws_tls_listen: Listen::Off,
            admin_tls_listen: Listen::Off,
            tls: None,
            amqp: ferry_amqp::AmqpConfig::default(),
            users: ferry_auth::AuthConfig::default(),
            journal: JournalConfig::default(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            memory_high_watermark: crate::memory::default_high_watermark(),
            disk_free_limit: crate::disk::DEFAULT_FREE_LIMIT,
            max_queues: DEFAULT_MAX_QUEUES,
            max_queue_length: None,
            metrics_per_queue: true,
            reclaim: None,
        }
    }
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
            Ok(Listen::At("127.0.0.1:5672".parse().expect("addr")))
        );
        assert!("[::1]:80".parse::<Listen>().is_ok());
        assert!("nowhere".parse::<Listen>().is_err());
        assert!("localhost:99999".parse::<Listen>().is_err());
    }

    #[test]
    fn config_file_keys_are_flag_names() {
        let c: FileConfig = toml::from_str(
            "data-dir = \"/tmp/x\"\nadmin-listen = \"off\"\nlog-level = \"debug\"\n\
             fsync = \"interval\"\nfsync-interval-ms = 20\nsegment-size = 4096\nrepair = true\n",
        )
        .expect("parse");
        assert_eq!(c.fsync, Some(Fsync::Interval));
        assert_eq!(c.fsync_interval_ms, Some(20));
        assert_eq!(c.segment_size, Some(4096));
        assert_eq!(c.repair, Some(true));
        assert!(toml::from_str::<FileConfig>("fsync = \"sometimes\"").is_err());
        assert_eq!(c.admin_listen, Some(Listen::Off));
        assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/x")));
        assert!(toml::from_str::<FileConfig>("unknown-key = 1").is_err());
        assert!(toml::from_str::<FileConfig>("admin-listen = \"bad\"").is_err());
        let keys: FileConfig =
            toml::from_str("[encryption-queue-keys]\norders = \"/keys/orders\"\n").expect("parse");
        assert_eq!(
            keys.encryption_queue_keys
                .and_then(|k| k.get("orders").cloned()),
            Some(PathBuf::from("/keys/orders"))
        );
    }
}
