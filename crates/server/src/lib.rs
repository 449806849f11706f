//! ferry's server: it opens the data directory and the broker, binds the
//! listeners, and shuts them down cleanly.
//!
//! Listeners start before recovery so that health checks answer while the
//! broker recovers; `/api/health/ready` turns 200 once it has.

// Input from the network must never panic the broker: an index or unwrap
// in this crate's code is proven or justified where it stands.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod admin;
mod alarms;
mod compaction;
pub mod config;
mod data_dir;
mod deadline;
pub mod disk;
mod error;
pub mod faces;
mod listeners;
pub mod memory;
pub mod metrics;
mod streams_view;
mod tls;
mod tls_listener;

pub use config::{Listen, ServerConfig, Settings};
pub use data_dir::DataDir;
pub use error::ServerError;
pub use tls::{ClientCerts, TlsSettings};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_core::Broker;
use ferry_core::clock::SystemClock;
use ferry_core::ids::RandomIds;
use ferry_storage::Journal;
use tokio::sync::watch;
use tokio::task::JoinSet;

use tls::Tls;

/// How often the streams' recovery points are written.
const RECOVERY_POINT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long shutdown waits for in-flight work before closing connections.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A running server.
pub struct Server {
    broker: Arc<Broker>,
    journal: Arc<Journal>,
    listening: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    timers: tokio::task::JoinHandle<()>,
    /// Reads evicted messages back for push consumers (off the async threads).
    reloads: tokio::task::JoinHandle<()>,
    compaction: tokio::task::JoinHandle<()>,
    memory: tokio::task::JoinHandle<()>,
    disk: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
    streams: Arc<ferry_core::stream::Streams>,
    groups: Arc<ferry_core::group::Groups>,
    retention: tokio::task::JoinHandle<()>,
    recovery_points: tokio::task::JoinHandle<()>,
    group_timers: tokio::task::JoinHandle<()>,
    tls: Option<Arc<Tls>>,
    _data_dir: DataDir,
}

