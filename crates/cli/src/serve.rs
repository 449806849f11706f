//! `ferry serve`: flags, config file, logging, signals.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferry_server::config::{self, Fsync};
use ferry_server::{ClientCerts, FileConfig, Listen, Server, ServerConfig, TlsSettings};
use ferry_storage::JournalConfig;
use tracing_subscriber::EnvFilter;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Directory of the embedded storage [default: ./ferry-data]
    /// (config key: data-dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// TOML config file; its keys are these flags' names (data-dir,
    /// admin-listen, log-level). Flags win over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Admin HTTP API (health, management) [default: 127.0.0.1:15672];
    /// port 0 picks a free port, `off` disables it (config key: admin-listen).
    #[arg(long, value_name = "HOST:PORT|off")]
    admin_listen: Option<Listen>,

    /// The AWS APIs (SQS) over HTTP [default: 127.0.0.1:9324]; port 0 picks a
    /// free port, `off` disables them (config key: aws-listen).
    #[arg(long, value_name = "HOST:PORT|off")]
    aws_listen: Option<Listen>,

    /// AMQP 0-9-1 (RabbitMQ clients) [default: 127.0.0.1:5672]; port 0 picks
    /// a free port, `off` disables it (config key: amqp-listen).
    #[arg(long, value_name = "HOST:PORT|off")]
    amqp_listen: Option<Listen>,

    /// AMQP over TLS (AMQPS) [default: 127.0.0.1:5671 once --tls-cert is
    /// given, else off] (config key: amqps-listen).
    #[arg(long, value_name = "HOST:PORT|off")]
    amqps_listen: Option<Listen>,

    /// The AWS APIs over HTTPS [default: 127.0.0.1:9325 once --tls-cert is
    /// given, else off] (config key: aws-tls-listen).
    #[arg(long, value_name = "HOST:PORT|off")]
    aws_tls_listen: Option<Listen>,

    /// The admin API and console over HTTPS [default: 127.0.0.1:15671 once
    /// --tls-cert is given, else off] (config key: admin-tls-listen).
    #[arg(long, value_name = "HOST:PORT|off")]
    admin_tls_listen: Option<Listen>,

    /// The server's TLS certificate chain, PEM, leaf first; read again on
    /// SIGHUP (config key: tls-cert).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, PEM (config key: tls-key).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to; turns
    /// on mutual TLS (config key: tls-client-ca).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,

    /// Client certificates: `none`, `optional` (verified if shown; AMQP
    /// clients may then log in with SASL EXTERNAL as the certificate's
    /// common name) or `required` [default: optional with --tls-client-ca,
    /// else none] (config key: tls-client-certs).
    #[arg(long, value_name = "none|optional|required")]
    tls_client_certs: Option<ClientCerts>,

    /// Let AMQP clients with a verified client certificate log in with SASL
    /// EXTERNAL as the user its common name names, without a password
    /// (config key: amqp-sasl-external).
    #[arg(long)]
    amqp_sasl_external: bool,

    /// Encrypt message bodies and headers at rest (AES-256-GCM) under the
    /// master key in this file (32 bytes: 64 hex digits, base64 or raw;
    /// `ferry encryption new-key` makes one). FERRY_ENCRYPTION_KEY may hold
    /// the key itself instead (config key: encryption-key-file).
    #[arg(long, value_name = "FILE")]
    encryption_key_file: Option<PathBuf>,

    /// A key a queue may name to seal its messages with instead of the
    /// journal's key (SQS KmsMasterKeyId `alias/NAME`, AMQP argument
    /// `x-encryption-key`), as NAME=FILE; repeatable. While any message it
    /// sealed is on disk the key must be given (config table:
    /// encryption-queue-keys).
    #[arg(long = "encryption-queue-key", value_name = "NAME=FILE")]
    encryption_queue_keys: Vec<String>,

    /// The region in queue ARNs [default: us-east-1] (config key: aws-region).
    #[arg(long, value_name = "REGION")]
    aws_region: Option<String>,

    /// The account id in queue URLs and ARNs [default: 000000000000]
    /// (config key: aws-account-id).
    #[arg(long, value_name = "ID")]
    aws_account_id: Option<String>,

    /// An access key id for the AWS APIs; with it (and its secret), every
    /// request must carry a valid SigV4 signature. Without, any key is
    /// accepted (config key: aws-access-key-id).
    #[arg(long, value_name = "ID", env = "FERRY_AWS_ACCESS_KEY_ID")]
    aws_access_key_id: Option<String>,

    /// The secret of --aws-access-key-id (config key: aws-secret-access-key).
    #[arg(
        long,
        value_name = "SECRET",
        env = "FERRY_AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    aws_secret_access_key: Option<String>,

    /// When the journal syncs to disk: `always` (before any confirm: a
    /// confirmed message survives power loss), `interval` (confirm once
    /// written; sync every --fsync-interval-ms: a power loss may lose that
    /// much), `never` (the OS decides) [default: always] (config key: fsync).
    #[arg(long, value_name = "always|interval|never")]
    fsync: Option<Fsync>,

    /// Milliseconds between syncs with `--fsync interval` [default: 100]
    /// (config key: fsync-interval-ms).
    #[arg(long, value_name = "MS")]
    fsync_interval_ms: Option<u64>,

    /// Journal segment size in bytes; a new segment begins past it
    /// [default: 67108864] (config key: segment-size).
    #[arg(long, value_name = "BYTES")]
    segment_size: Option<u64>,

    /// Start even if the journal has damaged records: skip them and log what
    /// was lost. Without it, damage stops the start with the file and offset
    /// (config key: repair).
    #[arg(long)]
    repair: bool,

    /// Bytes of message bodies kept in memory; persistent messages of
    /// durable queues beyond it live only in the journal until delivered
    /// [default: 1073741824] (config key: memory-budget).
    #[arg(long, value_name = "BYTES")]
    memory_budget: Option<u64>,

    /// Resident memory in bytes past which publishers are held back (AMQP
    /// connection.blocked) until it falls under 90% of it [default: 40% of
    /// the machine's memory] (config key: memory-high-watermark).
    #[arg(long, value_name = "BYTES")]
    memory_high_watermark: Option<u64>,

    /// Free bytes on the data directory's disk under which publishers are
    /// held back (AMQP connection.blocked, SQS RequestThrottled) until it
    /// is 10% above again [default: 52428800] (config key: disk-free-limit).
    #[arg(long, value_name = "BYTES")]
    disk_free_limit: Option<u64>,

    /// Most AMQP connections at once; past it, new ones are closed at once
    /// [default: 10000] (config key: max-connections).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Most AMQP connections one user may have; past it, connection.open is
    /// refused (530) [default: no limit] (config key: max-connections-per-user).
    #[arg(long, value_name = "N")]
    max_connections_per_user: Option<usize>,

    /// Most queues per namespace; declares past it are refused (AMQP 406,
    /// SQS OverLimit) [default: 100000] (config key: max-queues).
    #[arg(long, value_name = "N")]
    max_queues: Option<usize>,

    /// Most messages any one queue may hold, in every state, whatever its
    /// own settings; past it, sends to it are refused (AMQP nack or 406,
    /// SQS OverLimit) [default: no cap; the memory budget and the disk
    /// alarm bound what queues cost] (config key: max-queue-length).
    #[arg(long, value_name = "N")]
    max_queue_length: Option<u64>,

    /// Largest AMQP frame offered in connection.tune, from 4096 to 4194304
    /// [default: 131072] (config key: amqp-frame-max).
    #[arg(long, value_name = "BYTES")]
    amqp_frame_max: Option<u32>,

    /// Most channels per AMQP connection offered in connection.tune, 1 to
    /// 65535 [default: 2047] (config key: amqp-channel-max).
    #[arg(long, value_name = "N")]
    amqp_channel_max: Option<u16>,

    /// Largest AMQP message body accepted; larger ones are refused with 406
    /// PRECONDITION_FAILED [default: 16777216, up to 536870912] (config
    /// key: amqp-max-message-size).
    #[arg(long, value_name = "BYTES")]
    amqp_max_message_size: Option<u64>,

    /// Per-queue series at /metrics: true or false (false keeps only
    /// totals, for brokers with very many queues) [default: true]
    /// (config key: metrics-per-queue).
    #[arg(long, value_name = "true|false")]
    metrics_per_queue: Option<bool>,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing
    /// filter such as `ferry_core=debug`); RUST_LOG is used when unset
    /// [default: info] (config key: log-level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn credentials(
    id: Option<String>,
    secret: Option<String>,
) -> anyhow::Result<ferry_sqs::sigv4::Credentials> {
    let mut c = ferry_sqs::sigv4::Credentials::default();
    match (id, secret) {
        (Some(id), Some(secret)) => {
            c.0.insert(id, secret);
        }
        (None, None) => {}
        _ => anyhow::bail!("--aws-access-key-id and --aws-secret-access-key go together"),
    }
    Ok(c)
}

