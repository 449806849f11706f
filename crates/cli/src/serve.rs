//! `ferry serve`: flags, config file, logging, signals.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferry_face::FaceSpec;
use ferry_server::config::{self, Fsync, Table};
use ferry_server::{ClientCerts, Listen, Server, ServerConfig, Settings, faces};
use serde::Serialize;
use tracing_subscriber::EnvFilter;

/// Every flag but the listeners', which are made from the faces' specs
/// ([`ListenArgs`]). As a layer of settings ([`ServeArgs::layer`]) a
/// flag's name is its config key; a flag not given (nor its environment
/// variable) is left out, so the layers under it show through.
#[derive(Args, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServeArgs {
    /// Directory of the embedded storage [default: ./ferry-data]
    /// (config key: data-dir).
    #[arg(long, value_name = "DIR", env = "FERRY_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// TOML config file; its keys are these flags' names (data-dir,
    /// amqp-frame-max), or a face's keys in its section (`[amqp]`
    /// frame-max). The environment (FERRY_DATA_DIR, ...) wins over the
    /// file, and flags over both.
    #[arg(long, value_name = "FILE", env = "FERRY_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,

    #[command(flatten)]
    #[serde(skip)]
    listeners: ListenArgs,

    /// The server's TLS certificate chain, PEM, leaf first; read again on
    /// SIGHUP (config key: tls-cert).
    #[arg(long, value_name = "FILE", env = "FERRY_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, PEM (config key: tls-key).
    #[arg(long, value_name = "FILE", env = "FERRY_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to; turns
    /// on mutual TLS (config key: tls-client-ca).
    #[arg(long, value_name = "FILE", env = "FERRY_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,

    /// Client certificates: `none`, `optional` (verified if shown; AMQP
    /// clients may then log in with SASL EXTERNAL as the certificate's
    /// common name) or `required` [default: optional with --tls-client-ca,
    /// else none] (config key: tls-client-certs).
    #[arg(
        long,
        value_name = "none|optional|required",
        env = "FERRY_TLS_CLIENT_CERTS"
    )]
    tls_client_certs: Option<ClientCerts>,

    /// Let AMQP clients with a verified client certificate log in with SASL
    /// EXTERNAL as the user its common name names, without a password
    /// (config key: amqp-sasl-external).
    #[arg(long, env = "FERRY_AMQP_SASL_EXTERNAL")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    amqp_sasl_external: bool,

    /// Encrypt message bodies and headers at rest (AES-256-GCM) under the
    /// master key in this file (32 bytes: 64 hex digits, base64 or raw;
    /// `ferry encryption new-key` makes one). FERRY_ENCRYPTION_KEY may hold
    /// the key itself instead (config key: encryption-key-file).
    #[arg(long, value_name = "FILE", env = "FERRY_ENCRYPTION_KEY_FILE")]
    encryption_key_file: Option<PathBuf>,

    /// A key a queue may name to seal its messages with instead of the
    /// journal's key (SQS KmsMasterKeyId `alias/NAME`, AMQP argument
    /// `x-encryption-key`), as NAME=FILE; repeatable. While any message it
    /// sealed is on disk the key must be given (config table:
    /// encryption-queue-keys). The one flag with no FERRY_ variable: a
    /// list of paths has no safe separator.
    #[serde(skip)]
    #[arg(long = "encryption-queue-key", value_name = "NAME=FILE")]
    encryption_queue_keys: Vec<String>,

    /// The region in queue ARNs [default: us-east-1] (config key: aws-region).
    #[arg(long, value_name = "REGION", env = "FERRY_AWS_REGION")]
    aws_region: Option<String>,

    /// The account id in queue URLs and ARNs [default: 000000000000]
    /// (config key: aws-account-id).
    #[arg(long, value_name = "ID", env = "FERRY_AWS_ACCOUNT_ID")]
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
    #[arg(long, value_name = "always|interval|never", env = "FERRY_FSYNC")]
    fsync: Option<Fsync>,

    /// Milliseconds between syncs with `--fsync interval` [default: 100]
    /// (config key: fsync-interval-ms).
    #[arg(long, value_name = "MS", env = "FERRY_FSYNC_INTERVAL_MS", value_parser = toml_u64())]
    fsync_interval_ms: Option<u64>,

    /// Journal segment size in bytes; a new segment begins past it
    /// [default: 67108864] (config key: segment-size).
    #[arg(long, value_name = "BYTES", env = "FERRY_SEGMENT_SIZE", value_parser = toml_u64())]
    segment_size: Option<u64>,

    /// Start even if the journal has damaged records: skip them and log what
    /// was lost. Without it, damage stops the start with the file and offset
    /// (config key: repair).
    #[arg(long, env = "FERRY_REPAIR")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repair: bool,

    /// Bytes of message bodies kept in memory; persistent messages of
    /// durable queues beyond it live only in the journal until delivered
    /// [default: 1073741824] (config key: memory-budget).
    #[arg(long, value_name = "BYTES", env = "FERRY_MEMORY_BUDGET", value_parser = toml_u64())]
    memory_budget: Option<u64>,

    /// Resident memory in bytes past which publishers are held back (AMQP
    /// connection.blocked) until it falls under 90% of it [default: 40% of
    /// the machine's memory] (config key: memory-high-watermark).
    #[arg(long, value_name = "BYTES", env = "FERRY_MEMORY_HIGH_WATERMARK", value_parser = toml_u64())]
    memory_high_watermark: Option<u64>,

    /// Free bytes on the data directory's disk under which publishers are
    /// held back (AMQP connection.blocked, SQS RequestThrottled) until it
    /// is 10% above again [default: 52428800] (config key: disk-free-limit).
    #[arg(long, value_name = "BYTES", env = "FERRY_DISK_FREE_LIMIT", value_parser = toml_u64())]
    disk_free_limit: Option<u64>,

    /// Most connections at once, every face together; past it, new ones are
    /// closed at once [default: 10000] (config key: max-connections).
    #[arg(long, value_name = "N", env = "FERRY_MAX_CONNECTIONS", value_parser = toml_usize())]
    max_connections: Option<usize>,

    /// Most connections one user may have, every face together; past it the
    /// login is refused in the protocol's words (AMQP: 530) [default: no
    /// limit] (config key: max-connections-per-user).
    #[arg(long, value_name = "N", env = "FERRY_MAX_CONNECTIONS_PER_USER", value_parser = toml_usize())]
    max_connections_per_user: Option<usize>,

    /// Most queues per namespace; declares past it are refused (AMQP 406,
    /// SQS OverLimit) [default: 100000] (config key: max-queues).
    #[arg(long, value_name = "N", env = "FERRY_MAX_QUEUES", value_parser = toml_usize())]
    max_queues: Option<usize>,

    /// Most messages any one queue may hold, in every state, whatever its
    /// own settings; past it, sends to it are refused (AMQP nack or 406,
    /// SQS OverLimit) [default: no cap; the memory budget and the disk
    /// alarm bound what queues cost] (config key: max-queue-length).
    #[arg(long, value_name = "N", env = "FERRY_MAX_QUEUE_LENGTH", value_parser = toml_u64())]
    max_queue_length: Option<u64>,

    /// Largest AMQP frame offered in connection.tune, from 4096 to 4194304
    /// [default: 131072] (config key: amqp-frame-max).
    #[arg(long, value_name = "BYTES", env = "FERRY_AMQP_FRAME_MAX")]
    amqp_frame_max: Option<u32>,

    /// Most channels per AMQP connection offered in connection.tune, 1 to
    /// 65535 [default: 2047] (config key: amqp-channel-max).
    #[arg(long, value_name = "N", env = "FERRY_AMQP_CHANNEL_MAX")]
    amqp_channel_max: Option<u16>,

    /// Largest AMQP message body accepted; larger ones are refused with 406
    /// PRECONDITION_FAILED [default: 16777216, up to 536870912] (config
    /// key: amqp-max-message-size).
    #[arg(long, value_name = "BYTES", env = "FERRY_AMQP_MAX_MESSAGE_SIZE", value_parser = toml_u64())]
    amqp_max_message_size: Option<u64>,

    /// Create a topic when a Kafka client asks for one that does not exist
    /// (Kafka's auto.create.topics.enable): true or false [default: true]
    /// (config key: kafka-auto-create-topics).
    #[arg(
        long,
        value_name = "true|false",
        env = "FERRY_KAFKA_AUTO_CREATE_TOPICS"
    )]
    kafka_auto_create_topics: Option<bool>,

    /// Partitions of a Kafka topic created without a count (Kafka's
    /// num.partitions) [default: 1] (config key: kafka-num-partitions).
    #[arg(long, value_name = "N", env = "FERRY_KAFKA_NUM_PARTITIONS")]
    kafka_num_partitions: Option<u32>,

    /// The host Kafka clients are told to connect to (Kafka's advertised
    /// listeners) [default: the listener's address] (config key:
    /// kafka-advertised-host).
    #[arg(long, value_name = "HOST", env = "FERRY_KAFKA_ADVERTISED_HOST")]
    kafka_advertised_host: Option<String>,

    /// The user a Kafka client that does not authenticate acts as, with
    /// its permissions and loopback rule; "" refuses such clients
    /// [default: guest] (config key: kafka-anonymous-user).
    #[arg(long, value_name = "USER", env = "FERRY_KAFKA_ANONYMOUS_USER")]
    kafka_anonymous_user: Option<String>,

    /// How long the first rebalance of an empty consumer group waits for
    /// more members, in ms (Kafka's group.initial.rebalance.delay.ms)
    /// [default: 3000] (config key: kafka-group-initial-rebalance-delay-ms).
    #[arg(
        long,
        value_name = "MS",
        env = "FERRY_KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"
    )]
    kafka_group_initial_rebalance_delay_ms: Option<i64>,

    /// The shortest session timeout a consumer group member may ask for,
    /// in ms (Kafka's group.min.session.timeout.ms) [default: 6000]
    /// (config key: kafka-group-min-session-timeout-ms).
    #[arg(
        long,
        value_name = "MS",
        env = "FERRY_KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"
    )]
    kafka_group_min_session_timeout_ms: Option<i32>,

    /// How often streams' retention (retention.ms, retention.bytes) deletes
    /// old segments, in ms [default: 300000] (config key:
    /// retention-check-interval-ms).
    #[arg(long, value_name = "MS", env = "FERRY_RETENTION_CHECK_INTERVAL_MS", value_parser = toml_u64())]
    retention_check_interval_ms: Option<u64>,

    /// Per-queue series at /metrics: true or false (false keeps only
    /// totals, for brokers with very many queues) [default: true]
    /// (config key: metrics-per-queue).
    #[arg(long, value_name = "true|false", env = "FERRY_METRICS_PER_QUEUE")]
    metrics_per_queue: Option<bool>,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing
    /// filter such as `ferry_core=debug`); RUST_LOG is used when unset
    /// [default: info] (config key: log-level).
    #[arg(long, value_name = "LEVEL", env = "FERRY_LOG_LEVEL")]
    log_level: Option<String>,
}

