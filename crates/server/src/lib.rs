//! ferry's server: it opens the data directory and the broker, binds the
//! listeners, and shuts them down cleanly.
//!
//! Listeners start before recovery so that health checks answer while the
//! broker recovers; `/api/health/ready` turns 200 once it has.

pub mod admin;
mod alarms;
mod amqp;
mod compaction;
pub mod config;
mod data_dir;
mod deadline;
pub mod disk;
mod error;
pub mod memory;
pub mod metrics;
mod tls;
mod tls_listener;

pub use config::{FileConfig, Listen, ServerConfig};
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use tls::Tls;
use tls_listener::TlsListener;

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
    disk: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
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
        // A TLS listener with no certificate is a mistake to report, not to skip.
        let tls_for = |protocol: &'static str, listen: Listen| match (listen, &tls) {
            (Listen::Off, _) => Ok(None),
            (Listen::At(addr), Some(t)) => Ok(Some((addr, Arc::clone(t)))),
            (Listen::At(_), None) => Err(ServerError::Tls(format!(
                "the {protocol} listener needs a certificate and key (tls-cert, tls-key)"
            ))),
        };
        if config
            .tls
            .as_ref()
            .is_some_and(|t| t.client_certs == tls::ClientCerts::Required)
            && [config.admin_listen, config.aws_listen, config.amqp_listen]
                .iter()
                .any(|l| *l != Listen::Off)
        {
            tracing::warn!(
                "client certificates are required on the TLS listeners, but plain listeners are on: turn them off (admin-listen, aws-listen, amqp-listen = \"off\") to require certificates everywhere"
            );
        }
        let admin_tls = tls_for("admin-tls", config.admin_tls_listen)?;
        let aws_tls = tls_for("aws-tls", config.aws_tls_listen)?;
        let amqps = tls_for("amqps", config.amqps_listen)?;
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut listening = Vec::new();

        let admin_broker = Arc::new(std::sync::OnceLock::new());
        let admin_amqp = Arc::new(std::sync::OnceLock::new());
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
            amqp: Arc::clone(&admin_amqp),
            rates: Arc::clone(&rates),
        }));
        if let Listen::At(addr) = config.admin_listen {
            let listener = bind("admin", addr).await?;
            listening.push(("admin", local_addr("admin", &listener, addr)?));
            serve_http(&mut tasks, "admin", listener, app.clone(), stopped.clone());
        }
        if let Some((addr, tls)) = admin_tls {
            let listener = bind("admin-tls", addr).await?;
            listening.push(("admin-tls", local_addr("admin-tls", &listener, addr)?));
            let listener = tls_listener(listener, tls, addr)?;
            serve_http(&mut tasks, "admin-tls", listener, app, stopped.clone());
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
        let aws_tls_listener = match aws_tls {
            Some((addr, tls)) => {
                let l = bind("aws-tls", addr).await?;
                listening.push(("aws-tls", local_addr("aws-tls", &l, addr)?));
                Some((l, tls, addr))
            }
            None => None,
        };
        let amqp_listener = match config.amqp_listen {
            Listen::At(addr) => {
                let l = bind("amqp", addr).await?;
                listening.push(("amqp", local_addr("amqp", &l, addr)?));
                Some(l)
            }
            Listen::Off => None,
        };
        let amqps_listener = match amqps {
            Some((addr, tls)) => {
                let l = bind("amqps", addr).await?;
                listening.push(("amqps", local_addr("amqps", &l, addr)?));
                Some((l, tls))
            }
            None => None,
        };
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
        broker.set_max_queues(config.max_queues);
        broker.set_max_queue_length(config.max_queue_length);
        let timers = tokio::spawn(Arc::clone(&broker).run_timers());
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
        let sqs = deadline::bounded(ferry_sqs::router(ferry_sqs::Sqs::new(
            Arc::clone(&broker),
            sqs_config,
            Arc::clone(&users),
        )));
        if let Some(listener) = aws_listener {
            serve_http(&mut tasks, "aws", listener, sqs.clone(), stopped.clone());
        }
        if let Some((listener, tls, addr)) = aws_tls_listener {
            let listener = tls_listener(listener, tls, addr)?;
            serve_http(&mut tasks, "aws-tls", listener, sqs, stopped.clone());
        }
        if amqp_listener.is_some() || amqps_listener.is_some() {
            let protocol = ferry_amqp::Amqp::new(Arc::clone(&broker), amqp_config, users)?;
            let _ = admin_amqp.set(Arc::clone(&protocol));
            if let Some(listener) = amqp_listener {
                amqp::serve(
                    &mut tasks,
                    listener,
                    Arc::clone(&protocol),
                    None,
                    stopped.clone(),
                );
            }
            if let Some((listener, tls)) = amqps_listener {
                amqp::serve(&mut tasks, listener, protocol, Some(tls), stopped.clone());
            }
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
            let amqp = Arc::clone(&admin_amqp);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    exporter.upkeep();
                    let connections = amqp
                        .get()
                        .map(|a| a.connections().list())
                        .unwrap_or_default();
                    rates.sample(&broker, &connections);
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
        self.disk.abort();
        self.upkeep.abort();
        // Flush: the journal writes and syncs what is pending.
        let journal = self.journal;
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
        tracing::info!("stopped");
    }
}

/// Serves `app` on `listener` until `stopped` turns true, then lets
/// in-flight requests finish (graceful shutdown).
fn serve_http<L>(
    tasks: &mut JoinSet<()>,
    protocol: &'static str,
    listener: L,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
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

/// A TLS listener whose connections are tapped to turn Nagle off, as on
/// the plain listeners; tapping also gives handlers the client's address
/// (axum provides ConnectInfo for tapped listeners of any kind).
type TappedTls = axum::serve::TapIo<TlsListener, fn(&mut TlsStream<TcpStream>)>;

fn no_delay(tls: &mut TlsStream<TcpStream>) {
    let _ = tls.get_ref().0.set_nodelay(true);
}

fn tls_listener(
    listener: TcpListener,
    tls: Arc<Tls>,
    addr: SocketAddr,
) -> Result<TappedTls, ServerError> {
    use axum::serve::ListenerExt;
    let listener = TlsListener::new(listener, tls).map_err(|source| ServerError::Bind {
        protocol: "tls",
        addr,
        source,
    })?;
    Ok(listener.tap_io(no_delay as fn(&mut TlsStream<TcpStream>)))
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
