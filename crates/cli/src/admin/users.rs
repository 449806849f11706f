//! `ferry users list|add|delete` and `ferry permissions list|set|clear`.
//! Users of the config file are listed; only those made here can change.

use clap::Subcommand;
use comfy_table::Table;
use serde_json::json;

use super::{Target, call, cell, encode};

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Every user: tags, loopback-only, and where it is defined.
    List,
    /// Make (or replace) a user; its password is read from stdin if not given.
    Add {
        name: String,
        /// The new user's password (`--password` is the admin's own).
        #[arg(long)]
        user_password: Option<String>,
        /// A tag, e.g. `administrator` for the admin API (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only from this machine (127.0.0.0/8, ::1).
        #[arg(long)]
        loopback_only: bool,
    },
    /// Delete a user made through the API.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum PermissionsCommand {
    /// Every user's permissions per namespace.
    List,
    /// Set what a user may configure, write and read in a namespace
    /// (regular expressions over resource names; `` matches nothing).
    Set {
        /// The user (named so as not to clash with the global --user).
        #[arg(value_name = "USER")]
        who: String,
        #[arg(long, default_value = "/")]
        namespace: String,
        #[arg(long, default_value = ".*")]
        configure: String,
        #[arg(long, default_value = ".*")]
        write: String,
        #[arg(long, default_value = ".*")]
        read: String,
    },
    /// Take away a user's permissions in a namespace.
    Clear {
        #[arg(value_name = "USER")]
        who: String,
        #[arg(long, default_value = "/")]
        namespace: String,
    },
}

pub fn users(target: Target, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::List => {
            let v = call(&target, "GET", "/api/users", None)?;
            if target.printed_json(&v)? {
                return Ok(());
            }
            let mut t = Table::new();
            t.set_header(vec!["user", "tags", "loopback only", "defined in"]);
            for u in v.as_array().into_iter().flatten() {
                let tags: Vec<String> = u["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(cell)
                    .collect();
                t.add_row(vec![
                    cell(&u["name"]),
                    tags.join(" "),
                    cell(&u["loopback_only"]),
                    cell(&u["source"]),
                ]);
            }
            println!("{t}");
        }
        UsersCommand::Add {
            name,
            user_password,
            tags,
            loopback_only,
        } => {
            let password = crate::password_or_stdin(user_password)?;
            let body =
                json!({ "password": password, "tags": tags, "loopback_only": loopback_only });
            let path = format!("/api/users/{}", encode(&name));
            let v = call(&target, "PUT", &path, Some(body.to_string()))?;
            if !target.printed_json(&v)? {
                println!("user '{name}' saved");
            }
        }
        UsersCommand::Delete { name } => {
            let path = format!("/api/users/{}", encode(&name));
            let v = call(&target, "DELETE", &path, None)?;
            if !target.printed_json(&v)? {
                println!("user '{name}' deleted");
            }
        }
    }
    Ok(())
}

pub fn permissions(target: Target, command: PermissionsCommand) -> anyhow::Result<()> {
    let path = |ns: &str, user: &str| format!("/api/permissions/{}/{}", encode(ns), encode(user));
    match command {
        PermissionsCommand::List => {
            let v = call(&target, "GET", "/api/permissions", None)?;
            if target.printed_json(&v)? {
                return Ok(());
            }
            let mut t = Table::new();
            t.set_header(vec!["user", "namespace", "configure", "write", "read"]);
            for p in v.as_array().into_iter().flatten() {
                t.add_row(
                    ["user", "namespace", "configure", "write", "read"]
                        .iter()
                        .map(|k| cell(&p[*k])),
                );
            }
            println!("{t}");
        }
        PermissionsCommand::Set {
            who: user,
            namespace,
            configure,
            write,
            read,
        } => {
            let body = json!({ "configure": configure, "write": write, "read": read });
            let v = call(
                &target,
                "PUT",
                &path(&namespace, &user),
                Some(body.to_string()),
            )?;
            if !target.printed_json(&v)? {
                println!("permissions of '{user}' in '{namespace}' set");
            }
        }
        PermissionsCommand::Clear {
            who: user,
            namespace,
        } => {
            let v = call(&target, "DELETE", &path(&namespace, &user), None)?;
            if !target.printed_json(&v)? {
                println!("permissions of '{user}' in '{namespace}' cleared");
            }
        }
    }
    Ok(())
}
