//! `ferry serve` on a damaged journal: a torn tail is cut and the broker
//! starts; damage in an older segment stops the start with the file and
//! offset; `--repair` skips it. The journal is written with the library,
//! then damaged, then the real binary starts on it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::Broker;
use ferry_core::clock::SystemClock;
use ferry_core::ids::RandomIds;
use ferry_core::message::Message;
use ferry_core::queue::QueueConfig;
use ferry_core::store::Store;
use ferry_storage::{Journal, JournalConfig, segment};

const SEGMENT: u64 = 8192;

/// Writes a journal of several segments into `data/journal`.
fn seed(data: &Path) {
    let journal = Arc::new(
        Journal::open(
            &data.join("journal"),
            JournalConfig {
                segment_size: SEGMENT,
                ..JournalConfig::default()
            },
        )
        .expect("journal"),
    );
    let broker = Broker::open(
        Arc::new(SystemClock::new()),
        Arc::new(RandomIds::new()),
        Arc::clone(&journal) as Arc<dyn Store>,
    )
    .expect("broker");
    let _ = broker.create_namespace("ns").expect("namespace");
    let q = broker
        .declare_queue("ns", "q", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for i in 0..60 {
        let body = format!("message {i:03} {}", "x".repeat(300));
        let (_, commit) = broker
            .send(&q, Message::new(body).persistent())
            .expect("send");
        rt.block_on(commit.wait()).expect("durable");
    }
    drop(broker);
    journal.close();
}

struct Outcome {
    started: bool,
    status: Option<std::process::ExitStatus>,
    stderr: String,
}

/// Starts ferry on `data`; if it prints its listening line, stops it with
/// SIGTERM. Returns whether it started, its exit status and its stderr.
fn run_ferry(data: &Path, extra: &[&str]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args([
        "serve",
        "--admin-listen",
        "127.0.0.1:0",
        "--aws-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--amqp-listen",
        "off",
        "--segment-size",
    ])
    .arg(SEGMENT.to_string())
    .arg("--data-dir")
    .arg(data)
    .args(extra)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut started = false;
    let mut status = None;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50))
            && line.starts_with("listening admin")
        {
            started = true;
            break;
        }
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
    }
    if started {
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of a child this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while status.is_none() && Instant::now() < deadline {
            status = child.try_wait().expect("try_wait");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if status.is_none() {
        let _ = child.kill();
    }
    // Reaps the child in every case (returns at once if it has exited).
    let waited = child.wait().ok();
    let status = status.or(waited);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Outcome {
        started,
        status,
        stderr,
    }
}

fn segments(data: &Path) -> Vec<u64> {
    segment::list(&data.join("journal")).expect("list")
}

#[test]
fn a_torn_tail_is_cut_and_the_broker_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed(dir.path());
    let newest = *segments(dir.path()).last().expect("segments");
    let path = segment::path(&dir.path().join("journal"), newest);
    let len = std::fs::metadata(&path).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(len - 5)
        .expect("cut");
    let out = run_ferry(dir.path(), &[]);
    assert!(
        out.started,
        "ferry started: {:?} {}",
        out.status, out.stderr
    );
    assert!(out.status.is_some_and(|s| s.success()), "{}", out.stderr);
    assert!(out.stderr.contains("torn tail"), "warned: {}", out.stderr);
}

#[test]
fn damage_in_an_older_segment_stops_the_start_and_repair_skips_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed(dir.path());
    let all = segments(dir.path());
    assert!(all.len() >= 3, "several segments: {all:?}");
    let older = segment::path(&dir.path().join("journal"), all[0]);
    let mut data = std::fs::read(&older).expect("read");
    let at = data.len() - 100;
    data[at] ^= 0xa5;
    std::fs::write(&older, &data).expect("write");

    let out = run_ferry(dir.path(), &[]);
    assert!(!out.started, "refused to start: {}", out.stderr);
    assert!(out.status.is_some_and(|s| !s.success()));
    let name = older.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(out.stderr.contains(name), "names the file: {}", out.stderr);
    assert!(
        out.stderr.contains("offset"),
        "names the offset: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--repair"),
        "says how to go on: {}",
        out.stderr
    );

    let out = run_ferry(dir.path(), &["--repair"]);
    assert!(out.started, "repair starts: {}", out.stderr);
    assert!(out.status.is_some_and(|s| s.success()), "{}", out.stderr);
    assert!(
        out.stderr.contains("repair"),
        "logs what was lost: {}",
        out.stderr
    );
}
