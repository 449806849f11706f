//! The `ferry` binary.

mod bench;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Connection tasks on several threads allocate and free messages and
/// frames all the time; glibc's allocator serialises them on its arena
/// locks (a profile showed a tenth of the broker's time there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ferry: one durable message broker that speaks the protocols of SQS,
/// RabbitMQ, Kafka, MQTT and Redis.
#[derive(Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the broker.
    Serve(serve::ServeArgs),
    /// Load a broker (ferry or another) and report throughput, latency and
    /// any lost or duplicated messages.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}
