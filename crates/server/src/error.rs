use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("config file {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    /// A setting is wrong, whichever layer gave it.
    #[error("{0}")]
    Settings(String),
    #[error("data directory {path}: {detail}")]
    DataDir { path: PathBuf, detail: String },
    #[error("cannot listen for {listener} on {addr}: {source}")]
    Bind {
        /// The listener's name, as `listening NAME ADDR` says it (`amqps`).
        listener: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Core(#[from] ferry_core::CoreError),
    #[error("storage: {0}")]
    Storage(#[from] ferry_core::store::StoreError),
    #[error("streams: {0}")]
    Streams(#[from] ferry_core::stream::StreamError),
    #[error("recovery was interrupted")]
    RecoveryAborted,
    #[error("TLS: {0}")]
    Tls(String),
}
