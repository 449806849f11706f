//! `ferry publish`, `ferry consume` and `ferry dlq redrive`.

use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::{Map, Value, json};

use super::{Target, call, cell, queue_path};

/// `ferry publish QUEUE BODY`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The queue it goes to.
    queue: String,
    /// The message body (read from stdin if not given).
    body: Option<String>,
    #[arg(long, default_value = "/")]
    namespace: String,
    /// A header, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Not written to disk (lost on a restart).
    #[arg(long)]
    transient: bool,
}

/// `ferry consume QUEUE`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    queue: String,
    #[arg(long, default_value = "/")]
    namespace: String,
    /// How many at most (at most 100 per call).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Put them back after showing them (they count as delivered once).
    #[arg(long)]
    requeue: bool,
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Move a dead-letter queue's messages back to where each came from,
    /// or to --to; waits until the move is done unless --no-wait.
    Redrive {
        /// The dead-letter queue.
        queue: String,
        #[arg(long, default_value = "/")]
        namespace: String,
        /// Another queue to move them to.
        #[arg(long)]
        to: Option<String>,
        /// Messages per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<u32>,
        #[arg(long)]
        no_wait: bool,
    },
}

pub fn publish(target: Target, p: PublishArgs) -> anyhow::Result<()> {
    let body = match p.body {
        Some(b) => b,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    let mut headers = Map::new();
    for h in &p.headers {
        let (k, v) = h
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--header '{h}': expected name=value"))?;
        headers.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let req = json!({ "body": body, "headers": headers, "persistent": !p.transient });
    let v = call(
        &target,
        "POST",
        &queue_path(&p.namespace, &p.queue, "/messages"),
        Some(req.to_string()),
    )?;
    if !target.printed_json(&v)? {
        println!("published to '{}' (id {})", p.queue, cell(&v["id"]));
    }
    Ok(())
}

pub fn consume(target: Target, t: ConsumeArgs) -> anyhow::Result<()> {
    let req = json!({ "count": t.count, "requeue": t.requeue });
    let v = call(
        &target,
        "POST",
        &queue_path(&t.namespace, &t.queue, "/get"),
        Some(req.to_string()),
    )?;
    if !target.printed_json(&v)? {
        print_messages(&v);
    }
    Ok(())
}

pub fn dlq(target: Target, command: DlqCommand) -> anyhow::Result<()> {
    let DlqCommand::Redrive {
        queue,
        namespace,
        to,
        rate,
        no_wait,
    } = command;
    let req = json!({ "destination": to, "rate": rate });
    let path = queue_path(&namespace, &queue, "/redrive");
    let mut task = call(&target, "POST", &path, Some(req.to_string()))?;
    // Bounded: a rate-limited move of many messages is left running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !no_wait && task["status"] == "running" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let tasks = call(&target, "GET", &path, None)?;
        if let Some(t) = tasks
            .as_array()
            .and_then(|l| l.iter().find(|t| t["id"] == task["id"]))
        {
            task = t.clone();
        }
    }
    if !target.printed_json(&task)? {
        println!(
            "redrive {} of '{queue}': {} ({} of {} moved)",
            cell(&task["id"]),
            cell(&task["status"]),
            cell(&task["moved"]),
            cell(&task["to_move"])
        );
    }
    // Scripts tell a failed (or, when waited for, unfinished) move by the exit code.
    let status = cell(&task["status"]);
    if status.starts_with("failed") || (!no_wait && status == "running") {
        anyhow::bail!("the redrive did not complete: {status}");
    }
    Ok(())
}

/// Messages (peeked or taken) as a table.
pub(super) fn print_messages(v: &Value) {
    let mut t = Table::new();
    t.set_header(vec!["#", "body", "headers", "deliveries", "size"]);
    for (i, m) in v.as_array().into_iter().flatten().enumerate() {
        let body = match m["body_encoding"].as_str() {
            Some("base64") => format!("(base64) {}", cell(&m["body"])),
            _ => cell(&m["body"]),
        };
        let headers = m["headers"]
            .as_object()
            .filter(|h| !h.is_empty())
            .map(|h| Value::Object(h.clone()).to_string())
            .unwrap_or_default();
        t.add_row(vec![
            (i + 1).to_string(),
            body,
            headers,
            cell(&m["delivery_count"]),
            cell(&m["size"]),
        ]);
    }
    println!("{t}");
}
