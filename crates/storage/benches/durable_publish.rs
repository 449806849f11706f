//! Durable publish throughput with group commit, beside the raw limit of
//! the disk measured in the same run.
//!
//! `cargo bench -p ferry-storage --bench durable_publish`
//! Environment: FERRY_BENCH_SECS (default 5) per scenario, FERRY_BENCH_DIR
//! (default: the system temp dir; use a directory on the disk you care about),
//! FERRY_BENCH_ONLY (e.g. `256x16`: only that publishers x body scenario),
//! FERRY_BENCH_WINDOW (default 1: messages each publisher keeps in flight).
//!
//! - broker: P tasks each send a persistent message to a durable queue and
//!   wait for its commit (fsync `always`), then send the next; with a
//!   window W, each keeps W sent and unconfirmed (as an AMQP publisher
//!   with a confirm window, or a Kafka producer's in-flight requests).
//! - raw: the best any broker could do on this disk for P publishers: one
//!   write of P x W records' bytes, one `fdatasync`, repeated.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_core::Broker;
use ferry_core::clock::SystemClock;
use ferry_core::ids::RandomIds;
use ferry_core::message::Message;
use ferry_core::queue::QueueConfig;
use ferry_core::store::Store;
use ferry_storage::{Journal, JournalConfig, frame};

/// The allocator `ferry` itself uses, built as it builds it: its cost per
/// message is part of the broker's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_dir() -> PathBuf {
    std::env::var_os("FERRY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("ferry-bench-{}", std::process::id()))
}

fn window() -> usize {
    std::env::var("FERRY_BENCH_WINDOW")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|w| *w >= 1)
        .unwrap_or(1)
}

fn secs() -> Duration {
    let s = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(s)
}

/// Bytes one message of `body` bytes takes in the journal.
fn record_size(body: usize) -> usize {
    let mut buf = Vec::new();
    let mut m = Message::new(vec![0u8; body]).persistent();
    m.id = ferry_core::message::MessageId(1);
    frame::put(&mut buf, |out| {
        ferry_storage::codec::encode(
            &ferry_core::store::Record::Enqueued {
                queue: ferry_core::store::QueueId(1),
                seq: 1,
                at: ferry_core::clock::Timestamp(1_700_000_000_000),
                deliveries: 0,
                message: Arc::new(m),
                replaces: None,
                forwarded: false,
            },
            out,
        )
    })
}

fn raw(dir: &Path, publishers: usize, body: usize, run: Duration) -> f64 {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    let batch = vec![0xabu8; record_size(body) * publishers];
    let start = Instant::now();
    let mut messages = 0u64;
    while start.elapsed() < run {
        f.write_all(&batch).expect("write");
        f.sync_data().expect("fdatasync");
        messages += publishers as u64;
    }
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    rate
}

fn broker(dir: &Path, publishers: usize, window: usize, body: usize, run: Duration) -> (f64, u64) {
    let jdir = dir.join(format!("journal-{publishers}-{body}"));
    let journal = Arc::new(Journal::open(&jdir, JournalConfig::default()).expect("journal"));
    let b = Broker::open(
        Arc::new(SystemClock::new()),
        Arc::new(RandomIds::new()),
        Arc::clone(&journal) as Arc<dyn Store>,
    )
    .expect("broker");
    let _ = b.create_namespace("bench").expect("namespace");
    let q = b
        .declare_queue("bench", "q", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = bytes::Bytes::from(vec![7u8; body]);
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..publishers)
            .map(|_| {
                let (b, q, sent, stop, payload) = (
                    Arc::clone(&b),
                    Arc::clone(&q),
                    Arc::clone(&sent),
                    Arc::clone(&stop),
                    payload.clone(),
                );
                tokio::spawn(async move {
                    let mut in_flight = std::collections::VecDeque::with_capacity(window);
                    while !stop.load(Ordering::Relaxed) {
                        let (_, commit) = b
                            .send(&q, Message::new(payload.clone()).persistent())
                            .expect("send");
                        in_flight.push_back(commit);
                        if in_flight.len() == window
                            && let Some(oldest) = in_flight.pop_front()
                        {
                            oldest.wait().await.expect("durable");
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for c in in_flight {
                        c.wait().await.expect("durable");
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(run).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("publisher");
        }
    });
    let rate = sent.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    let syncs = journal.stats().syncs;
    drop(b);
    journal.close();
    let _ = std::fs::remove_dir_all(&jdir);
    (rate, syncs)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass
    // nothing and expects a quick exit.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let run = secs();
    let window = window();
    println!(
        "| publishers | window | body | raw write+fdatasync msg/s | ferry durable msg/s | ferry / raw | ferry fsyncs/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let only = std::env::var("FERRY_BENCH_ONLY").ok();
    for body in [16usize, 1024] {
        for publishers in [1usize, 16, 256] {
            if only
                .as_ref()
                .is_some_and(|o| *o != format!("{publishers}x{body}"))
            {
                continue;
            }
            let raw_rate = raw(&dir, publishers * window, body, run);
            let (rate, syncs) = broker(&dir, publishers, window, body, run);
            println!(
                "| {publishers} | {window} | {body} B | {raw_rate:.0} | {rate:.0} | {:.0}% | {:.0} |",
                100.0 * rate / raw_rate,
                syncs as f64 / run.as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