/// The master key for encryption at rest: from a file, or from
/// FERRY_ENCRYPTION_KEY (64 hex digits or base64); none: not encrypted.
fn encryption_key(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<ferry_storage::MasterKey>>> {
    let text = match (file, std::env::var_os("FERRY_ENCRYPTION_KEY")) {
        (Some(path), _) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        // Set but unreadable is an error, never "not encrypted".
        (None, Some(v)) => v
            .into_string()
            .map_err(|_| anyhow::anyhow!("FERRY_ENCRYPTION_KEY is not text"))?
            .into_bytes(),
        (None, None) => return Ok(None),
    };
    let key = ferry_storage::MasterKey::parse(&text).context("the encryption key")?;
    Ok(Some(std::sync::Arc::new(key)))
}

/// The queue keys, by name: flags (NAME=FILE) over the config's table.
fn queue_keys(
    args: &[String],
    file: Option<&std::collections::BTreeMap<String, PathBuf>>,
) -> anyhow::Result<std::collections::BTreeMap<String, std::sync::Arc<ferry_storage::MasterKey>>> {
    let mut paths = file.cloned().unwrap_or_default();
    for a in args {
        let (name, path) = a
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--encryption-queue-key takes NAME=FILE, not '{a}'"))?;
        paths.insert(name.to_owned(), PathBuf::from(path));
    }
    paths
        .into_iter()
        .map(|(name, path)| {
            // The name is checked with the keys (ferry_storage::Keyring::open).
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = ferry_storage::MasterKey::parse(&text)
                .with_context(|| format!("the key '{name}' in {}", path.display()))?;
            Ok((name, std::sync::Arc::new(key)))
        })
        .collect()
}

/// Limits a client could not work with, or that would not limit anything.
fn check_limits(c: &ServerConfig) -> anyhow::Result<()> {
    // AMQP 0-9-1: peers must accept frames of at least 4096 bytes.
    // A connection buffers a whole frame: a huge frame-max would let each
    // client make the broker hold that much.
    anyhow::ensure!(
        (4096..=4 * 1024 * 1024).contains(&c.amqp.frame_max),
        "amqp-frame-max must be from 4096 to 4194304 bytes"
    );
    anyhow::ensure!(
        c.amqp.channel_max >= 1,
        "amqp-channel-max must be at least 1"
    );
    anyhow::ensure!(
        (1..=512 * 1024 * 1024).contains(&c.amqp.max_message_size),
        "amqp-max-message-size must be from 1 byte to 512 MiB"
    );
    anyhow::ensure!(
        c.max_queue_length != Some(0),
        "max-queue-length must be at least 1"
    );
    Ok(())
}

/// The TLS settings, if a certificate is configured.
fn tls_settings(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<TlsSettings>> {
    let cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let key = args.tls_key.clone().or(file.tls_key.clone());
    let client_ca = args.tls_client_ca.clone().or(file.tls_client_ca.clone());
    let client_certs = match (args.tls_client_certs, &file.tls_client_certs) {
        (Some(c), _) => Some(c),
        (None, Some(text)) => Some(
            text.parse()
                .map_err(|e: String| anyhow::anyhow!("tls-client-certs: {e}"))?,
        ),
        (None, None) => None,
    };
    let client_certs = client_certs.unwrap_or(if client_ca.is_some() {
        ClientCerts::Optional
    } else {
        ClientCerts::None
    });
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert,
            key,
            client_ca,
            client_certs,
        })),
        (None, None) if client_ca.is_none() && client_certs == ClientCerts::None => Ok(None),
        _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
    }
}

