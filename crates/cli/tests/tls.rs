//! TLS on a real ferry: AMQPS and the HTTPS admin listener with a CA made
//! here, client certificates (optional: EXTERNAL is offered; required: a
//! client without one is refused), and a certificate replaced on SIGHUP
//! while a connection made before stays up.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Ferry;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA that signs certificates for the test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for `names` (SANs) with common name `cn`.
    fn sign(&self, cn: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn connector(ca: &Ca, client: Option<&(String, String)>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn connect(addr: SocketAddr, c: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    c.connect(name, tcp).await
}

/// Sends the AMQP protocol header and returns the text of the
/// connection.start that comes back (its mechanisms are in it), or the
/// error that ended the connection.
async fn amqp_start(stream: &mut TlsStream<TcpStream>) -> std::io::Result<String> {
    stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    if n == 0 {
        return Err(std::io::Error::other("closed"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// One keep-alive HTTP/1.1 GET on an open stream: the status code.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // Health answers are small: headers and body arrive in a read or two.
    while !String::from_utf8_lossy(&buf).contains("}") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("path").to_owned()
}

fn start(dir: &Path, ca: &Ca, client_certs: &str) -> Ferry {
    let (cert, key) = ca.sign("ferry", &["localhost", "127.0.0.1"]);
    let cert = write(dir, "cert.pem", &cert);
    let key = write(dir, "key.pem", &key);
    let client_ca = write(dir, "client-ca.pem", &ca.pem);
    Ferry::start(
        &dir.join("data"),
        &["amqps", "admin-tls"],
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
            "--tls-client-certs",
            client_certs,
            "--amqp-sasl-external",
        ],
    )
}

#[tokio::test]
async fn amqps_offers_external_to_a_certified_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let ferry = start(dir.path(), &ca, "optional");
    let amqps = ferry.addr("amqps");

    let client = ca.sign("guest", &[]);
    let mut s = connect(amqps, &connector(&ca, Some(&client)))
        .await
        .expect("tls");
    let start = amqp_start(&mut s).await.expect("connection.start");
    assert!(start.contains("PLAIN AMQPLAIN EXTERNAL"), "{start:?}");

    // Optional: no certificate is fine, but then there is no EXTERNAL.
    let mut s = connect(amqps, &connector(&ca, None)).await.expect("tls");
    let start = amqp_start(&mut s).await.expect("connection.start");
    assert!(
        start.contains("PLAIN AMQPLAIN") && !start.contains("EXTERNAL"),
        "{start:?}"
    );

    // A server certificate from another CA is not trusted by the client.
    let other = Ca::new("other CA");
    assert!(connect(amqps, &connector(&other, None)).await.is_err());
    // Nor a client certificate from another CA by the server, even with
    // certificates optional: it is refused, not taken as anonymous.
    let rogue = other.sign("guest", &[]);
    let refused = match connect(amqps, &connector(&ca, Some(&rogue))).await {
        Err(_) => true,
        Ok(mut s) => amqp_start(&mut s).await.is_err(),
    };
    assert!(refused, "a certificate the CA did not sign");
}

#[tokio::test]
async fn required_client_certificates_refuse_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let ferry = start(dir.path(), &ca, "required");
    let amqps = ferry.addr("amqps");

    // TLS 1.3 finishes the client's side of the handshake before the
    // server checks its certificate: the refusal shows on the first read.
    let refused = match connect(amqps, &connector(&ca, None)).await {
        Err(_) => true,
        Ok(mut s) => amqp_start(&mut s).await.is_err(),
    };
    assert!(refused, "no certificate: refused");
    let rogue = Ca::new("rogue CA").sign("guest", &[]);
    let refused = match connect(amqps, &connector(&ca, Some(&rogue))).await {
        Err(_) => true,
        Ok(mut s) => amqp_start(&mut s).await.is_err(),
    };
    assert!(refused, "a certificate from another CA: refused");
    let good = ca.sign("guest", &[]);
    let mut s = connect(amqps, &connector(&ca, Some(&good)))
        .await
        .expect("tls");
    assert!(
        amqp_start(&mut s)
            .await
            .expect("start")
            .contains("EXTERNAL")
    );
}

#[tokio::test]
async fn sighup_rotates_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("first CA");
    let ferry = start(dir.path(), &ca, "none");
    let admin = ferry.addr("admin-tls");
    let mut before = connect(admin, &connector(&ca, None)).await.expect("tls");
    assert_eq!(get(&mut before, "/api/health/live").await, 200);

    // A certificate from a new CA replaces the files; SIGHUP reads them.
    let next = Ca::new("second CA");
    let (cert, key) = next.sign("ferry", &["localhost"]);
    write(dir.path(), "cert.pem", &cert);
    write(dir.path(), "key.pem", &key);
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(ferry.child.id() as i32, libc::SIGHUP) };
    let mut rotated = false;
    for _ in 0..100 {
        if let Ok(mut s) = connect(admin, &connector(&next, None)).await {
            assert_eq!(get(&mut s, "/api/health/live").await, 200);
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "new connections get the new certificate");
    assert!(
        connect(admin, &connector(&ca, None)).await.is_err(),
        "and no longer the old one"
    );
    assert_eq!(
        get(&mut before, "/api/health/live").await,
        200,
        "the connection made before the reload is still up"
    );

    // A broken file is refused and the current certificate stays.
    write(dir.path(), "key.pem", "not a key");
    unsafe { libc::kill(ferry.child.id() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = connect(admin, &connector(&next, None))
        .await
        .expect("still served");
    assert_eq!(get(&mut s, "/api/health/live").await, 200);
}

#[test]
fn a_tls_listener_without_a_certificate_is_a_start_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--admin-listen",
            "off",
            "--aws-listen",
            "off",
            "--kafka-listen",
            "off",
            "--amqp-listen",
            "off",
        ])
        .args(["--amqps-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Bounded: a regression that lets it start must fail, not hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry started without a certificate");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(err.contains("tls-cert"), "{err}");
}

#[tokio::test]
async fn the_cli_talks_to_the_https_admin_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let ferry = start(dir.path(), &ca, "none");
    let url = format!("https://localhost:{}", ferry.addr("admin-tls").port());
    let ca_file = write(dir.path(), "ca-for-cli.pem", &ca.pem);
    let run = move |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env_remove("FERRY_ADMIN_CA")
            .output()
            .expect("run")
    };
    let with_ca = vec![
        "status".into(),
        "--admin-url".into(),
        url.clone(),
        "--ca".into(),
        ca_file,
    ];
    let out = tokio::task::spawn_blocking(move || run(with_ca))
        .await
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let without = vec!["status".into(), "--admin-url".into(), url];
    let out = tokio::task::spawn_blocking(move || run(without))
        .await
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
}
