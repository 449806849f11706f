//! Recovery points: what a restart reads again and what it trusts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ferry_core::stream::batch::{self, Record};
use ferry_core::stream::{Stream, StreamConfig, Streams};
use ferry_core::{SystemClock, stream::LogStore};

use super::SegmentLogs;
use crate::FsyncPolicy;

fn open(dir: &Path) -> Arc<Streams> {
    let logs = SegmentLogs::open(dir, FsyncPolicy::Always, None).expect("open logs");
    let logs: Arc<dyn LogStore> = Arc::new(logs);
    Streams::open(Arc::new(SystemClock::new()), logs).expect("open streams")
}

/// A batch of `n` records; idempotent from sequence `seq` when given.
fn batch(n: usize, seq: Option<i32>) -> Bytes {
    let rs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; 200])),
            headers: Vec::new(),
        })
        .collect();
    batch::build(&rs, seq.map(|s| (42, 0, s)))
}

async fn append(s: &Stream, raw: &Bytes) -> u64 {
    let h = batch::validate(raw).expect("valid");
    let a = s.append(0, raw, &h, 0).expect("append");
    a.commit.wait().await.expect("durable");
    a.base_offset
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}", 1))
        .join("0")
        .join(format!("{:020}.log", 0))
}

/// Drops the streams as a crash would: no shutdown, so no recovery point
/// is written at the end (the writer had made every batch durable).
fn crash(streams: Arc<Streams>) {
    std::mem::forget(streams);
}

#[tokio::test]
async fn a_clean_shutdown_leaves_a_point_and_the_restart_reads_nothing_before_it() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let streams = open(dir.path());
        let s = streams
            .create("/", "t", 1, StreamConfig::default())
            .expect("create");
        for _ in 0..3 {
            append(&s, &batch(5, None)).await;
        }
        streams.close();
    }
    // Damage inside the first batch's records. A scan would refuse it (it
    // has data after it); the point says it was checked, so opening does
    // not read it: this proves the prefix is not scanned again.
    let seg = segment(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[40 + 100] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("write");
    let streams = open(dir.path());
    let s = streams.get("/", "t").expect("stream");
    let p = s.partition(0).expect("partition");
    assert_eq!(p.high_watermark(), 15);
    assert_eq!(append(&s, &batch(1, None)).await, 15, "offsets go on");
    let last = p.read(10, 1 << 20).expect("read the third batch");
    assert_eq!(
        batch::headers(&last.records)
            .next()
            .map(|(_, h)| h.base_offset),
        Some(10)
    );
}

#[tokio::test]
async fn after_a_crash_only_what_follows_the_point_is_scanned() {
    let dir = tempfile::tempdir().expect("dir");
    let streams = open(dir.path());
    let s = streams
        .create("/", "t", 1, StreamConfig::default())
        .expect("create");
    append(&s, &batch(5, Some(0))).await;
    append(&s, &batch(5, Some(5))).await;
    streams.checkpoint();
    append(&s, &batch(5, Some(10))).await;
    drop(s);
    crash(streams);
    // A torn write after the point: trimmed. And damage inside the
    // first batch's records, before the point: not read again (a scan of
    // the whole segment would refuse it).
    let seg = segment(dir.path());
    let mut whole = std::fs::read(&seg).expect("read");
    whole[40 + 100] ^= 0xff;
    let third = batch(5, Some(15));
    std::fs::write(&seg, [&whole[..], &third[..third.len() - 20]].concat()).expect("write");

    let streams = open(dir.path());
    let s = streams.get("/", "t").expect("stream");
    let p = s.partition(0).expect("partition");
    assert_eq!(
        p.high_watermark(),
        15,
        "the batch after the point was scanned in"
    );
    assert_eq!(
        std::fs::read(&seg).expect("read").len(),
        whole.len(),
        "the torn tail is trimmed"
    );
    // The producer's sequences came back from before and after the point:
    // a retry of either batch is a duplicate, not a second copy.
    for (retry, at) in [(batch(5, Some(5)), 5), (batch(5, Some(10)), 10)] {
        assert_eq!(
            append(&s, &retry).await,
            at,
            "a retry answers its first offset"
        );
    }
    assert_eq!(p.high_watermark(), 15, "retries were not appended again");
    assert_eq!(append(&s, &batch(5, Some(15))).await, 15);
}

#[tokio::test]
async fn a_point_past_the_end_of_its_segment_is_not_trusted() {
    let dir = tempfile::tempdir().expect("dir");
    let one = batch(5, None);
    {
        let streams = open(dir.path());
        let s = streams
            .create("/", "t", 1, StreamConfig::default())
            .expect("create");
        append(&s, &one).await;
        append(&s, &batch(5, None)).await;
        streams.close();
    }
    // A power loss took the second batch, which the point describes.
    let seg = segment(dir.path());
    let whole = std::fs::read(&seg).expect("read");
    std::fs::write(&seg, &whole[..40 + one.len()]).expect("write");
    let streams = open(dir.path());
    let s = streams.get("/", "t").expect("stream");
    assert_eq!(s.partition(0).expect("partition").high_watermark(), 5);
    assert_eq!(append(&s, &batch(1, None)).await, 5);
    // The file grows past the old point's length again; a crash before
    // any new point must not make the old one true.
    assert_eq!(append(&s, &batch(5, None)).await, 6);
    drop(s);
    crash(streams);
    let streams = open(dir.path());
    let s = streams.get("/", "t").expect("stream");
    assert_eq!(s.partition(0).expect("partition").high_watermark(), 11);
    assert_eq!(append(&s, &batch(1, None)).await, 11);
}