/// Flags over file over defaults.
fn merge(args: &ServeArgs, file: FileConfig) -> anyhow::Result<(ServerConfig, Option<String>)> {
    let defaults = ServerConfig::default();
    let tls = tls_settings(args, &file)?;
    let journal = JournalConfig {
        segment_size: args
            .segment_size
            .or(file.segment_size)
            .unwrap_or(defaults.journal.segment_size),
        fsync: config::fsync_policy(
            args.fsync.or(file.fsync).unwrap_or(Fsync::Always),
            args.fsync_interval_ms
                .or(file.fsync_interval_ms)
                .unwrap_or(config::DEFAULT_FSYNC_INTERVAL_MS),
        ),
        repair: args.repair || file.repair.unwrap_or(false),
        encryption: encryption_key(
            args.encryption_key_file
                .as_deref()
                .or(file.encryption_key_file.as_deref()),
        )?,
        queue_keys: queue_keys(
            &args.encryption_queue_keys,
            file.encryption_queue_keys.as_ref(),
        )?,
    };
    let sqs = ferry_sqs::SqsConfig {
        region: args
            .aws_region
            .clone()
            .or(file.aws_region)
            .unwrap_or(defaults.sqs.region),
        account_id: args
            .aws_account_id
            .clone()
            .or(file.aws_account_id)
            .unwrap_or(defaults.sqs.account_id),
        namespace: defaults.sqs.namespace,
        credentials: credentials(
            args.aws_access_key_id.clone().or(file.aws_access_key_id),
            args.aws_secret_access_key
                .clone()
                .or(file.aws_secret_access_key),
        )?,
    };
    // With a certificate, the TLS listeners are on unless turned off.
    let tls_default = |on: Listen| if tls.is_some() { on } else { Listen::Off };
    let config = ServerConfig {
        amqps_listen: args
            .amqps_listen
            .or(file.amqps_listen)
            .unwrap_or(tls_default(config::DEFAULT_AMQPS_LISTEN)),
        aws_tls_listen: args
            .aws_tls_listen
            .or(file.aws_tls_listen)
            .unwrap_or(tls_default(config::DEFAULT_AWS_TLS_LISTEN)),
        admin_tls_listen: args
            .admin_tls_listen
            .or(file.admin_tls_listen)
            .unwrap_or(tls_default(config::DEFAULT_ADMIN_TLS_LISTEN)),
        tls,
        // The binary sets it: it knows its allocator.
        reclaim: None,
        metrics_per_queue: args
            .metrics_per_queue
            .or(file.metrics_per_queue)
            .unwrap_or(defaults.metrics_per_queue),
        memory_high_watermark: args
            .memory_high_watermark
            .or(file.memory_high_watermark)
            .unwrap_or(defaults.memory_high_watermark),
        disk_free_limit: args
            .disk_free_limit
            .or(file.disk_free_limit)
            .unwrap_or(defaults.disk_free_limit),
        memory_budget: args
            .memory_budget
            .or(file.memory_budget)
            .unwrap_or(config::DEFAULT_MEMORY_BUDGET),
        journal,
        sqs,
        amqp_listen: args
            .amqp_listen
            .or(file.amqp_listen)
            .unwrap_or(config::DEFAULT_AMQP_LISTEN),
        max_queues: args
            .max_queues
            .or(file.max_queues)
            .unwrap_or(defaults.max_queues),
        max_queue_length: args.max_queue_length.or(file.max_queue_length),
        amqp: ferry_amqp::AmqpConfig {
            frame_max: args
                .amqp_frame_max
                .or(file.amqp_frame_max)
                .unwrap_or(defaults.amqp.frame_max),
            channel_max: args
                .amqp_channel_max
                .or(file.amqp_channel_max)
                .unwrap_or(defaults.amqp.channel_max),
            max_message_size: args
                .amqp_max_message_size
                .or(file.amqp_max_message_size)
                .unwrap_or(defaults.amqp.max_message_size),
            vhosts: file.vhosts.clone().unwrap_or_default(),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.amqp.max_connections),
            max_connections_per_user: args
                .max_connections_per_user
                .or(file.max_connections_per_user),
            sasl_external: args.amqp_sasl_external || file.amqp_sasl_external.unwrap_or(false),
            ..defaults.amqp
        },
        users: {
            let auth = ferry_auth::AuthConfig {
                users: file.users.clone(),
                permissions: file.permissions.clone(),
            };
            // Checked now: a bad hash or pattern is a start-up error.
            auth.build().context("the config file's users")?;
            auth
        },
        aws_listen: args
            .aws_listen
            .or(file.aws_listen)
            .unwrap_or(config::DEFAULT_AWS_LISTEN),
        data_dir: args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or(defaults.data_dir),
        admin_listen: args
            .admin_listen
            .or(file.admin_listen)
            .unwrap_or(config::DEFAULT_ADMIN_LISTEN),
    };
    check_limits(&config)?;
    let log_level = args.log_level.clone().or(file.log_level);
    Ok((config, log_level))
}

fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("bad log level '{l}'"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

/// `reclaim`: gives the allocator's freed memory back to the OS.
pub fn run(args: ServeArgs, reclaim: fn()) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let (mut config, log_level) = merge(&args, file)?;
    config.reclaim = Some(reclaim);
    init_logging(log_level.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    // Handlers first: a signal sent right after the listening lines are
    // read must find them installed, not the default action.
    let mut signals = Signals::install()?;
    let server = Server::start(config).await?;
    {
        // One line per listener: tests and scripts read these to find ports.
        let mut out = std::io::stdout().lock();
        for (protocol, addr) in server.listening() {
            writeln!(out, "listening {protocol} {addr}")?;
        }
        out.flush()?;
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "ferry is up");
    let signal = loop {
        match signals.next().await {
            "SIGHUP" => match server.reload_tls() {
                Ok(true) => tracing::info!("TLS certificate and key reloaded"),
                Ok(false) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; the old certificate stays in use")
                }
            },
            stop => break stop,
        }
    };
    tracing::info!(signal, "shutting down; a second signal stops at once");
    tokio::spawn(async move {
        while signals.next().await == "SIGHUP" {}
        eprintln!("ferry: second signal, exiting now");
        std::process::exit(1);
    });
    server.shutdown().await;
    Ok(())
}

