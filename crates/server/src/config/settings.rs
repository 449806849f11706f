//! Every setting, once, with its default: the merged layers are read into
//! [`Settings`], and [`Settings::resolve`] makes the [`ServerConfig`].
//!
//! Keys are kebab-case. Broker-wide settings are top-level; each face has
//! a section named after it (`[amqp]`, `[aws]`, `[admin]`) whose keys are
//! also accepted flat with the face's name in front (`amqp-frame-max`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_face::ConnectionLimits;
use ferry_storage::{JournalConfig, MasterKey};
use serde::Deserialize;

use super::{
    DEFAULT_DATA_DIR, DEFAULT_FSYNC_INTERVAL_MS, DEFAULT_MAX_QUEUES, DEFAULT_MEMORY_BUDGET,
    FaceListen, Fsync, Listen, Listeners, ServerConfig, Table, fsync_policy,
};
use crate::error::ServerError;
use crate::faces;
use crate::tls::{ClientCerts, TlsSettings};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub log_level: Option<String>,
    /// The server's certificate chain and key (PEM files).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates client certificates must chain to (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Default: optional with a client CA, else none.
    pub tls_client_certs: Option<ClientCerts>,
    pub fsync: Fsync,
    pub fsync_interval_ms: u64,
    pub segment_size: u64,
    pub repair: bool,
    pub memory_budget: u64,
    pub memory_high_watermark: u64,
    pub disk_free_limit: u64,
    /// Connections of every face together.
    pub max_connections: usize,
    pub max_connections_per_user: Option<usize>,
    pub max_queues: usize,
    pub max_queue_length: Option<u64>,
    pub encryption_key_file: Option<PathBuf>,
    /// Keys queues may name to seal their messages with: name = key file.
    pub encryption_queue_keys: BTreeMap<String, PathBuf>,
    pub metrics_per_queue: bool,
    /// Namespaces (AMQP vhosts) besides `/`.
    pub vhosts: Vec<String>,
    /// `[[users]]` and `[[permissions]]` tables (see ferry_auth::AuthConfig).
    pub users: Vec<ferry_auth::UserConfig>,
    pub permissions: Vec<ferry_auth::PermissionConfig>,
    pub admin: AdminSection,
    pub aws: AwsSection,
    pub amqp: AmqpSection,
    pub kafka: KafkaSection,
    /// How often streams' retention is applied (Kafka's
    /// `log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
}

/// `[kafka]`: the Kafka protocol on the streams engine.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct KafkaSection {
    pub listen: Listen,
    pub tls_listen: Option<Listen>,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`.
    pub num_partitions: u32,
    /// What Metadata tells clients to connect to [default: the listener's
    /// own address].
    pub advertised_host: Option<String>,
    /// Kafka's `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// The user a client without credentials acts as ("" refuses them).
    pub anonymous_user: String,
    /// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i64,
    /// Kafka's `group.max.size` (0: no limit).
    pub group_max_size: usize,
    /// Kafka's `offsets.retention.minutes`.
    pub offsets_retention_minutes: i64,
}

/// `[admin]`: the admin HTTP API and console.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: Listen,
    /// None: on at the face's TLS port once a certificate is configured.
    pub tls_listen: Option<Listen>,
}

