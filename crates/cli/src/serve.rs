//! `ferry serve`: flags, config file, logging, signals.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferry_server::{FileConfig, Listen, Server, ServerConfig, config};
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

    /// Log level or filter (error, warn, info, debug, trace, or a tracing
    /// filter such as `ferry_core=debug`); RUST_LOG is used when unset
    /// [default: info] (config key: log-level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

/// Flags over file over defaults.
fn merge(args: &ServeArgs, file: FileConfig) -> (ServerConfig, Option<String>) {
    let defaults = ServerConfig::default();
    let config = ServerConfig {
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
    let log_level = args.log_level.clone().or(file.log_level);
    (config, log_level)
}

fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("bad log level '{l}'"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    Ok(())
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let (config, log_level) = merge(&args, file);
    init_logging(log_level.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
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
    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down; a second signal stops at once");
    tokio::spawn(async {
        if shutdown_signal().await.is_ok() {
            eprintln!("ferry: second signal, exiting now");
            std::process::exit(1);
        }
    });
    server.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(admin: Option<&str>) -> ServeArgs {
        ServeArgs {
            data_dir: None,
            config: None,
            admin_listen: admin.map(|a| a.parse().expect("listen")),
            log_level: None,
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = FileConfig {
            data_dir: Some("/from/file".into()),
            log_level: Some("debug".into()),
            admin_listen: Some(Listen::Off),
        };
        let (c, level) = merge(&args(Some("127.0.0.1:0")), file);
        assert_eq!(c.admin_listen, "127.0.0.1:0".parse().expect("listen"));
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(level.as_deref(), Some("debug"));
        let (d, _) = merge(&args(None), FileConfig::default());
        assert_eq!(d, ServerConfig::default());
    }
}
