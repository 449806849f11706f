//! `ferry bench <protocol>`: load any broker of that protocol and report.

use anyhow::Context;
use clap::{Args, Subcommand};
use ferry_bench::{Options, Protocol};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    protocol: BenchProtocol,
}

#[derive(Subcommand, Debug)]
enum BenchProtocol {
    /// Any AMQP 0-9-1 broker [default url: amqp://guest:guest@127.0.0.1:5672/%2f].
    Amqp(Options),
    /// Any SQS endpoint, over the AWS JSON protocol [default url: http://127.0.0.1:9324].
    Sqs(Options),
    /// Any Kafka-protocol broker [default url: 127.0.0.1:9092].
    Kafka(Options),
    /// A null AMQP broker that drops every publish (and confirms it):
    /// what the generator alone can do. Runs until killed.
    Sink {
        /// Where to listen; port 0 picks a free port (printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// Runs the scenario; fails (exit code 1) if messages were lost or
/// duplicated, so scripts can trust a zero exit.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (protocol, options) = match args.protocol {
        BenchProtocol::Amqp(o) => (Protocol::Amqp, o),
        BenchProtocol::Sqs(o) => (Protocol::Sqs, o),
        BenchProtocol::Kafka(o) => (Protocol::Kafka, o),
        BenchProtocol::Sink { listen } => return sink(listen),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(ferry_bench::run(protocol, options))?;
    println!("{}", report.table());
    if !report.passed {
        anyhow::bail!(
            "the run failed: {} lost, {} duplicated, {} errors",
            report.lost,
            report.duplicated,
            report.errors
        );
    }
    Ok(())
}

fn sink(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (addr, task) = ferry_bench::sink::serve(listen).await?;
        println!("listening amqp-sink {addr}");
        use std::io::Write;
        std::io::stdout().flush()?;
        task.await.context("the sink stopped")?;
        Ok(())
    })
}