/// `[aws]`: the AWS APIs (SQS).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AwsSection {
    pub listen: Listen,
    pub tls_listen: Option<Listen>,
    /// The region in ARNs.
    pub region: String,
    /// The account id in queue URLs and ARNs.
    pub account_id: String,
    /// With a secret: every request must be signed with this key.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// `[amqp]`: AMQP 0-9-1.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AmqpSection {
    pub listen: Listen,
    pub tls_listen: Option<Listen>,
    pub frame_max: u32,
    pub channel_max: u16,
    pub max_message_size: u64,
    pub sasl_external: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let journal = JournalConfig::default();
        let limits = ConnectionLimits::default();
        Settings {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_level: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_certs: None,
            fsync: Fsync::Always,
            fsync_interval_ms: DEFAULT_FSYNC_INTERVAL_MS,
            segment_size: journal.segment_size,
            repair: journal.repair,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            memory_high_watermark: crate::memory::default_high_watermark(),
            disk_free_limit: crate::disk::DEFAULT_FREE_LIMIT,
            max_connections: limits.max,
            max_connections_per_user: limits.max_per_user,
            max_queues: DEFAULT_MAX_QUEUES,
            max_queue_length: None,
            encryption_key_file: None,
            encryption_queue_keys: BTreeMap::new(),
            metrics_per_queue: true,
            vhosts: Vec::new(),
            users: Vec::new(),
            permissions: Vec::new(),
            admin: AdminSection::default(),
            aws: AwsSection::default(),
            amqp: AmqpSection::default(),
            kafka: KafkaSection::default(),
            retention_check_interval_ms: 300_000,
        }
    }
}

impl Default for KafkaSection {
    fn default() -> Self {
        let k = ferry_kafka::KafkaConfig::default();
        let g = ferry_core::group::GroupConfig::default();
        KafkaSection {
            listen: Listen::loopback(ferry_kafka::SPEC.port),
            tls_listen: None,
            auto_create_topics: k.auto_create_topics,
            num_partitions: k.default_partitions,
            advertised_host: None,
            max_request_bytes: k.max_request_bytes,
            anonymous_user: k.anonymous_user.unwrap_or_default(),
            group_min_session_timeout_ms: g.min_session_timeout_ms,
            group_max_session_timeout_ms: g.max_session_timeout_ms,
            group_initial_rebalance_delay_ms: g.initial_rebalance_delay_ms,
            group_max_size: 0,
            offsets_retention_minutes: g.offsets_retention_ms / 60_000,
        }
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: Listen::loopback(faces::ADMIN.port),
            tls_listen: None,
        }
    }
}

