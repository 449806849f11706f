//! `ferry serve` as a real process: the listening lines, health over a real
//! socket, config precedence, the data-directory lock, and signals.

mod common;

use common::http_get;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(20);

struct Ferry {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Ferry {
    fn start(args: &[&str]) -> Ferry {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ferry { child, lines }
    }

    /// Reads `listening <protocol> <addr>` lines until `want` are seen.
    fn listening(&self, want: usize) -> Vec<(String, SocketAddr)> {
        let deadline = Instant::now() + STARTUP;
        let mut found = Vec::new();
        while found.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("a listening line in time");
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "line: {line}");
            assert_eq!(parts[0], "listening", "line: {line}");
            found.push((parts[1].to_owned(), parts[2].parse().expect("address")));
        }
        found
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of a child this test started.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill");
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ferry did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn dir_arg(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn serve_listens_answers_health_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir_arg(&dir.path().join("data"));
    let mut f = Ferry::start(&[
        "serve",
        "--admin-listen",
        "127.0.0.1:0",
        "--aws-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--amqp-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
    ]);
    let found = f.listening(3);
    let names: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["admin", "aws", "amqp"]);
    assert!(
        found
            .iter()
            .all(|(_, a)| a.ip().is_loopback() && a.port() != 0)
    );
    let admin = found[0].1;
    assert!(admin.ip().is_loopback());
    assert_ne!(admin.port(), 0, "port 0 was replaced by a real port");

    let (status, body) = http_get(admin, "/api/health/live");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(admin, "/api/health/ready");
    assert_eq!((status, body.contains("ready")), (200, true), "{body}");
    let (status, _) = http_get(admin, "/no/such/path");
    assert_eq!(status, 404);
    assert!(dir.path().join("data").join("LOCK").exists());

    f.signal(libc::SIGTERM);
    let status = f.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}: {}", f.stderr());
}

#[test]
fn sigint_also_stops_it_and_off_disables_a_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ferry.toml");
    let data = dir.path().join("from-config");
    std::fs::write(
        &config,
        format!(
            "data-dir = \"{}\"\nadmin-listen = \"127.0.0.1:0\"\n",
            dir_arg(&data)
        ),
    )
    .expect("write config");
    // The flag wins over the config file: no listener at all.
    let mut f = Ferry::start(&[
        "serve",
        "--config",
        &dir_arg(&config),
        "--admin-listen",
        "off",
        "--aws-listen",
        "off",
        "--kafka-listen",
        "off",
        "--amqp-listen",
        "off",
    ]);
    // The file's data-dir is used: its lock file appears.
    let deadline = Instant::now() + STARTUP;
    while !data.join("LOCK").exists() {
        assert!(
            Instant::now() < deadline,
            "data dir from the config file was not used"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(f.lines.try_recv().is_err(), "no listener was started");
    f.signal(libc::SIGINT);
    let status = f.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}: {}", f.stderr());
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir_arg(dir.path());
    let first = Ferry::start(&[
        "serve",
        "--admin-listen",
        "127.0.0.1:0",
        "--aws-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--amqp-listen",
        "off",
        "--data-dir",
        &data,
    ]);
    first.listening(2);
    let mut second = Ferry::start(&[
        "serve",
        "--admin-listen",
        "127.0.0.1:0",
        "--aws-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--amqp-listen",
        "off",
        "--data-dir",
        &data,
    ]);
    let status = second.wait(Duration::from_secs(10));
    assert!(!status.success());
    assert!(second.stderr().contains("in use by another ferry"));
}

#[test]
fn bad_flags_and_bad_config_files_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--admin-listen", "nowhere"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "no-such-key = 1\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", &dir_arg(&config)])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("no-such-key"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ferry "));
}

#[test]
fn a_second_signal_exits_at_once_while_shutdown_waits_for_a_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir_arg(dir.path());
    let mut f = Ferry::start(&[
        "serve",
        "--admin-listen",
        "127.0.0.1:0",
        "--aws-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--amqp-listen",
        "off",
        "--data-dir",
        &data,
    ]);
    let admin = f.listening(1)[0].1;
    // A request in flight: headers begun, never finished.
    let mut slow = TcpStream::connect(admin).expect("connect");
    slow.write_all(b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(100));
    f.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        f.child.try_wait().expect("try_wait").is_none(),
        "graceful shutdown waits"
    );
    f.signal(libc::SIGTERM);
    let status = f.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "the second signal ends it at once");
    drop(slow);
}