impl Server {
    /// Opens the data directory, binds every listener that is not off,
    /// recovers the broker, and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let data_dir = DataDir::open(&config.data_dir)?;
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(Tls::load(settings.clone())?)),
            None => None,
        };
        if config
            .tls
            .as_ref()
            .is_some_and(|t| t.client_certs == tls::ClientCerts::Required)
            && config.listeners.any_plain()
        {
            tracing::warn!(
                "client certificates are required on the TLS listeners, but plain listeners are on: turn them off (admin-listen, aws-listen, amqp-listen = \"off\") to require certificates everywhere"
            );
        }
        // Every listener binds now (a taken port fails the start at once);
        // the admin API serves at once, the others after recovery.
        let mut bound = listeners::bind_all(&faces::FACES, &config.listeners, tls.as_ref()).await?;
        let listening = bound.iter().map(|b| (b.name.clone(), b.addr)).collect();
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let connections = Arc::new(ferry_face::Registry::new(config.limits));

        let admin_broker = Arc::new(std::sync::OnceLock::new());
        let admin_streams = Arc::new(std::sync::OnceLock::new());
        // A user's key id equal to the broker's own would be shadowed by it.
        if let Some(k) = config
            .users
            .users
            .iter()
            .flat_map(|u| &u.access_keys)
            .find(|k| config.sqs.credentials.0.contains_key(&k.id))
        {
            return Err(ServerError::Config {
                path: "config".into(),
                detail: format!("access key {} is both the broker's and a user's", k.id),
            });
        }
        // Users made through the admin API are kept beside the journal.
        let users = Arc::new(
            ferry_auth::Users::open(
                config.users.clone(),
                Some(data_dir.path().join("users.json")),
            )
            .map_err(|e| ServerError::Config {
                path: data_dir.path().join("users.json"),
                detail: e.to_string(),
            })?,
        );
        let rates = Arc::new(admin::rates::Rates::default());
        let exporter = Arc::new(metrics::Exporter::new(
            config.metrics_per_queue,
            config.memory_budget,
            config.memory_high_watermark,
        ));
        let app = deadline::bounded(admin::router(admin::AdminState {
            ready: Arc::clone(&ready),
            metrics: Arc::clone(&exporter),
            broker: Arc::clone(&admin_broker),
            users: Arc::clone(&users),
            logins: Arc::default(),
            started: std::time::Instant::now(),
            connections: Arc::clone(&connections),
            rates: Arc::clone(&rates),
            streams: Arc::clone(&admin_streams),
        }));
        for b in listeners::take(&mut bound, &faces::ADMIN) {
            listeners::http::serve(&mut tasks, b, app.clone(), stopped.clone())?;
        }

        let sqs_config = config.sqs.clone();
        let amqp_config = config.amqp.clone();
        let memory_budget = config.memory_budget;
        let journal_dir = data_dir.path().join("journal");
        tracing::info!(
            dir = %journal_dir.display(),
            fsync = ?config.journal.fsync,
            encrypted = config.journal.encryption.is_some(),
            queue_keys = config.journal.queue_keys.len(),
            "recovering"
        );
        let started = std::time::Instant::now();
        let log_fsync = config.journal.fsync;
        // Streams are sealed under the journal's master key (queue keys
        // name queues; a stream has none of its own yet).
        let log_key = config.journal.encryption.clone();
        let repair = config.journal.repair;
        let (broker, journal) = tokio::task::spawn_blocking(move || {
            let journal = Arc::new(Journal::open(&journal_dir, config.journal)?);
            let broker = Broker::open_with_budget(
                Arc::new(SystemClock::new()),
                Arc::new(RandomIds::new()),
                Arc::clone(&journal) as Arc<dyn ferry_core::store::Store>,
                memory_budget,
            )?;
            Ok::<_, ServerError>((broker, journal))
        })
        .await
        .map_err(|_| ServerError::RecoveryAborted)??;
        tracing::info!(elapsed = ?started.elapsed(), "recovered");
        // The streams engine, on its own segment logs beside the journal:
        // opening reads each partition's active segment only.
        let streams_dir = data_dir.path().join("streams");
        let started = std::time::Instant::now();
        let group_config = config.groups.clone();
        let (streams, groups) = tokio::task::spawn_blocking(move || {
            let logs = ferry_storage::log::SegmentLogs::open(&streams_dir, log_fsync, log_key)?;
            let streams =
                ferry_core::stream::Streams::open(Arc::new(SystemClock::new()), Arc::new(logs))?;
            // Consumer groups' committed offsets, in their own log beside
            // the streams' (read whole at start; compacted to what is live).
            let offsets = ferry_storage::offsets::OffsetsLog::open(
                &streams_dir.join("offsets"),
                log_fsync,
                repair,
            )?;
            let groups = ferry_core::group::Groups::open(
                Arc::new(SystemClock::new()),
                Arc::new(offsets),
                group_config,
            )?;
            Ok::<_, ServerError>((streams, groups))
        })
        .await
        .map_err(|_| ServerError::RecoveryAborted)??;
        tracing::info!(elapsed = ?started.elapsed(), streams = streams.all().len(), "streams opened");
        // Routers deliver into streams by name (RabbitMQ stream queues).
        broker.attach_streams(Arc::clone(&streams));
        let retention = {
            let streams = Arc::clone(&streams);
            let every = config.retention_check;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let s = Arc::clone(&streams);
                    // Deleting segments is file work: off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || s.enforce_retention()).await;
                }
            })
        };
        // Recovery points, so that a restart after a crash scans at most
        // what was appended in the last few seconds of each partition.
        let recovery_points = {
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RECOVERY_POINT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let s = Arc::clone(&streams);
                    let _ = tokio::task::spawn_blocking(move || s.checkpoint()).await;
                }
            })
        };
        // Group membership times out on this tick (sessions, rebalances).
        let group_timers = {
            let groups = Arc::clone(&groups);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    groups.tick();
                }
            })
        };
        broker.set_max_queues(config.max_queues);
        broker.set_max_queue_length(config.max_queue_length);
        let timers = tokio::spawn(Arc::clone(&broker).run_timers());
        let reloads = tokio::spawn(Arc::clone(&broker).run_reloads());
        let compaction = compaction::spawn(Arc::clone(&broker), Arc::clone(&journal));
        let alarms = Arc::new(alarms::Alarms::new(Arc::clone(&broker)));
        let memory = memory::spawn(
            Arc::clone(&broker),
            Arc::clone(&alarms),
            memory_budget,
            config.memory_high_watermark,
            config.reclaim,
        );
        let disk = disk::spawn(alarms, data_dir.path().to_owned(), config.disk_free_limit);

        // The faces. Each sets up what it needs in the broker (namespaces,
        // AMQP's vhosts and their exchanges, whether it listens or not: the
        // admin API declares queues and binds to them); all of it is
        // durable before the first client is served.
        let sqs = ferry_sqs::Sqs::new(Arc::clone(&broker), sqs_config, Arc::clone(&users))?;
        let amqp = ferry_amqp::Amqp::new(Arc::clone(&broker), amqp_config, Arc::clone(&users))?;
        broker
            .barrier()
            .wait()
            .await
            .map_err(ferry_core::CoreError::from)?;

        // Each face on its listeners.
        let sqs = deadline::bounded(ferry_sqs::router(sqs));
        for b in listeners::take(&mut bound, &faces::AWS) {
            listeners::http::serve(&mut tasks, b, sqs.clone(), stopped.clone())?;
        }
        for b in listeners::take(&mut bound, &ferry_amqp::SPEC) {
            listeners::stream::serve(
                &mut tasks,
                b,
                Arc::clone(&amqp),
                Arc::clone(&connections),
                stopped.clone(),
            );
        }
        // Kafka: one face per listener, each telling its clients its own
        // address (Kafka's advertised listeners).
        for b in listeners::take(&mut bound, &ferry_kafka::SPEC) {
            let mut kafka_config = config.kafka.clone();
            if kafka_config.advertised_host.is_empty() {
                kafka_config.advertised_host = if b.addr.ip().is_unspecified() {
                    tracing::warn!(listener = %b.name, "kafka listens on every address; set kafka-advertised-host to the name clients reach it by");
                    "127.0.0.1".into()
                } else {
                    b.addr.ip().to_string()
                };
            }
            kafka_config.advertised_port = b.addr.port();
            let kafka = ferry_kafka::Kafka::new(
                Arc::clone(&streams),
                Arc::clone(&groups),
                Arc::clone(&broker),
                Arc::clone(&users),
                kafka_config,
            );
            listeners::stream::serve(
                &mut tasks,
                b,
                kafka,
                Arc::clone(&connections),
                stopped.clone(),
            );
        }
        debug_assert!(
            bound.is_empty(),
            "a face in FACES that start() does not serve"
        );

        exporter.set_broker(Arc::clone(&broker));
        let engines = streams_view::StreamsAndGroups {
            streams: Arc::clone(&streams),
            groups: Arc::clone(&groups),
        };
        exporter.set_streams(engines.clone());
        let _ = admin_streams.set(engines);
        let upkeep = {
            let exporter = Arc::clone(&exporter);
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    exporter.upkeep();
                    rates.sample(&broker, &connections.list());
                }
            })
        };
        let _ = admin_broker.set(Arc::clone(&broker));
        ready.store(true, Ordering::Release);

        Ok(Server {
            broker,
            journal,
            streams,
            groups,
            retention,
            recovery_points,
            group_timers,
            listening,
            stop,
            tasks,
            timers,
            reloads,
            compaction,
            memory,
            disk,
            upkeep,
            tls,
            _data_dir: data_dir,
        })
    }

    /// Reads the TLS certificate and key again (SIGHUP): new connections
    /// get the new ones, open connections keep theirs. False if TLS is off.
    pub fn reload_tls(&self) -> Result<bool, ServerError> {
        match &self.tls {
            Some(t) => t.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The listeners that are up: (protocol, address), in start order.
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.listening
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    pub fn streams(&self) -> &Arc<ferry_core::stream::Streams> {
        &self.streams
    }

    pub fn groups(&self) -> &Arc<ferry_core::group::Groups> {
        &self.groups
    }

    /// Stops accepting, lets in-flight requests finish (for at most
    /// [`SHUTDOWN_GRACE`], so a stalled client cannot hold the broker up),
    /// stops the timers.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing them");
            self.tasks.shutdown().await;
        }
        self.timers.abort();
        self.reloads.abort();
        self.compaction.abort();
        self.memory.abort();
        self.disk.abort();
        self.upkeep.abort();
        self.retention.abort();
        self.recovery_points.abort();
        self.group_timers.abort();
        // The log writers write and sync what is pending (the streams'
        // then record recovery points, so the next start scans nothing);
        // the groups' offsets log does so once its last handle goes.
        let streams = self.streams;
        let groups = self.groups;
        let _ = tokio::task::spawn_blocking(move || {
            streams.close();
            drop((streams, groups))
        })
        .await;
        // Every stream append is settled now: the removals of dead letters
        // appended to streams go into the journal before it closes (else
        // they would be back in their source queues after the restart).
        self.broker.settle_stream_removals();
        // Flush: the journal writes and syncs what is pending.
        let journal = self.journal;
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
        tracing::info!("stopped");
    }
}