impl Default for AwsSection {
    fn default() -> Self {
        let sqs = ferry_sqs::SqsConfig::default();
        AwsSection {
            listen: Listen::loopback(faces::AWS.port),
            tls_listen: None,
            region: sqs.region,
            account_id: sqs.account_id,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl Default for AmqpSection {
    fn default() -> Self {
        let amqp = ferry_amqp::AmqpConfig::default();
        AmqpSection {
            listen: Listen::loopback(ferry_amqp::SPEC.port),
            tls_listen: None,
            frame_max: amqp.frame_max,
            channel_max: amqp.channel_max,
            max_message_size: amqp.max_message_size,
            sasl_external: amqp.sasl_external,
        }
    }
}

fn bad(detail: impl Into<String>) -> ServerError {
    ServerError::Settings(detail.into())
}

impl Settings {
    /// Reads the merged layers. Unknown keys are refused.
    pub fn from_table(table: Table) -> Result<Settings, ServerError> {
        Settings::deserialize(toml::Value::Table(table)).map_err(|e| bad(e.to_string()))
    }

    /// The server's configuration: key files read, TLS listeners on by
    /// default once there is a certificate, limits checked.
    pub fn resolve(self) -> Result<ServerConfig, ServerError> {
        self.check_limits()?;
        let tls = self.tls_settings()?;
        let on = tls.is_some();
        // A face's TLS listener is on by default once there is a certificate.
        let listen = |spec: &'static ferry_face::FaceSpec, plain: Listen, tls: Option<Listen>| {
            let defaults = FaceListen::defaults(spec, on);
            FaceListen {
                plain,
                tls: tls.unwrap_or(defaults.tls),
            }
        };
        let mut listeners = Listeners::default();
        listeners.set(
            &faces::ADMIN,
            listen(&faces::ADMIN, self.admin.listen, self.admin.tls_listen),
        );
        listeners.set(
            &faces::AWS,
            listen(&faces::AWS, self.aws.listen, self.aws.tls_listen),
        );
        listeners.set(
            &ferry_amqp::SPEC,
            listen(&ferry_amqp::SPEC, self.amqp.listen, self.amqp.tls_listen),
        );
        listeners.set(
            &ferry_kafka::SPEC,
            listen(&ferry_kafka::SPEC, self.kafka.listen, self.kafka.tls_listen),
        );
        let kafka = ferry_kafka::KafkaConfig {
            auto_create_topics: self.kafka.auto_create_topics,
            default_partitions: self.kafka.num_partitions,
            advertised_host: self.kafka.advertised_host.clone().unwrap_or_default(),
            max_request_bytes: self.kafka.max_request_bytes,
            anonymous_user: Some(self.kafka.anonymous_user.clone()).filter(|u| !u.is_empty()),
            ..ferry_kafka::KafkaConfig::default()
        };
        let groups = ferry_core::group::GroupConfig {
            min_session_timeout_ms: self.kafka.group_min_session_timeout_ms,
            max_session_timeout_ms: self.kafka.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.kafka.group_initial_rebalance_delay_ms,
            max_size: match self.kafka.group_max_size {
                0 => usize::MAX,
                n => n,
            },
            offsets_retention_ms: self.kafka.offsets_retention_minutes.saturating_mul(60_000),
            ..ferry_core::group::GroupConfig::default()
        };
        let journal = JournalConfig {
            segment_size: self.segment_size,
            fsync: fsync_policy(self.fsync, self.fsync_interval_ms),
            repair: self.repair,
            encryption: encryption_key(self.encryption_key_file.as_deref())?,
            queue_keys: queue_keys(&self.encryption_queue_keys)?,
        };
        let defaults = ferry_sqs::SqsConfig::default();
        let sqs = ferry_sqs::SqsConfig {
            region: self.aws.region,
            account_id: self.aws.account_id,
            credentials: credentials(self.aws.access_key_id, self.aws.secret_access_key)?,
            ..defaults
        };
        let amqp = ferry_amqp::AmqpConfig {
            frame_max: self.amqp.frame_max,
            channel_max: self.amqp.channel_max,
            max_message_size: self.amqp.max_message_size,
            sasl_external: self.amqp.sasl_external,
            vhosts: self.vhosts,
            ..ferry_amqp::AmqpConfig::default()
        };
        let users = ferry_auth::AuthConfig {
            users: self.users,
            permissions: self.permissions,
        };
        // Checked now: a bad hash or pattern is a start-up error.
        users
            .build()
            .map_err(|e| bad(format!("the config file's users: {e}")))?;
        Ok(ServerConfig {
            data_dir: self.data_dir,
            listeners,
            tls,
            sqs,
            amqp,
            kafka,
            groups,
            retention_check: std::time::Duration::from_millis(
                self.retention_check_interval_ms.max(1),
            ),
            limits: ConnectionLimits {
                max: self.max_connections,
                max_per_user: self.max_connections_per_user,
            },
            users,
            journal,
            memory_budget: self.memory_budget,
            memory_high_watermark: self.memory_high_watermark,
            disk_free_limit: self.disk_free_limit,
            max_queues: self.max_queues,
            max_queue_length: self.max_queue_length,
            metrics_per_queue: self.metrics_per_queue,
            // The binary sets it: it knows its allocator.
            reclaim: None,
        })
    }

    /// Limits a client could not work with, or that would not limit anything.
    fn check_limits(&self) -> Result<(), ServerError> {
        // AMQP 0-9-1: peers must accept frames of at least 4096 bytes. A
        // connection buffers a whole frame: a huge frame-max would let each
        // client make the broker hold that much.
        if !(4096..=4 * 1024 * 1024).contains(&self.amqp.frame_max) {
            return Err(bad("amqp-frame-max must be from 4096 to 4194304 bytes"));
        }
        if !(1..=ferry_core::stream::MAX_PARTITIONS_PER_STREAM).contains(&self.kafka.num_partitions)
        {
            return Err(bad("kafka-num-partitions must be from 1 to 10000"));
        }
        if !(1024..=1 << 30).contains(&self.kafka.max_request_bytes) {
            return Err(bad("kafka-max-request-bytes must be from 1 KiB to 1 GiB"));
        }
        let k = &self.kafka;
        if k.group_min_session_timeout_ms < 1
            || k.group_max_session_timeout_ms < k.group_min_session_timeout_ms
        {
            return Err(bad(
                "kafka-group-min-session-timeout-ms must be at least 1 and at most kafka-group-max-session-timeout-ms",
            ));
        }
        if !(0..=300_000).contains(&k.group_initial_rebalance_delay_ms) {
            return Err(bad(
                "kafka-group-initial-rebalance-delay-ms must be from 0 to 300000",
            ));
        }
        if k.offsets_retention_minutes < 1 {
            return Err(bad("kafka-offsets-retention-minutes must be at least 1"));
        }
        if self.amqp.channel_max < 1 {
            return Err(bad("amqp-channel-max must be at least 1"));
        }
        if !(1..=512 * 1024 * 1024).contains(&self.amqp.max_message_size) {
            return Err(bad("amqp-max-message-size must be from 1 byte to 512 MiB"));
        }
        if self.max_queue_length == Some(0) {
            return Err(bad("max-queue-length must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(bad("max-connections must be at least 1"));
        }
        Ok(())
    }

    /// The TLS settings, if a certificate is configured.
    fn tls_settings(&self) -> Result<Option<TlsSettings>, ServerError> {
        let client_certs = self
            .tls_client_certs
            .unwrap_or(if self.tls_client_ca.is_some() {
                ClientCerts::Optional
            } else {
                ClientCerts::None
            });
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
                client_certs,
            })),
            (None, None) if self.tls_client_ca.is_none() && client_certs == ClientCerts::None => {
                Ok(None)
            }
            _ => Err(bad("TLS needs both tls-cert and tls-key")),
        }
    }
}

