//! `ferry queues list|create|delete|purge|peek`.

use clap::Subcommand;
use comfy_table::Table;
use serde_json::Value;

use super::messages::print_messages;
use super::{Target, call, cell, queue_path};

#[derive(Subcommand, Debug)]
pub enum QueuesCommand {
    /// Every queue with its depth, consumers and rates.
    List,
    /// Declare a queue (durable unless --transient).
    Create {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
        #[arg(long)]
        transient: bool,
        #[arg(long)]
        fifo: bool,
    },
    /// Delete a queue and its messages.
    Delete {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
    /// Remove a queue's ready messages.
    Purge {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
    /// Show the next ready messages without taking them.
    Peek {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
        /// How many (at most 100).
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
}

pub fn queues(target: Target, command: QueuesCommand) -> anyhow::Result<()> {
    let v = match &command {
        QueuesCommand::List => call(&target, "GET", "/api/queues", None)?,
        QueuesCommand::Create {
            name,
            namespace,
            transient,
            fifo,
        } => {
            let body = serde_json::json!({ "durable": !transient, "fifo": fifo }).to_string();
            call(&target, "PUT", &queue_path(namespace, name, ""), Some(body))?
        }
        QueuesCommand::Delete { name, namespace } => {
            call(&target, "DELETE", &queue_path(namespace, name, ""), None)?
        }
        QueuesCommand::Purge { name, namespace } => call(
            &target,
            "DELETE",
            &queue_path(namespace, name, "/contents"),
            None,
        )?,
        QueuesCommand::Peek {
            name,
            namespace,
            count,
        } => call(
            &target,
            "GET",
            &queue_path(namespace, name, &format!("/messages?limit={count}")),
            None,
        )?,
    };
    if target.printed_json(&v)? {
        return Ok(());
    }
    match command {
        QueuesCommand::List => print_list(&v),
        QueuesCommand::Create { name, .. } => println!("queue '{name}' declared"),
        QueuesCommand::Delete { name, .. } => {
            println!("queue '{name}' deleted ({} messages)", v["messages"])
        }
        QueuesCommand::Purge { name, .. } => {
            println!("queue '{name}' purged ({} messages)", v["purged"])
        }
        QueuesCommand::Peek { .. } => print_messages(&v),
    }
    Ok(())
}

fn print_list(v: &Value) {
    let mut t = Table::new();
    t.set_header(vec![
        "namespace",
        "queue",
        "ready",
        "unacked",
        "delayed",
        "consumers",
        "in/s",
        "out/s",
        "durable",
    ]);
    for q in v.as_array().into_iter().flatten() {
        let m = &q["messages"];
        let rate = |k: &str| format!("{:.1}", q["rates"][k].as_f64().unwrap_or(0.0));
        t.add_row(vec![
            cell(&q["namespace"]),
            cell(&q["name"]),
            cell(&m["ready"]),
            cell(&m["unacked"]),
            cell(&m["delayed"]),
            cell(&q["consumers"]),
            rate("published"),
            rate("delivered"),
            cell(&q["durable"]),
        ]);
    }
    println!("{t}");
}
