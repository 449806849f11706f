//! Binding each face's listeners from its spec and its settings, and the
//! accept loops that serve them: [`http`] for HTTP faces, [`stream`] for
//! byte-stream faces.

pub mod http;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_face::FaceSpec;
use tokio::net::TcpListener;

use crate::config::{Listen, Listeners};
use crate::error::ServerError;
use crate::tls::Tls;

/// A bound listener of a face, not yet served.
pub struct BoundListener {
    pub face: &'static FaceSpec,
    /// As `listening NAME ADDR` says it: `amqp`, `amqps`, `aws-tls`.
    pub name: String,
    pub addr: SocketAddr,
    pub listener: TcpListener,
    pub tls: Option<Arc<Tls>>,
}

/// Binds every listener that is on, face by face in `faces` order, plain
/// before TLS. A taken port fails the start at once, before recovery.
pub async fn bind_all(
    faces: &[&'static FaceSpec],
    listeners: &Listeners,
    tls: Option<&Arc<Tls>>,
) -> Result<Vec<BoundListener>, ServerError> {
    let mut bound = Vec::new();
    for &face in faces {
        let on = listeners.of(face);
        if let Listen::At(addr) = on.plain {
            bound.push(bind(face, face.name.to_owned(), addr, None).await?);
        }
        if let Listen::At(addr) = on.tls {
            let name = face.tls_listener_name();
            // A TLS listener with no certificate is a mistake to report, not to skip.
            let Some(tls) = tls else {
                return Err(ServerError::Tls(format!(
                    "the {name} listener needs a certificate and key (tls-cert, tls-key)"
                )));
            };
            bound.push(bind(face, name, addr, Some(Arc::clone(tls))).await?);
        }
    }
    Ok(bound)
}

async fn bind(
    face: &'static FaceSpec,
    name: String,
    addr: SocketAddr,
    tls: Option<Arc<Tls>>,
) -> Result<BoundListener, ServerError> {
    let error = |source| ServerError::Bind {
        listener: name.clone(),
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let addr = listener.local_addr().map_err(error)?;
    Ok(BoundListener {
        face,
        name,
        addr,
        listener,
        tls,
    })
}

/// Takes out the listeners of `face`.
pub fn take(bound: &mut Vec<BoundListener>, face: &FaceSpec) -> Vec<BoundListener> {
    let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(bound)
        .into_iter()
        .partition(|b| b.face.name == face.name);
    *bound = rest;
    mine
}