fn credentials(
    id: Option<String>,
    secret: Option<String>,
) -> Result<ferry_sqs::sigv4::Credentials, ServerError> {
    let mut c = ferry_sqs::sigv4::Credentials::default();
    match (id, secret) {
        (Some(id), Some(secret)) => {
            c.0.insert(id, secret);
        }
        (None, None) => {}
        _ => {
            return Err(bad(
                "aws-access-key-id and aws-secret-access-key go together",
            ));
        }
    }
    Ok(c)
}

/// The master key for encryption at rest: from a file, or from
/// FERRY_ENCRYPTION_KEY (the key itself: 64 hex digits or base64); none:
/// not encrypted.
fn encryption_key(file: Option<&std::path::Path>) -> Result<Option<Arc<MasterKey>>, ServerError> {
    let text = match (file, std::env::var_os("FERRY_ENCRYPTION_KEY")) {
        (Some(path), _) => {
            std::fs::read(path).map_err(|e| bad(format!("reading {}: {e}", path.display())))?
        }
        // Set but unreadable is an error, never "not encrypted".
        (None, Some(v)) => v
            .into_string()
            .map_err(|_| bad("FERRY_ENCRYPTION_KEY is not text"))?
            .into_bytes(),
        (None, None) => return Ok(None),
    };
    let key = MasterKey::parse(&text).map_err(|e| bad(format!("the encryption key: {e}")))?;
    Ok(Some(Arc::new(key)))
}

