//! The streams engine's durable append (acks=all) beside the disk's own
//! append+fsync at the same batch size, measured in the same run; then
//! reads of what was written, from the page cache.
//!
//! `cargo bench -p ferry-storage --bench stream_append`
//! Environment: FERRY_BENCH_SECS (default 5) per scenario, FERRY_BENCH_DIR
//! (default: the system temp dir), FERRY_BENCH_RECORDS (records per batch,
//! default 100), FERRY_BENCH_VALUE (bytes per record, default 1024),
//! FERRY_BENCH_WINDOW (batches each producer keeps in flight, default 5:
//! librdkafka's max.in.flight).
//!
//! - ferry: one producer task per partition appends a batch through
//!   `Stream::append` and keeps W appended and not yet durable; the log
//!   writer syncs every file it wrote once per round (fsync `always`, as
//!   acks=all needs). "sealed" is the same with an encryption key.
//! - raw: the best any broker could do for P producers with W in flight:
//!   one write of P x W batches' bytes to one file, one `fdatasync`,
//!   repeated (ferry writes P files and syncs each).
//! - read: every partition read back from offset 0 in 1 MiB reads, right
//!   after it was written (so from the page cache), records opened only
//!   for sealed partitions, as a fetch hands batches back.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_core::clock::SystemClock;
use ferry_core::stream::batch::{self, Record};
use ferry_core::stream::{LogStore, StreamConfig, Streams};
use ferry_storage::log::SegmentLogs;
use ferry_storage::{FsyncPolicy, MasterKey};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("FERRY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("ferry-stream-bench-{}", std::process::id()))
}

fn raw(dir: &Path, batches_per_sync: usize, batch_len: usize, run: Duration) -> f64 {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    let chunk = vec![7u8; batches_per_sync * batch_len];
    let start = Instant::now();
    let mut batches = 0u64;
    while start.elapsed() < run {
        f.write_all(&chunk).expect("write");
        f.sync_data().expect("fdatasync");
        batches += batches_per_sync as u64;
    }
    let rate = batches as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
    rate
}

struct Run {
    batches_per_s: f64,
    read_bytes_per_s: f64,
}

fn ferry(
    dir: &Path,
    partitions: u32,
    window: usize,
    raw_batch: &Bytes,
    key: Option<Arc<MasterKey>>,
    run: Duration,
) -> Run {
    let logs = SegmentLogs::open(dir, FsyncPolicy::Always, key).expect("logs");
    let logs: Arc<dyn LogStore> = Arc::new(logs);
    let streams = Streams::open(Arc::new(SystemClock::new()), logs).expect("streams");
    let s = streams
        .create("/", "bench", partitions, StreamConfig::default())
        .expect("create");
    let h = batch::validate(raw_batch).expect("valid");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..partitions)
            .map(|p| {
                let (s, done, stop, raw) = (
                    Arc::clone(&s),
                    Arc::clone(&done),
                    Arc::clone(&stop),
                    raw_batch.clone(),
                );
                tokio::spawn(async move {
                    let mut in_flight = std::collections::VecDeque::with_capacity(window);
                    while !stop.load(Ordering::Relaxed) {
                        let a = s.append(p, &raw, &h, 0).expect("append");
                        in_flight.push_back(a.commit);
                        if in_flight.len() == window
                            && let Some(oldest) = in_flight.pop_front()
                        {
                            oldest.wait().await.expect("durable");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for c in in_flight {
                        c.wait().await.expect("durable");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(run).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("producer");
        }
    });
    let batches_per_s = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    // Read everything back, 1 MiB at a time, as a consumer's fetches do.
    let read_start = Instant::now();
    let mut bytes = 0u64;
    for p in s.partitions() {
        let mut at = 0;
        while at < p.high_watermark() {
            let got = p.read(at, 1 << 20).expect("read");
            let last = batch::headers(&got.records)
                .last()
                .map(|(_, h)| h.last_offset() as u64)
                .expect("a batch");
            bytes += got.records.len() as u64;
            at = last + 1;
        }
    }
    let read_bytes_per_s = bytes as f64 / read_start.elapsed().as_secs_f64();
    drop(s);
    streams.close();
    drop(streams);
    // Each run starts on a quiet disk: its files gone, the writeback done.
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
    Run {
        batches_per_s,
        read_bytes_per_s,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let run = Duration::from_secs(env("FERRY_BENCH_SECS", 5));
    let per = env("FERRY_BENCH_RECORDS", 100) as usize;
    let value = env("FERRY_BENCH_VALUE", 1024) as usize;
    let window = env("FERRY_BENCH_WINDOW", 5).max(1) as usize;
    let records: Vec<Record> = (0..per)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value])),
            headers: Vec::new(),
        })
        .collect();
    let raw_batch = batch::build(&records, None);
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    println!(
        "batches of {per} records of {value} B ({} B a batch), {window} in flight per producer, {} s per run",
        raw_batch.len(),
        run.as_secs()
    );
    println!();
    println!(
        "| partitions | raw write+fdatasync records/s | ferry acks=all records/s | ferry / raw | sealed records/s | sealed / raw | read GB/s | sealed read GB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for partitions in [1u32, 8] {
        let raw_rate = raw(&dir, partitions as usize * window, raw_batch.len(), run);
        let key = Arc::new(MasterKey::generate().expect("key"));
        let run_clear = || {
            ferry(
                &dir.join(format!("clear-{partitions}")),
                partitions,
                window,
                &raw_batch,
                None,
                run,
            )
        };
        let run_sealed = || {
            ferry(
                &dir.join(format!("sealed-{partitions}")),
                partitions,
                window,
                &raw_batch,
                Some(Arc::clone(&key)),
                run,
            )
        };
        // Alternate which goes first, so the disk's state after one run
        // does not always favour the same one.
        let (clear, sealed) = if partitions == 1 {
            let c = run_clear();
            (c, run_sealed())
        } else {
            let s = run_sealed();
            (run_clear(), s)
        };
        let r = per as f64;
        println!(
            "| {partitions} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.2} | {:.2} |",
            raw_rate * r,
            clear.batches_per_s * r,
            100.0 * clear.batches_per_s / raw_rate,
            sealed.batches_per_s * r,
            100.0 * sealed.batches_per_s / raw_rate,
            clear.read_bytes_per_s / 1e9,
            sealed.read_bytes_per_s / 1e9,
        );
    }
    // What sealing alone costs, on one core: AES-256-GCM over batches of
    // this size (with the copies the keyring makes).
    let ring_dir = dir.join("ring");
    std::fs::create_dir_all(&ring_dir).expect("ring dir");
    let key = MasterKey::generate().expect("key");
    let ring = ferry_storage::Keyring::open(&ring_dir, Some(&key), &Default::default(), &[])
        .expect("keyring")
        .expect("a keyring");
    ring.ensure(None, 0).expect("data key");
    let started = Instant::now();
    let mut sealed_bytes = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        let out = ring.seal_bound(0, b"aad", &raw_batch).expect("seal");
        sealed_bytes += out.len() as u64;
    }
    println!();
    println!(
        "sealing alone: {:.2} GB/s on one core",
        sealed_bytes as f64 / started.elapsed().as_secs_f64() / 1e9
    );
    let _ = std::fs::remove_dir_all(&dir);
}