/// SIGTERM and SIGINT (stop), SIGHUP (reload TLS), installed once for the
/// life of the process.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(admin: Option<&str>) -> ServeArgs {
        ServeArgs {
            data_dir: None,
            config: None,
            admin_listen: admin.map(|a| a.parse().expect("listen")),
            aws_listen: None,
            amqp_listen: None,
            amqps_listen: None,
            aws_tls_listen: None,
            admin_tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_certs: None,
            amqp_sasl_external: false,
            encryption_key_file: None,
            encryption_queue_keys: Vec::new(),
            aws_region: None,
            aws_account_id: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            log_level: None,
            fsync: None,
            fsync_interval_ms: None,
            segment_size: None,
            repair: false,
            memory_budget: None,
            memory_high_watermark: None,
            disk_free_limit: None,
            max_connections: None,
            max_connections_per_user: None,
            max_queues: None,
            max_queue_length: None,
            amqp_frame_max: None,
            amqp_channel_max: None,
            amqp_max_message_size: None,
            metrics_per_queue: None,
        }
    }

    #[test]
    fn tls_listeners_turn_on_with_a_certificate() {
        let (plain, _) = merge(&args(None), FileConfig::default()).expect("merge");
        assert_eq!(plain.amqps_listen, Listen::Off);
        assert!(plain.tls.is_none());
        let file = FileConfig {
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            aws_tls_listen: Some(Listen::Off),
            ..FileConfig::default()
        };
        let (c, _) = merge(&args(None), file).expect("merge");
        assert_eq!(c.amqps_listen, config::DEFAULT_AMQPS_LISTEN);
        assert_eq!(c.admin_tls_listen, config::DEFAULT_ADMIN_TLS_LISTEN);
        assert_eq!(c.aws_tls_listen, Listen::Off, "unless turned off");
        let tls = c.tls.expect("tls");
        assert_eq!(tls.client_certs, ClientCerts::None);
        let half = FileConfig {
            tls_cert: Some("/c.pem".into()),
            ..FileConfig::default()
        };
        assert!(
            merge(&args(None), half).is_err(),
            "a certificate needs its key"
        );
        let mutual = FileConfig {
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            tls_client_ca: Some("/ca.pem".into()),
            ..FileConfig::default()
        };
        let (c, _) = merge(&args(None), mutual).expect("merge");
        assert_eq!(c.tls.map(|t| t.client_certs), Some(ClientCerts::Optional));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = FileConfig {
            data_dir: Some("/from/file".into()),
            log_level: Some("debug".into()),
            admin_listen: Some(Listen::Off),
            aws_listen: Some(Listen::Off),
            amqp_listen: Some(Listen::Off),
            aws_region: Some("eu-west-1".into()),
            aws_account_id: Some("123456789012".into()),
            aws_access_key_id: Some("AKID".into()),
            aws_secret_access_key: Some("secret".into()),
            fsync: Some(Fsync::Interval),
            fsync_interval_ms: Some(7),
            segment_size: Some(1 << 20),
            repair: Some(true),
            memory_budget: Some(4096),
            memory_high_watermark: Some(1 << 30),
            metrics_per_queue: Some(false),
            vhosts: Some(vec!["staging".into()]),
            ..FileConfig::default()
        };
        let (c, level) = merge(&args(Some("127.0.0.1:0")), file).expect("merge");
        assert_eq!(
            c.sqs.credentials.0.get("AKID").map(String::as_str),
            Some("secret")
        );
        assert_eq!(c.admin_listen, "127.0.0.1:0".parse().expect("listen"));
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(level.as_deref(), Some("debug"));
        assert_eq!(
            c.journal.fsync,
            ferry_storage::FsyncPolicy::Interval(std::time::Duration::from_millis(7))
        );
        assert_eq!(c.journal.segment_size, 1 << 20);
        assert_eq!(c.aws_listen, Listen::Off);
        assert_eq!(c.amqp_listen, Listen::Off);
        assert_eq!(c.sqs.region, "eu-west-1");
        assert_eq!(c.sqs.account_id, "123456789012");
        assert!(c.journal.repair);
        assert_eq!(c.memory_budget, 4096);
        assert_eq!(c.memory_high_watermark, 1 << 30);
        assert!(!c.metrics_per_queue);
        assert_eq!(c.amqp.vhosts, vec!["staging".to_owned()]);
        let (d, _) = merge(&args(None), FileConfig::default()).expect("merge");
        assert!(d.sqs.credentials.is_empty());
        let half = FileConfig {
            aws_access_key_id: Some("AKID".into()),
            ..FileConfig::default()
        };
        assert!(merge(&args(None), half).is_err());
        let defaults = ServerConfig::default();
        assert_eq!(d.data_dir, defaults.data_dir);
        assert_eq!(d.admin_listen, defaults.admin_listen);
        assert_eq!(d.journal.fsync, ferry_storage::FsyncPolicy::Always);
        assert!(!d.journal.repair);
    }
}
