//! The `ferry` binary.

mod admin;
mod bench;
mod encryption;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Connection tasks on several threads allocate and free messages and
/// frames all the time; glibc's allocator serialises them on its arena
/// locks (a profile showed a tenth of the broker's time there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives memory mimalloc holds freed back to the OS now (it otherwise
/// does so lazily, on later allocations of the threads that freed it).
fn reclaim_memory() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

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
    Serve(Box<serve::ServeArgs>),
    /// Load a broker (ferry or another) and report throughput, latency and
    /// any lost or duplicated messages.
    Bench(bench::BenchArgs),
    /// The broker's state at a glance (through the admin API).
    Status(admin::Target),
    /// List, create, delete, purge or peek at queues (through the admin API).
    Queues {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::QueuesCommand,
    },
    /// Streams (Kafka topics): list, describe, create, delete (through the
    /// admin API).
    Streams {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::StreamsCommand,
    },
    /// Consumer groups: list, describe (with lag), delete, reset offsets
    /// (through the admin API).
    Groups {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::GroupsCommand,
    },
    /// Publish a message to a queue (through the admin API).
    Publish {
        #[command(flatten)]
        target: admin::Target,
        #[command(flatten)]
        message: admin::PublishArgs,
    },
    /// Take messages off a queue and print them (through the admin API).
    Consume {
        #[command(flatten)]
        target: admin::Target,
        #[command(flatten)]
        take: admin::ConsumeArgs,
    },
    /// Dead-letter queues: move their messages back (through the admin API).
    Dlq {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::DlqCommand,
    },
    /// Export or import the durable topology as JSON (through the admin API).
    Definitions {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::DefinitionsCommand,
    },
    /// List, add or delete users (through the admin API).
    Users {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// List, set or clear users' permissions (through the admin API).
    Permissions {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::PermissionsCommand,
    },
    /// Encryption at rest: make a master key, or rotate to a new one.
    Encryption {
        #[command(subcommand)]
        command: encryption::EncryptionCommand,
    },
    /// Print an argon2id hash of a password, for `password-hash` in the
    /// config file's [[users]] (the password is read from stdin if not given).
    HashPassword { password: Option<String> },
}

/// The password given, or else the first line of stdin (so it need not
/// appear in the shell's history or the process list).
fn password_or_stdin(password: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = password {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn hash_password(password: Option<String>) -> anyhow::Result<()> {
    let password = password_or_stdin(password)?;
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    println!("{}", ferry_auth::hash_password(&password)?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args, reclaim_memory),
        Command::Bench(args) => bench::run(args),
        Command::HashPassword { password } => hash_password(password),
        Command::Status(target) => admin::status(target),
        Command::Queues { target, command } => admin::queues(target, command),
        Command::Streams { target, command } => admin::streams(target, command),
        Command::Groups { target, command } => admin::groups(target, command),
        Command::Publish { target, message } => admin::publish(target, message),
        Command::Consume { target, take } => admin::consume(target, take),
        Command::Dlq { target, command } => admin::dlq(target, command),
        Command::Definitions { target, command } => admin::definitions(target, command),
        Command::Users { target, command } => admin::users(target, command),
        Command::Encryption { command } => encryption::run(command),
        Command::Permissions { target, command } => admin::permissions(target, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is used: check all.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
