//! `ferry definitions export|import`: the broker's durable topology as one
//! JSON file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::{Target, call, cell};

#[derive(Subcommand, Debug)]
pub enum DefinitionsCommand {
    /// Write the definitions to a file (or stdout with `-`).
    Export {
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Declare what a definitions file (or stdin with `-`) has and this
    /// broker lacks.
    Import { file: PathBuf },
}

pub fn definitions(target: Target, command: DefinitionsCommand) -> anyhow::Result<()> {
    match command {
        DefinitionsCommand::Export { file } => {
            let v = call(&target, "GET", "/api/definitions", None)?;
            let text = serde_json::to_string_pretty(&v)?;
            if file.as_os_str() == "-" {
                println!("{text}");
            } else {
                std::fs::write(&file, text + "\n")
                    .with_context(|| format!("writing {}", file.display()))?;
                eprintln!("definitions written to {}", file.display());
            }
        }
        DefinitionsCommand::Import { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let v = call(&target, "POST", "/api/definitions", Some(text))?;
            if !target.printed_json(&v)? {
                let c = &v["created"];
                println!(
                    "created {} namespaces, {} queues, {} routers, {} bindings",
                    cell(&c["namespaces"]),
                    cell(&c["queues"]),
                    cell(&c["routers"]),
                    cell(&c["bindings"])
                );
                if let Some(users) = v["users_not_configured"]
                    .as_array()
                    .filter(|u| !u.is_empty())
                {
                    let names: Vec<String> = users.iter().map(cell).collect();
                    println!("users not in this broker's config: {}", names.join(", "));
                }
            }
        }
    }
    Ok(())
}