/// The queue keys, by name, read from their files.
fn queue_keys(
    paths: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, Arc<MasterKey>>, ServerError> {
    paths
        .iter()
        .map(|(name, path)| {
            // The name is checked with the keys (ferry_storage::Keyring::open).
            let text =
                std::fs::read(path).map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
            let key = MasterKey::parse(&text)
                .map_err(|e| bad(format!("the key '{name}' in {}: {e}", path.display())))?;
            Ok((name.clone(), Arc::new(key)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{merge, normalize};

    fn settings(layers: &[&str]) -> Result<Settings, ServerError> {
        let mut table = Table::new();
        for l in layers {
            let layer = normalize(toml::from_str(l).expect("toml")).map_err(bad)?;
            merge(&mut table, layer);
        }
        Settings::from_table(table)
    }

    #[test]
    fn defaults_then_layers_in_order() {
        let d = settings(&[]).expect("defaults").resolve().expect("resolve");
        assert_eq!(
            d.listeners.of(&ferry_amqp::SPEC).plain,
            Listen::loopback(5672)
        );
        assert_eq!(d.listeners.of(&ferry_amqp::SPEC).tls, Listen::Off);
        assert_eq!(d.journal.fsync, ferry_storage::FsyncPolicy::Always);
        assert!(d.sqs.credentials.is_empty());

        let c = settings(&[
            "data-dir = \"/from/file\"\nfsync = \"interval\"\nfsync-interval-ms = 7\n\
             amqp-frame-max = 8192\naws-region = \"eu-west-1\"\nvhosts = [\"staging\"]\n\
             [aws]\naccess-key-id = \"AKID\"\nsecret-access-key = \"s\"\n",
            // A later layer (the environment, flags) wins key by key.
            "amqp-frame-max = 16384\nadmin-listen = \"127.0.0.1:0\"\n",
        ])
        .expect("settings")
        .resolve()
        .expect("resolve");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(
            c.journal.fsync,
            ferry_storage::FsyncPolicy::Interval(std::time::Duration::from_millis(7))
        );
        assert_eq!(c.amqp.frame_max, 16384);
        assert_eq!(c.amqp.vhosts, vec!["staging".to_owned()]);
        assert_eq!(c.sqs.region, "eu-west-1");
        assert_eq!(
            c.sqs.credentials.0.get("AKID").map(String::as_str),
            Some("s")
        );
        assert_eq!(
            c.listeners.of(&faces::ADMIN).plain,
            "127.0.0.1:0".parse().expect("listen")
        );
    }

    #[test]
    fn tls_listeners_turn_on_with_a_certificate() {
        let c =
            settings(&["tls-cert = \"/c.pem\"\ntls-key = \"/k.pem\"\naws-tls-listen = \"off\"\n"])
                .expect("settings")
                .resolve()
                .expect("resolve");
        assert_eq!(
            c.listeners.of(&ferry_amqp::SPEC).tls,
            Listen::loopback(5671)
        );
        assert_eq!(c.listeners.of(&faces::ADMIN).tls, Listen::loopback(15671));
        assert_eq!(
            c.listeners.of(&faces::AWS).tls,
            Listen::Off,
            "unless turned off"
        );
        assert_eq!(c.tls.map(|t| t.client_certs), Some(ClientCerts::None));
        let mutual = settings(&[
            "tls-cert = \"/c.pem\"\ntls-key = \"/k.pem\"\ntls-client-ca = \"/ca.pem\"\n",
        ])
        .expect("settings")
        .resolve()
        .expect("resolve");
        assert_eq!(
            mutual.tls.map(|t| t.client_certs),
            Some(ClientCerts::Optional)
        );
        assert!(
            settings(&["tls-cert = \"/c.pem\"\n"])
                .expect("settings")
                .resolve()
                .is_err(),
            "a certificate needs its key"
        );
    }

    #[test]
    fn wrong_settings_are_refused() {
        assert!(settings(&["unknown-key = 1\n"]).is_err());
        assert!(settings(&["[amqp]\nunknown = 1\n"]).is_err());
        assert!(settings(&["fsync = \"sometimes\"\n"]).is_err());
        assert!(settings(&["admin-listen = \"bad\"\n"]).is_err());
        let limits = |t: &str| settings(&[t]).expect("settings").resolve().is_err();
        assert!(limits("amqp-frame-max = 100\n"));
        assert!(limits("max-queue-length = 0\n"));
        assert!(
            limits("aws-access-key-id = \"AKID\"\n"),
            "a key needs its secret"
        );
        let keys =
            settings(&["[encryption-queue-keys]\norders = \"/keys/orders\"\n"]).expect("settings");
        assert_eq!(
            keys.encryption_queue_keys.get("orders"),
            Some(&PathBuf::from("/keys/orders"))
        );
    }
}
