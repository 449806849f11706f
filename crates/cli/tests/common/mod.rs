//! Starting `ferry serve` as a real process for the tests of this crate.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every listener, each set on the command line (a test's own choice, or
/// off): the defaults would take fixed ports, and TLS ones turn on by
/// themselves once a certificate is configured.
const LISTENERS: [&str; 8] = [
    "admin",
    "aws",
    "amqp",
    "kafka",
    "admin-tls",
    "aws-tls",
    "amqps",
    "kafka-tls",
];

pub struct Ferry {
    pub child: Child,
    addrs: HashMap<String, SocketAddr>,
}

impl Ferry {
    /// Starts ferry on `data` with `listeners` on free loopback ports (the
    /// others off) and `extra` flags; returns once each listener is up.
    pub fn start(data: &Path, listeners: &[&str], extra: &[&str]) -> Ferry {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("serve").arg("--data-dir").arg(data);
        for l in LISTENERS {
            let at = if listeners.contains(&l) {
                "127.0.0.1:0"
            } else {
                "off"
            };
            cmd.arg(format!("--{l}-listen")).arg(at);
        }
        let mut child = cmd
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addrs = HashMap::new();
        while addrs.len() < listeners.len() {
            assert!(Instant::now() < deadline, "ferry did not start in time");
            match lines.next() {
                Some(Ok(line)) => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if let ["listening", name, addr] = parts[..] {
                        addrs.insert(name.to_owned(), addr.parse().expect("address"));
                    }
                }
                _ => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    let _ = child.wait();
                    panic!("ferry exited before listening: {err}");
                }
            }
        }
        // Keep draining stdout so ferry never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Ferry { child, addrs }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs[listener]
    }

    /// An AMQP connection as guest to the default vhost (bounded in time:
    /// a broker that accepts and never answers fails the test, not hangs it).
    pub async fn amqp_guest(&self) -> lapin::Connection {
        let url = format!("amqp://guest:guest@{}/%2f", self.addr("amqp"));
        let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
        tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .expect("connected in time")
            .expect("connect")
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill(self) {
        drop(self);
    }
}

/// A test that fails half-way must not leave its broker running.
impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A channel of `conn` in confirm mode, with queue `name` declared on it
/// (durable or not).
#[allow(dead_code)] // not every test binary publishes
pub async fn confirmed_channel(
    conn: &lapin::Connection,
    name: &str,
    durable: bool,
) -> lapin::Channel {
    use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
    let ch = conn.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(name.into(), options, lapin::types::FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch
}

/// Publishes a persistent message to `queue` and waits for its confirm:
/// true for an ack, false for a nack.
#[allow(dead_code)] // not every test binary publishes
pub async fn publish_persistent(ch: &lapin::Channel, queue: &str, body: &[u8]) -> bool {
    ch.basic_publish(
        "".into(),
        queue.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        lapin::BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm")
    .is_ack()
}

/// One GET over a fresh connection: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// One HTTP/1.1 request over a fresh connection: (status, head, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    body: Option<&str>,
) -> (u16, String, String) {
    let json = [("Content-Type", "application/json")];
    let headers: &[(&str, &str)] = if body.is_some_and(|b| !b.is_empty()) {
        &json
    } else {
        &[]
    };
    http_with(addr, method, path, basic, headers, body)
}

/// [`http`] with the request headers given (no Content-Type of its own).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    use base64::Engine;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((user, password)) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head.to_owned(), body.to_owned())
}

/// A crash test's check after a restart: every message found is there
/// once, none of those settled for good (`gone`) came back, and every
/// confirmed one not gone is there.
pub fn check_after_restart<'a>(
    cycle: usize,
    found: impl Iterator<Item = &'a str>,
    confirmed: &HashSet<String>,
    gone: &HashSet<String>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for body in found {
        *seen.entry(body).or_default() += 1;
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "cycle {cycle}: duplicated {dupes:?}");
    let back: Vec<_> = gone
        .iter()
        .filter(|b| seen.contains_key(b.as_str()))
        .collect();
    assert!(
        back.is_empty(),
        "cycle {cycle}: settled messages came back: {back:?}"
    );
    let missing: Vec<_> = confirmed
        .iter()
        .filter(|b| !gone.contains(*b) && !seen.contains_key(b.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "cycle {cycle}: confirmed messages lost: {missing:?}"
    );
}

/// A small seeded generator (xorshift): crash tests pick their moments
/// and messages the same way on every run.
pub struct Rand(u64);

impl Rand {
    pub fn new(seed: u64) -> Self {
        Rand(seed.max(1))
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
