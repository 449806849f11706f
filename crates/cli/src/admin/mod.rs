//! Admin commands over the admin API (docs/admin-api.md): human tables by
//! default, `--json` for scripts.
//!
//! - this file: where the API is, one call, `ferry status`.
//! - `queues.rs`: `ferry queues list|create|delete|purge|peek`.
//! - `messages.rs`: `ferry publish`, `ferry consume`, `ferry dlq redrive`.
//! - `definitions.rs`: `ferry definitions export|import`.
//! - `users.rs`: `ferry users ...`, `ferry permissions ...`.

mod definitions;
mod messages;
mod queues;
mod streams;
mod users;

pub use definitions::{DefinitionsCommand, definitions};
pub use messages::{ConsumeArgs, DlqCommand, PublishArgs, consume, dlq, publish};
pub use queues::{QueuesCommand, queues};
pub use streams::{GroupsCommand, StreamsCommand, groups, streams};
pub use users::{PermissionsCommand, UsersCommand, permissions, users};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use comfy_table::Table;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long one API call may take, connecting included.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
    pub json: bool,
    /// CA certificates (PEM) to verify an https:// admin URL against.
    #[arg(long, global = true, env = "FERRY_ADMIN_CA", value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
}

impl Target {
    /// Prints `v` as JSON if asked to; true if it did.
    pub(crate) fn printed_json(&self, v: &Value) -> anyhow::Result<bool> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v)?);
        }
        Ok(self.json)
    }
}

/// `/api/queues/{namespace}/{name}{tail}`, encoded.
pub(crate) fn queue_path(namespace: &str, name: &str, tail: &str) -> String {
    format!("/api/queues/{}/{}{tail}", encode(namespace), encode(name))
}

/// A JSON value as a table cell: text without its quotes.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn status(target: Target) -> anyhow::Result<()> {
    let v = call(&target, "GET", "/api/overview", None)?;
    if target.printed_json(&v)? {
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
        ("connections", v["connections"].to_string()),
        (
            "published / delivered per s",
            format!(
                "{:.1} / {:.1}",
                v["rates"]["published"].as_f64().unwrap_or(0.0),
                v["rates"]["delivered"].as_f64().unwrap_or(0.0)
            ),
        ),
        ("alarm", v["alarm"].as_str().unwrap_or("none").to_owned()),
    ] {
        t.add_row(vec![k.to_owned(), val.trim_matches('"').to_owned()]);
    }
    println!("{t}");
    Ok(())
}

/// A path segment, percent-encoded (the vhost `/` is `%2F`).
pub(crate) fn encode(s: &str) -> String {
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
pub(crate) fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<Value> {
    let url = target.admin_url.as_str();
    let (tls, host) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(h), _) => (Some(connector(target)?), h),
        (None, Some(h)) => (None, h),
        _ => bail!("'{url}': expected http://host:port or https://host:port"),
    };
    let host = host.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", target.user, target.password));
    let method = method.to_owned();
    let path = path.to_owned();
    let exchange = async move {
        let stream = tokio::net::TcpStream::connect(host.as_str())
            .await
            .with_context(|| format!("connecting to the admin API at {host}"))?;
        let req = hyper::Request::builder()
            .method(method.as_str())
            .uri(path)
            .header("host", &host)
            .header("authorization", format!("Basic {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        match tls {
            None => exchange(stream, req).await,
            Some(tls) => {
                let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
                let name = rustls::pki_types::ServerName::try_from(
                    name.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )
                .with_context(|| format!("'{name}' is not a host name"))?;
                let stream = tls
                    .connect(name, stream)
                    .await
                    .context("TLS handshake with the admin API")?;
                exchange(stream, req).await
            }
        }
    };
    // A broker that accepts but never answers must not hang a script.
    let (status, bytes) = runtime
        .block_on(async { tokio::time::timeout(CALL_TIMEOUT, exchange).await })
        .map_err(|_| anyhow::anyhow!("the admin API did not answer within {CALL_TIMEOUT:?}"))??;
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

/// One HTTP/1.1 request on `stream`: the status and the body.
async fn exchange<S>(
    stream: S,
    req: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<(hyper::StatusCode, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// TLS for an https:// admin URL, trusting the CA file given (ring, as
/// the server).
fn connector(target: &Target) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca = target.ca.as_ref().context(
        "an https:// admin URL needs --ca (or FERRY_ADMIN_CA): the CA certificates to trust",
    )?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("reading {}", ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}
