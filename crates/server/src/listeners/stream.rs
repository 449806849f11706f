//! The accept loop of every byte-stream face (AMQP now; MQTT, Kafka,
//! RESP, STOMP next), plain or TLS: it counts each connection against the
//! connection limit before anything else, finishes the TLS handshake
//! (bounded in time), and gives the connection its own task. On shutdown
//! it stops accepting, lets each connection tell its client in its own
//! protocol (the face watches `stop`) and waits for them to end.

use std::sync::Arc;
use std::time::Duration;

use ferry_face::{Accepted, Registry, StreamFace};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::BoundListener;
use crate::tls::{Flavour, certified_user};
use crate::tls_listener::HANDSHAKE_TIMEOUT;

/// How long accepting pauses after it failed (out of file descriptors and
/// the like) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `face` on `listener`; over TLS when `tls` is given.
pub fn serve<F: StreamFace>(
    tasks: &mut JoinSet<()>,
    bound: BoundListener,
    face: Arc<F>,
    registry: Arc<Registry>,
    mut stopped: watch::Receiver<bool>,
) {
    let BoundListener { listener, tls, .. } = bound;
    let protocol = face.spec().name;
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Past the limit the socket is closed unanswered: the
                        // handshake of a flood of connections is not worth its memory.
                        let admission = match registry.admit(protocol, peer) {
                            Ok(a) => a,
                            Err(refused) => {
                                tracing::warn!(%peer, protocol, %refused, "closing a new connection");
                                continue;
                            }
                        };
                        // Faces batch their frames per turn already; Nagle would hold them.
                        let _ = stream.set_nodelay(true);
                        let face = Arc::clone(&face);
                        let stop = stopped.clone();
                        match &tls {
                            None => {
                                connections.spawn(face.serve(Accepted { stream, peer, certified: None, admission, stop }));
                            }
                            Some(tls) => {
                                let acceptor = tls.acceptor(Flavour::Stream);
                                connections.spawn(async move {
                                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                        Ok(Ok(stream)) => {
                                            let certified = certified_user(stream.get_ref().1);
                                            face.serve(Accepted { stream, peer, certified, admission, stop }).await;
                                        }
                                        // Debug: scanners would flood the log.
                                        Ok(Err(e)) => tracing::debug!(%peer, protocol, error = %e, "TLS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, protocol, "TLS handshake timed out"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, protocol, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
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