/// `--NAME-listen` and `--NAME-tls-listen` for every face, made from its
/// spec the same way for each (with FERRY_NAME_LISTEN and
/// FERRY_NAME_TLS_LISTEN, and the TLS listener's own name as an alias:
/// `--amqps-listen`). What was given, as a layer of settings.
#[derive(Debug, Default)]
pub struct ListenArgs(Table);

/// The flag of a face's listener, and its key in the face's section.
fn listen_flags(face: &FaceSpec) -> [(String, &'static str, bool); 2] {
    [
        (format!("{}-listen", face.name), "listen", false),
        (format!("{}-tls-listen", face.name), "tls-listen", true),
    ]
}

fn listen_arg(face: &FaceSpec, flag: String, tls: bool) -> clap::Arg {
    let help = if tls {
        format!(
            "{} over TLS [default: 127.0.0.1:{} once --tls-cert is given, else off] (config key: {flag})",
            face.about, face.tls_port
        )
    } else {
        format!(
            "{} [default: 127.0.0.1:{}]; port 0 picks a free port, `off` disables it (config key: {flag})",
            face.about, face.port
        )
    };
    let env = format!("FERRY_{}", flag.to_uppercase().replace('-', "_"));
    let arg = clap::Arg::new(flag.clone())
        .long(flag)
        .value_name("HOST:PORT|off")
        .value_parser(clap::value_parser!(Listen))
        .env(env)
        .help(help);
    match face.tls_name {
        Some(name) if tls => arg.visible_alias(format!("{name}-listen")),
        _ => arg,
    }
}

impl clap::FromArgMatches for ListenArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ListenArgs::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        for face in faces::FACES {
            for (flag, key, _) in listen_flags(face) {
                if let Some(listen) = m.get_one::<Listen>(&flag) {
                    let section = self
                        .0
                        .entry(face.name)
                        .or_insert_with(|| toml::Value::Table(Table::new()));
                    if let Some(section) = section.as_table_mut() {
                        section.insert(key.to_owned(), toml::Value::String(listen.to_string()));
                    }
                }
            }
        }
        Ok(())
    }
}

