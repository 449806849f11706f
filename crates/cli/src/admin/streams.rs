//! `ferry streams list|describe|create|delete` and
//! `ferry groups list|describe|delete|reset-offsets`.

use anyhow::Context;
use clap::Subcommand;
use comfy_table::Table;
use serde_json::{Value, json};

use super::{Target, call, cell, encode};

#[derive(Subcommand, Debug)]
pub enum StreamsCommand {
    /// Every stream (Kafka topic) with its partitions, records and size.
    List,
    /// One stream's partitions, config and the groups reading it.
    Describe {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
    /// Create a stream.
    Create {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A topic config key, KEY=VALUE (retention.ms, retention.bytes,
        /// segment.bytes, max.message.bytes, ...); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Delete a stream, its records and the groups' offsets on it.
    Delete {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// Every consumer group with its state, members and lag.
    List,
    /// One group's members and, per partition, commit and lag.
    Describe {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
    /// Delete a group that has no members, with its offsets.
    Delete {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
    /// Move a group's committed offsets on a stream (the group must have
    /// no members).
    ResetOffsets {
        name: String,
        #[arg(long, default_value = "/")]
        namespace: String,
        /// The stream whose offsets move.
        #[arg(long)]
        stream: String,
        /// earliest, latest, or an offset.
        #[arg(long)]
        to: String,
        /// Only this partition (repeatable; all if none).
        #[arg(long = "partition")]
        partitions: Vec<u32>,
        /// Show the offsets the reset would commit, and commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn path(kind: &str, namespace: &str, name: &str, tail: &str) -> String {
    format!("/api/{kind}/{}/{}{tail}", encode(namespace), encode(name))
}

pub fn streams(target: Target, command: StreamsCommand) -> anyhow::Result<()> {
    let v = match &command {
        StreamsCommand::List => call(&target, "GET", "/api/streams", None)?,
        StreamsCommand::Describe { name, namespace } => {
            call(&target, "GET", &path("streams", namespace, name, ""), None)?
        }
        StreamsCommand::Create {
            name,
            namespace,
            partitions,
            config,
        } => {
            let mut keys = serde_json::Map::new();
            for kv in config {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--config {kv}: not KEY=VALUE"))?;
                keys.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let body = json!({ "partitions": partitions, "config": keys }).to_string();
            call(
                &target,
                "PUT",
                &path("streams", namespace, name, ""),
                Some(body),
            )?
        }
        StreamsCommand::Delete { name, namespace } => call(
            &target,
            "DELETE",
            &path("streams", namespace, name, ""),
            None,
        )?,
    };
    if target.printed_json(&v)? {
        return Ok(());
    }
    match command {
        StreamsCommand::List => {
            let mut t = Table::new();
            t.set_header(vec![
                "namespace",
                "stream",
                "partitions",
                "records",
                "bytes",
            ]);
            for s in v.as_array().into_iter().flatten() {
                t.add_row(vec![
                    cell(&s["namespace"]),
                    cell(&s["name"]),
                    s["partitions"].as_array().map_or(0, Vec::len).to_string(),
                    cell(&s["records"]),
                    cell(&s["bytes"]),
                ]);
            }
            println!("{t}");
        }
        StreamsCommand::Describe { .. } => {
            let mut t = Table::new();
            t.set_header(vec!["partition", "log start", "high watermark", "bytes"]);
            for p in v["partitions"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    cell(&p["partition"]),
                    cell(&p["log_start_offset"]),
                    cell(&p["high_watermark"]),
                    cell(&p["bytes"]),
                ]);
            }
            println!("{t}");
            for (k, val) in v["config"].as_object().into_iter().flatten() {
                println!("{k} = {}", cell(val));
            }
            for g in v["groups"].as_array().into_iter().flatten() {
                let lag: u64 = g["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["lag"].as_u64())
                    .sum();
                println!("group {}: lag {lag}", cell(&g["group"]));
            }
        }
        StreamsCommand::Create { name, .. } => println!("stream '{name}' created"),
        StreamsCommand::Delete { name, .. } => println!("stream '{name}' deleted"),
    }
    Ok(())
}

pub fn groups(target: Target, command: GroupsCommand) -> anyhow::Result<()> {
    let v = match &command {
        GroupsCommand::List => call(&target, "GET", "/api/groups", None)?,
        GroupsCommand::Describe { name, namespace } => {
            call(&target, "GET", &path("groups", namespace, name, ""), None)?
        }
        GroupsCommand::Delete { name, namespace } => call(
            &target,
            "DELETE",
            &path("groups", namespace, name, ""),
            None,
        )?,
        GroupsCommand::ResetOffsets {
            name,
            namespace,
            stream,
            to,
            partitions,
            dry_run,
        } => {
            let to = match to.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => json!(to),
            };
            let mut body = json!({ "stream": stream, "to": to, "dry_run": dry_run });
            if !partitions.is_empty() {
                body["partitions"] = json!(partitions);
            }
            call(
                &target,
                "POST",
                &path("groups", namespace, name, "/reset-offsets"),
                Some(body.to_string()),
            )?
        }
    };
    if target.printed_json(&v)? {
        return Ok(());
    }
    match command {
        GroupsCommand::List => {
            let mut t = Table::new();
            t.set_header(vec!["namespace", "group", "state", "members", "lag"]);
            for g in v.as_array().into_iter().flatten() {
                t.add_row(vec![
                    cell(&g["namespace"]),
                    cell(&g["group"]),
                    cell(&g["state"]),
                    cell(&g["members"]),
                    cell(&g["lag"]),
                ]);
            }
            println!("{t}");
        }
        GroupsCommand::Describe { .. } => {
            println!(
                "state {}, protocol {}, generation {}",
                cell(&v["state"]),
                cell(&v["protocol"]),
                cell(&v["generation"])
            );
            let mut t = Table::new();
            t.set_header(vec![
                "stream",
                "partition",
                "committed",
                "high watermark",
                "lag",
            ]);
            for o in v["offsets"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    cell(&o["topic"]),
                    cell(&o["partition"]),
                    cell(&o["committed"]),
                    cell(&o["high_watermark"]),
                    cell(&o["lag"]),
                ]);
            }
            println!("{t}");
            for m in v["members"].as_array().into_iter().flatten() {
                println!(
                    "member {} ({} from {})",
                    cell(&m["member_id"]),
                    cell(&m["client_id"]),
                    cell(&m["client_host"])
                );
            }
        }
        GroupsCommand::Delete { name, .. } => println!("group '{name}' deleted"),
        GroupsCommand::ResetOffsets { name, dry_run, .. } => {
            let would = if dry_run {
                " (dry run: not committed)"
            } else {
                ""
            };
            for o in v["offsets"].as_array().into_iter().flatten() {
                println!(
                    "group '{name}' partition {} -> {}{would}",
                    cell(&o["partition"]),
                    cell(&o["offset"])
                );
            }
        }
    }
    Ok(())
}
