//! Admin commands: `ferry status` and `ferry queues ...`, over the admin
//! API (docs/admin-api.md). Human tables by default, `--json` for scripts.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use comfy_table::Table;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the admin API is and who asks.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The admin listener [default: http://127.0.0.1:15672].
    #[arg(
        long,
        global = true,
        env = "FERRY_ADMIN_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    admin_url: String,
    /// A user with the administrator tag.
    #[arg(long, global = true, env = "FERRY_ADMIN_USER", default_value = "guest")]
    user: String,
    /// Its password.
    #[arg(
        long,
        global = true,
        env = "FERRY_ADMIN_PASSWORD",
        default_value = "guest",
        hide_env_values = true
    )]
    password: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum QueuesCommand {
    /// Every queue with its depth and consumers.
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
}

pub fn status(target: Target) -> anyhow::Result<()> {
    let v = call(&target, "GET", "/api/overview", None)?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.set_header(vec!["", "value"]);
    let m = &v["messages"];
    for (k, val) in [
        ("version", v["version"].to_string()),
        (
            "uptime (s)",
            format!("{:.0}", v["uptime_seconds"].as_f64().unwrap_or(0.0)),
        ),
        ("namespaces", v["namespaces"].to_string()),
        ("queues", v["queues"].to_string()),
        (
            "messages ready / unacked / delayed",
            format!("{} / {} / {}", m["ready"], m["unacked"], m["delayed"]),
        ),
        ("consumers", v["consumers"].to_string()),
        ("alarm", v["alarm"].as_str().unwrap_or("none").to_owned()),
    ] {
        t.add_row(vec![k.to_owned(), val.trim_matches('"').to_owned()]);
    }
    println!("{t}");
    Ok(())
}

pub fn queues(target: Target, command: QueuesCommand) -> anyhow::Result<()> {
    let path = |ns: &str, name: &str, tail: &str| {
        format!("/api/queues/{}/{}{tail}", encode(ns), encode(name))
    };
    let v = match &command {
        QueuesCommand::List => call(&target, "GET", "/api/queues", None)?,
        QueuesCommand::Create {
            name,
            namespace,
            transient,
            fifo,
        } => {
            let body = serde_json::json!({ "durable": !transient, "fifo": fifo }).to_string();
            call(&target, "PUT", &path(namespace, name, ""), Some(body))?
        }
        QueuesCommand::Delete { name, namespace } => {
            call(&target, "DELETE", &path(namespace, name, ""), None)?
        }
        QueuesCommand::Purge { name, namespace } => {
            call(&target, "DELETE", &path(namespace, name, "/contents"), None)?
        }
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match command {
        QueuesCommand::List => {
            let mut t = Table::new();
            t.set_header(vec![
                "namespace",
                "queue",
                "ready",
                "unacked",
                "delayed",
                "consumers",
                "durable",
            ]);
            for q in v.as_array().into_iter().flatten() {
                let m = &q["messages"];
                t.add_row(vec![
                    q["namespace"].as_str().unwrap_or("").to_owned(),
                    q["name"].as_str().unwrap_or("").to_owned(),
                    m["ready"].to_string(),
                    m["unacked"].to_string(),
                    m["delayed"].to_string(),
                    q["consumers"].to_string(),
                    q["durable"].to_string(),
                ]);
            }
            println!("{t}");
        }
        QueuesCommand::Create { name, .. } => println!("queue '{name}' declared"),
        QueuesCommand::Delete { name, .. } => {
            println!("queue '{name}' deleted ({} messages)", v["messages"])
        }
        QueuesCommand::Purge { name, .. } => {
            println!("queue '{name}' purged ({} messages)", v["purged"])
        }
    }
    Ok(())
}

/// A path segment, percent-encoded (the vhost `/` is `%2F`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One API call; the JSON answer, or the API's error as an error.
fn call(target: &Target, method: &str, path: &str, body: Option<String>) -> anyhow::Result<Value> {
    let host = target
        .admin_url
        .strip_prefix("http://")
        .with_context(|| format!("'{}': expected http://host:port", target.admin_url))?
        .trim_end_matches('/')
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", target.user, target.password));
    let method = method.to_owned();
    let path = path.to_owned();
    let (status, bytes) = runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(host.as_str())
            .await
            .with_context(|| format!("connecting to the admin API at {host}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method.as_str())
            .uri(path)
            .header("host", &host)
            .header("authorization", format!("Basic {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, bytes))
    })?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{} {}",
            status.as_u16(),
            v["reason"]
                .as_str()
                .unwrap_or("the admin API refused the request")
        );
    }
    Ok(v)
}
