//! TLS for every listener (rustls with the ring provider): the server's
//! certificate and key from PEM files, optional client certificates
//! (mutual TLS) verified against a CA bundle, and a reload (SIGHUP) that
//! later handshakes see while open connections keep the session they have.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::error::ServerError;

/// Whether clients must show a certificate.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientCerts {
    /// Not asked for.
    #[default]
    None,
    /// Asked for and verified if given; a client without one still gets in
    /// (and logs in with a password).
    Optional,
    /// A client without a certificate the CA vouches for is refused.
    Required,
}

impl std::str::FromStr for ClientCerts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(ClientCerts::None),
            "optional" => Ok(ClientCerts::Optional),
            "required" => Ok(ClientCerts::Required),
            other => Err(format!("'{other}': expected none, optional or required")),
        }
    }
}

impl std::fmt::Display for ClientCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientCerts::None => "none",
            ClientCerts::Optional => "optional",
            ClientCerts::Required => "required",
        })
    }
}

impl serde::Serialize for ClientCerts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ClientCerts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the certificates are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    pub client_certs: ClientCerts,
}

/// What a listener speaks over TLS (the ALPN names it offers).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Flavour {
    Http,
    /// Byte-stream faces (AMQP): no ALPN name in use.
    Stream,
}

/// The live TLS settings of every listener.
pub struct Tls {
    settings: TlsSettings,
    http: RwLock<Arc<rustls::ServerConfig>>,
    stream: RwLock<Arc<rustls::ServerConfig>>,
}

fn tls_error(what: &str, path: &std::path::Path, detail: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{what} {}: {detail}", path.display()))
}

impl Tls {
    /// Reads the files; any problem is a start-up error that names the file.
    pub fn load(settings: TlsSettings) -> Result<Tls, ServerError> {
        let (http, stream) = build(&settings)?;
        Ok(Tls {
            settings,
            http: RwLock::new(http),
            stream: RwLock::new(stream),
        })
    }

    /// Reads the files again. On failure the old certificate stays in use.
    pub fn reload(&self) -> Result<(), ServerError> {
        let (http, stream) = build(&self.settings)?;
        *self.http.write().unwrap_or_else(PoisonError::into_inner) = http;
        *self.stream.write().unwrap_or_else(PoisonError::into_inner) = stream;
        Ok(())
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self, flavour: Flavour) -> TlsAcceptor {
        let lock = match flavour {
            Flavour::Http => &self.http,
            Flavour::Stream => &self.stream,
        };
        TlsAcceptor::from(Arc::clone(
            &lock.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

fn build(
    s: &TlsSettings,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>), ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.cert)
        .map_err(|e| tls_error("certificate", &s.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("certificate", &s.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error("certificate", &s.cert, "no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&s.key).map_err(|e| tls_error("key", &s.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match (&s.client_ca, s.client_certs) {
        (_, ClientCerts::None) => None,
        (None, _) => {
            return Err(ServerError::Tls(
                "client certificates need a CA to verify them against (tls-client-ca)".into(),
            ));
        }
        (Some(path), mode) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| tls_error("client CA", path, e))?
            {
                let cert = cert.map_err(|e| tls_error("client CA", path, e))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error("client CA", path, e))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let builder = if mode == ClientCerts::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            Some(
                builder
                    .build()
                    .map_err(|e| tls_error("client CA", path, e))?,
            )
        }
    };
    let config = |alpn: &[&[u8]]| -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let builder = match &verifier {
            Some(v) => builder.with_client_cert_verifier(Arc::clone(v)),
            None => builder.with_no_client_auth(),
        };
        let mut c = builder
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| tls_error("certificate and key", &s.cert, e))?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    // HTTP/1.1 is what the listeners speak; AMQP has no ALPN name in use.
    Ok((config(&[b"http/1.1"])?, config(&[])?))
}

/// The user a verified client certificate names: its subject's common
/// name (what RabbitMQ's EXTERNAL mechanism takes by default).
pub fn certified_user(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_modes_parse() {
        assert_eq!("required".parse(), Ok(ClientCerts::Required));
        assert!("sometimes".parse::<ClientCerts>().is_err());
    }

    #[test]
    fn missing_files_name_the_file() {
        let s = TlsSettings {
            cert: PathBuf::from("/nonexistent/cert.pem"),
            key: PathBuf::from("/nonexistent/key.pem"),
            client_ca: None,
            client_certs: ClientCerts::None,
        };
        let e = Tls::load(s)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