impl clap::Args for ListenArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for face in faces::FACES {
            for (flag, _, tls) in listen_flags(face) {
                cmd = cmd.arg(listen_arg(face, flag, tls));
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl ServeArgs {
    /// The flags and the environment as a layer of settings.
    fn layer(&self) -> anyhow::Result<Table> {
        let mut table = config::normalize(Table::try_from(self).context("the flags as settings")?)
            .map_err(|e| anyhow::anyhow!(e))?;
        config::merge(&mut table, self.listeners.0.clone());
        if !self.encryption_queue_keys.is_empty() {
            let mut keys = Table::new();
            for a in &self.encryption_queue_keys {
                let (name, path) = a.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("--encryption-queue-key takes NAME=FILE, not '{a}'")
                })?;
                keys.insert(name.to_owned(), toml::Value::String(path.to_owned()));
            }
            let mut layer = Table::new();
            layer.insert("encryption-queue-keys".into(), toml::Value::Table(keys));
            config::merge(&mut table, layer);
        }
        Ok(table)
    }
}

/// Settings travel as TOML, whose integers are signed 64-bit: a larger
/// count is refused by the flag's parser, in clap's words, rather than
/// later as an opaque conversion error.
const TOML_INT_MAX: u64 = i64::MAX as u64;

fn toml_u64() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(..=TOML_INT_MAX)
}

