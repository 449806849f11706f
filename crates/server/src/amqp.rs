//! The AMQP listeners (plain and TLS): accept connections and give each its
//! own task. On shutdown they stop accepting, let each connection tell its
//! client (connection.close 320) and wait for them to end.

use std::sync::Arc;

use ferry_amqp::Amqp;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::tls::{Flavour, Tls, certified_user};
use crate::tls_listener::HANDSHAKE_TIMEOUT;

/// Serves AMQP on `listener`; over TLS (AMQPS) when `tls` is given.
pub fn serve(
    tasks: &mut JoinSet<()>,
    listener: TcpListener,
    amqp: Arc<Amqp>,
    tls: Option<Arc<Tls>>,
    mut stopped: watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Frames are batched per turn already; don't let Nagle hold them.
                        let _ = stream.set_nodelay(true);
                        let amqp = Arc::clone(&amqp);
                        let stop = stopped.clone();
                        match &tls {
                            None => {
                                connections.spawn(amqp.serve(stream, peer, None, stop));
                            }
                            Some(tls) => {
                                let acceptor = tls.acceptor(Flavour::Amqp);
                                connections.spawn(async move {
                                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                                    match handshake {
                                        Ok(Ok(tls_stream)) => {
                                            let certified = certified_user(tls_stream.get_ref().1);
                                            amqp.serve(tls_stream, peer, certified, stop).await;
                                        }
                                        // Debug: scanners would flood the log.
                                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "AMQPS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "AMQPS handshake timed out"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accepting an AMQP connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                // Finished connections are reaped as they go.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = until_stopped(&mut stopped) => break,
            }
        }
        while connections.join_next().await.is_some() {}
    });
}

async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
