//! HTTP listeners (the admin API, the AWS APIs), plain or TLS, served by
//! axum with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use super::BoundListener;
use crate::error::ServerError;
use crate::tls::Tls;
use crate::tls_listener::TlsListener;

/// Serves `app` on `listener`, over TLS when `tls` is given, until
/// `stopped` turns true; then lets in-flight requests finish.
pub fn serve(
    tasks: &mut JoinSet<()>,
    bound: BoundListener,
    app: axum::Router,
    stopped: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let BoundListener {
        name,
        addr,
        listener,
        tls,
        ..
    } = bound;
    match tls {
        None => serve_on(tasks, name, listener, app, stopped),
        Some(tls) => {
            let listener = tls_listener(listener, tls, &name, addr)?;
            serve_on(tasks, name, listener, app, stopped);
        }
    }
    Ok(())
}

fn serve_on<L>(
    tasks: &mut JoinSet<()>,
    name: String,
    listener: L,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        // The peer address reaches handlers (loopback-only users).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, listener = name, "listener failed");
        }
    });
}

/// A TLS listener whose connections are tapped to turn Nagle off, as on
/// the plain listeners; tapping also gives handlers the client's address
/// (axum provides ConnectInfo for tapped listeners of any kind).
type TappedTls = axum::serve::TapIo<TlsListener, fn(&mut TlsStream<TcpStream>)>;

fn no_delay(tls: &mut TlsStream<TcpStream>) {
    let _ = tls.get_ref().0.set_nodelay(true);
}

fn tls_listener(
    listener: TcpListener,
    tls: Arc<Tls>,
    name: &str,
    addr: SocketAddr,
) -> Result<TappedTls, ServerError> {
    use axum::serve::ListenerExt;
    let listener = TlsListener::new(listener, tls).map_err(|source| ServerError::Bind {
        listener: name.to_owned(),
        addr,
        source,
    })?;
    Ok(listener.tap_io(no_delay as fn(&mut TlsStream<TcpStream>)))
}
