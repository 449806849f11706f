//! Restart time and resident memory with many queued durable messages.
//!
//! `cargo bench -p ferry-storage --bench restart`
//! Environment: FERRY_BENCH_MESSAGES (default 1000000), FERRY_BENCH_BODY
//! (bytes, default 16), FERRY_BENCH_DIR (default: the system temp dir),
//! FERRY_BENCH_BUDGET (bytes: fill and restart under this memory budget,
//! evicting as the server does; default: no eviction), FERRY_BENCH_JOURNAL
//! (a directory: filled and kept if it does not exist, else only restarted
//! from, so a second run measures a restart in a fresh process, as a real
//! broker restart is).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::Broker;
use ferry_core::clock::SystemClock;
use ferry_core::ids::RandomIds;
use ferry_core::message::Message;
use ferry_core::queue::QueueConfig;
use ferry_core::store::Store;
use ferry_storage::{FsyncPolicy, Journal, JournalConfig};

/// The allocator `ferry` itself uses, so resident memory is what the
/// broker would show.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> (Arc<Broker>, Arc<Journal>) {
    open_within(dir, fsync, u64::MAX)
}

fn open_within(
    dir: &std::path::Path,
    fsync: FsyncPolicy,
    budget: u64,
) -> (Arc<Broker>, Arc<Journal>) {
    let journal = Arc::new(
        Journal::open(
            dir,
            JournalConfig {
                fsync,
                ..JournalConfig::default()
            },
        )
        .expect("journal"),
    );
    let broker = Broker::open_with_budget(
        Arc::new(SystemClock::new()),
        Arc::new(RandomIds::new()),
        Arc::clone(&journal) as Arc<dyn Store>,
        budget,
    )
    .expect("broker");
    (broker, journal)
}

fn rt_block(c: ferry_core::store::Commit) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(c.wait())
        .expect("durable");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env("FERRY_BENCH_MESSAGES", 1_000_000);
    let body = env("FERRY_BENCH_BODY", 16);
    let budget = std::env::var("FERRY_BENCH_BUDGET")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let start_rss = rss_mib();
    let kept = std::env::var_os("FERRY_BENCH_JOURNAL").map(PathBuf::from);
    let dir: PathBuf = kept.clone().unwrap_or_else(|| {
        std::env::var_os("FERRY_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("ferry-restart-{}", std::process::id()))
    });
    if dir.exists() {
        println!(
            "restarting from {} (filled by an earlier run)",
            dir.display()
        );
    } else {
        // Filling is not what is measured: no fsync per batch.
        let (b, j) = open(&dir, FsyncPolicy::Never);
        let _ = b.create_namespace("bench").expect("namespace");
        let q = b
            .declare_queue("bench", "q", QueueConfig::default())
            .expect("declare")
            .0
            .queue;
        let payload = bytes::Bytes::from(vec![b'x'; body]);
        let mut left = n;
        while left > 0 {
            let k = left.min(1000);
            let batch = (0..k)
                .map(|_| Message::new(payload.clone()).persistent())
                .collect();
            let _ = b.send_batch(&q, batch).expect("batch");
            left -= k;
            if let Some(budget) = budget.filter(|_| left.is_multiple_of(100_000)) {
                // The writer must have written what is evicted: let it catch up.
                let (_, c) = b.send(&q, Message::new("sync").persistent()).expect("send");
                rt_block(c);
                b.evict_to(budget);
            }
        }
        if let Some(budget) = budget {
            println!(
                "filled under a {} MiB budget: resident {:.0} MiB (process {:.0} MiB, +{:.0} MiB)",
                budget >> 20,
                b.resident_bytes() as f64 / 1048576.0,
                rss_mib(),
                rss_mib() - start_rss
            );
        }
        drop(b);
        j.close();
    }
    let disk: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let before = rss_mib();
    let start = Instant::now();
    let (b, j) = open_within(&dir, FsyncPolicy::Always, budget.unwrap_or(u64::MAX));
    let elapsed = start.elapsed();
    let q = b.queue("bench", "q").expect("queue");
    let ready = q.stats().ready;
    assert!(ready as usize >= n, "every message came back");
    println!("| messages | body | journal on disk | restart | resident memory after restart |");
    println!("|---|---|---|---|---|");
    println!(
        "| {n} | {body} B | {:.0} MiB | {:.2} s | {:.0} MiB (+{:.0} MiB) |",
        disk as f64 / (1024.0 * 1024.0),
        elapsed.as_secs_f64(),
        rss_mib(),
        rss_mib() - before
    );
    drop(b);
    j.close();
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
