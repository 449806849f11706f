//! Restart time of the streams engine with many retained records: fills
//! partitions of one stream through the segment log, closes it, and times
//! opening it again (`SegmentLogs::open` + `Streams::open`), which reads
//! each partition's closed segments' index files and scans its active
//! segment from the recovery point the close left (so: nothing).
//!
//! `cargo bench -p ferry-storage --bench streams_restart`
//! Environment: FERRY_BENCH_RECORDS (per partition, default 10000000),
//! FERRY_BENCH_PARTITIONS (default 1), FERRY_BENCH_VALUE (bytes, default
//! 16), FERRY_BENCH_BATCH (records per batch, default 1000),
//! FERRY_BENCH_DIR (default: the system temp dir), FERRY_BENCH_COLD=1
//! (sync and drop the page cache before the restart: needs root),
//! FERRY_BENCH_CRASH=1 (remove the active segments' recovery points
//! first: a crash before any point, the worst case, where each active
//! segment is scanned whole).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_core::clock::SystemClock;
use ferry_core::stream::batch::{self, Record};
use ferry_core::stream::{LogStore, StreamConfig, Streams};
use ferry_storage::FsyncPolicy;
use ferry_storage::log::SegmentLogs;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn open(dir: &std::path::Path) -> Arc<Streams> {
    let logs: Arc<dyn LogStore> =
        Arc::new(SegmentLogs::open(dir, FsyncPolicy::Never, None).expect("open the logs"));
    Streams::open(Arc::new(SystemClock::new()), logs).expect("open the streams")
}

fn main() {
    let records = env("FERRY_BENCH_RECORDS", 10_000_000);
    let partitions = env("FERRY_BENCH_PARTITIONS", 1) as u32;
    let value = env("FERRY_BENCH_VALUE", 16);
    let per = env("FERRY_BENCH_BATCH", 1000).max(1);
    let base = std::env::var_os("FERRY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let filled = Instant::now();
    runtime.block_on(async {
        let streams = open(dir.path());
        let s = streams
            .create("/", "restart", partitions, StreamConfig::default())
            .expect("create");
        let template: Vec<Record> = (0..per)
            .map(|i| Record {
                offset: i as i64,
                timestamp: 1_700_000_000_000 + i as i64,
                key: None,
                value: Some(Bytes::from(vec![b'x'; value])),
                headers: Vec::new(),
            })
            .collect();
        let raw = batch::build(&template, None);
        let h = batch::validate(&raw).expect("a valid batch");
        let mut last = None;
        for p in 0..partitions {
            let mut n = 0;
            while n < records {
                let a = s.append(p, &raw, &h, 0).expect("append");
                last = Some(a.commit);
                n += per;
            }
        }
        if let Some(c) = last {
            c.wait().await.expect("durable");
        }
        // Everything written is on its way to the files: wait for the end.
        for p in s.partitions() {
            while p.high_watermark() < (records.div_ceil(per) * per) as u64 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    });
    let fill_s = filled.elapsed().as_secs_f64();
    let on_disk: u64 = walk(dir.path());
    let crash = std::env::var("FERRY_BENCH_CRASH").is_ok_and(|v| v == "1");
    if crash {
        remove_recovery_points(dir.path());
    }
    let cold = std::env::var("FERRY_BENCH_COLD").is_ok_and(|v| v == "1");
    if cold {
        let _ = std::process::Command::new("sync").status();
        std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop the page cache (root only)");
    }
    let started = Instant::now();
    let streams = open(dir.path());
    let restart = started.elapsed();
    let s = streams.get("/", "restart").expect("the stream came back");
    let kept: u64 = s.partitions().iter().map(|p| p.high_watermark()).sum();
    println!(
        "records per partition {records}, partitions {partitions}, value {value} B, batch {per}: \
         filled in {fill_s:.1} s, {:.0} MiB on disk; restart{}{} {:.3} s; {kept} records back",
        on_disk as f64 / (1 << 20) as f64,
        if crash {
            " without recovery points"
        } else {
            ""
        },
        if cold { " from a cold page cache" } else { "" },
        restart.as_secs_f64()
    );
}

/// Removes the index file of each partition's newest segment (its
/// recovery point), under `dir/<stream>/<partition>/`.
fn remove_recovery_points(dir: &std::path::Path) {
    for stream in std::fs::read_dir(dir).expect("dir").flatten() {
        let Ok(parts) = std::fs::read_dir(stream.path()) else {
            continue;
        };
        for part in parts.flatten().filter(|p| p.path().is_dir()) {
            let mut logs: Vec<_> = std::fs::read_dir(part.path())
                .expect("partition")
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            if let Some(active) = logs.last() {
                let _ = std::fs::remove_file(active.with_extension("index"));
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                total += walk(&path);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}