fn toml_usize() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(..=TOML_INT_MAX)
}

/// Defaults < config file < environment < flags.
fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let mut table = Table::new();
    if let Some(path) = &args.config {
        config::merge(&mut table, config::from_file(path)?);
    }
    config::merge(&mut table, args.layer()?);
    Ok(Settings::from_table(table)?)
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
    let settings = settings(&args)?;
    let log_level = settings.log_level.clone();
    let mut config = settings.resolve()?;
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
        for (name, addr) in server.listening() {
            writeln!(out, "listening {name} {addr}")?;
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

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// The flags as `ferry serve` reads them, without the environment: a
    /// FERRY_* variable of the shell running the tests must not change
    /// what they see.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let cmd = Cli::command().mut_args(|a| a.env(None::<&str>));
        let matches =
            cmd.try_get_matches_from(std::iter::once("ferry").chain(args.iter().copied()))?;
        Cli::from_arg_matches(&matches)
    }

    fn resolve(args: &[&str]) -> anyhow::Result<ServerConfig> {
        Ok(settings(&parse(args)?.serve)?.resolve()?)
    }

    #[test]
    fn every_face_gets_its_listener_flags() {
        let c = resolve(&[
            "--amqp-listen",
            "off",
            "--aws-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
            // The TLS listener's own name is an alias.
            "--amqps-listen",
            "127.0.0.1:7",
            "--admin-tls-listen",
            "off",
        ])
        .expect("resolve");
        let amqp = c.listeners.of(&ferry_amqp::SPEC);
        assert_eq!(amqp.plain, Listen::Off);
        assert_eq!(amqp.tls, "127.0.0.1:7".parse().expect("listen"));
        assert_eq!(
            c.listeners.of(&faces::AWS).plain,
            "127.0.0.1:0".parse().expect("listen")
        );
        assert_eq!(
            c.listeners.of(&faces::AWS).tls,
            Listen::loopback(faces::AWS.tls_port),
            "on with a certificate"
        );
        assert_eq!(c.listeners.of(&faces::ADMIN).tls, Listen::Off);
        assert!(resolve(&["--amqp-listen", "nowhere"]).is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ferry.toml");
        std::fs::write(
            &file,
            "data-dir = \"/from/file\"\nrepair = true\nmemory-budget = 4096\n\
             amqp-frame-max = 8192\n[aws]\nregion = \"eu-west-1\"\n",
        )
        .expect("write");
        let config = file.to_str().expect("path");
        let c = resolve(&["--config", config, "--amqp-frame-max", "16384"]).expect("resolve");
        assert_eq!(c.amqp.frame_max, 16384, "the flag wins");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert!(c.journal.repair, "a flag not given leaves the file's value");
        assert_eq!(c.memory_budget, 4096);
        assert_eq!(c.sqs.region, "eu-west-1");
        assert_eq!(
            c.amqp.channel_max,
            ferry_amqp::AmqpConfig::default().channel_max
        );
        let d = resolve(&[]).expect("defaults");
        assert_eq!(d.data_dir, PathBuf::from(config::DEFAULT_DATA_DIR));
        for face in faces::FACES {
            assert_eq!(
                d.listeners.of(face),
                config::FaceListen::defaults(face, false)
            );
        }
        assert!(!d.journal.repair);
        assert!(
            resolve(&["--aws-access-key-id", "AKID"]).is_err(),
            "a key needs its secret"
        );
        let keys = resolve(&["--encryption-queue-key", "orders"]);
        assert!(keys.is_err(), "NAME=FILE");
    }
}
