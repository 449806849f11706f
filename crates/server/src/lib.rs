//! ferry's server: it opens the data directory and the broker, binds the
//! listeners, and shuts them down cleanly.
//!
//! Listeners start before recovery so that health checks answer while the
//! broker recovers; `/api/health/ready` turns 200 once it has.

pub mod admin;
mod amqp;
mod compaction;
pub mod config;
mod data_dir;
mod error;
pub mod memory;
pub mod metrics;

pub use config::{FileConfig, Listen, ServerConfig};
pub use error::ServerError;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_core::Broker;
use ferry_core::clock::SystemClock;
use ferry_core::ids::RandomIds;
use ferry_storage::Journal;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use data_dir::DataDir;

/// How long shutdown waits for in-flight work before closing connections.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A running server.
pub struct Server {
    broker: Arc<Broker>,
    journal: Arc<Journal>,
    listening: Vec<(&'static str, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    timers: tokio::task::JoinHandle<()>,
    compaction: tokio::task::JoinHandle<()>,
    memory: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
    _data_dir: DataDir,
}

impl Server {
    /// Opens the data directory, binds every listener that is not off,
    /// recovers the broker, and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let data_dir = DataDir::open(&config.data_dir)?;
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut listening = Vec::new();

        let admin_broker = Arc::new(std::sync::OnceLock::new());
        let admin_amqp = Arc::new(std::sync::OnceLock::new());
        let rates = Arc::new(admin::rates::Rates::default());
        let exporter = Arc::new(metrics::Exporter::new(
            config.metrics_per_queue,
            config.memory_budget,
            config.memory_high_watermark,
        ));
        if let Listen::At(addr) = config.admin_listen {
            let listener = bind("admin", addr).await?;
            listening.push(("admin", local_addr("admin", &listener, addr)?));
            let app = admin::router(admin::AdminState {
                ready: Arc::clone(&ready),
                metrics: Arc::clone(&exporter),
                broker: Arc::clone(&admin_broker),
                users: Arc::new(config.users.clone()),
                started: std::time::Instant::now(),
                amqp: Arc::clone(&admin_amqp),
                rates: Arc::clone(&rates),
            });
            serve_http(&mut tasks, "admin", listener, app, stopped.clone());
        }

        // The AWS listener binds now (a taken port fails the start at
        // once) but serves only after recovery.
        let aws_listener = match config.aws_listen {
            Listen::At(addr) => {
                let l = bind("aws", addr).await?;
                listening.push(("aws", local_addr("aws", &l, addr)?));
                Some(l)
            }
            Listen::Off => None,
        };
        let amqp_listener = match config.amqp_listen {
            Listen::At(addr) => {
                let l = bind("amqp", addr).await?;
                listening.push(("amqp", local_addr("amqp", &l, addr)?));
                Some(l)
            }
            Listen::Off => None,
        };
        let sqs_config = config.sqs.clone();
        let amqp_config = config.amqp.clone();
        let users = config.users.clone();
        let memory_budget = config.memory_budget;
        let journal_dir = data_dir.path().join("journal");
        tracing::info!(dir = %journal_dir.display(), fsync = ?config.journal.fsync, "recovering");
        let started = std::time::Instant::now();
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
        let timers = tokio::spawn(Arc::clone(&broker).run_timers());
        let compaction = compaction::spawn(Arc::clone(&broker), Arc::clone(&journal));
        let memory = memory::spawn(
            Arc::clone(&broker),
            memory_budget,
            config.memory_high_watermark,
        );
        if let Some(listener) = aws_listener {
            let app = ferry_sqs::router(ferry_sqs::Sqs::new(Arc::clone(&broker), sqs_config));
            serve_http(&mut tasks, "aws", listener, app, stopped.clone());
        }
        if let Some(listener) = amqp_listener {
            let protocol = ferry_amqp::Amqp::new(Arc::clone(&broker), amqp_config, users)?;
            let _ = admin_amqp.set(Arc::clone(&protocol));
            amqp::serve(&mut tasks, listener, protocol, stopped.clone());
        }
        // The default namespace and the configured vhosts exist whichever
        // listeners are on (the admin API declares queues in them).
        broker.create_namespace(ferry_amqp::DEFAULT_VHOST);
        for v in &config.amqp.vhosts {
            broker.create_namespace(v);
        }
        exporter.set_broker(Arc::clone(&broker));
        let upkeep = {
            let exporter = Arc::clone(&exporter);
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    exporter.upkeep();
                    rates.sample(&broker);
                }
            })
        };
        let _ = admin_broker.set(Arc::clone(&broker));
        ready.store(true, Ordering::Release);

        Ok(Server {
            broker,
            journal,
            listening,
            stop,
            tasks,
            timers,
            compaction,
            memory,
            upkeep,
            _data_dir: data_dir,
        })
    }

    /// The listeners that are up: (protocol, address), in start order.
    pub fn listening(&self) -> &[(&'static str, SocketAddr)] {
        &self.listening
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
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
        self.compaction.abort();
        self.memory.abort();
        self.upkeep.abort();
        // Flush: the journal writes and syncs what is pending.
        let journal = self.journal;
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
        tracing::info!("stopped");
    }
}

/// Serves `app` on `listener` until `stopped` turns true, then lets
/// in-flight requests finish (graceful shutdown).
fn serve_http(
    tasks: &mut JoinSet<()>,
    protocol: &'static str,
    listener: TcpListener,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        // The peer address reaches handlers (loopback-only users).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, protocol, "listener failed");
        }
    });
}

async fn bind(protocol: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            protocol,
            addr,
            source,
        })
}

fn local_addr(
    protocol: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServerError> {
    l.local_addr().map_err(|source| ServerError::Bind {
        protocol,
        addr,
        source,
    })
}
