use std::sync::Arc;

use bytes::Bytes;
use ferry_core::stream::batch::{self, Record};
use ferry_core::stream::{Stream, StreamConfig, Streams};
use ferry_core::{SystemClock, stream::LogStore};

use super::{SegmentLogs, segment};
use crate::FsyncPolicy;

fn open(dir: &std::path::Path) -> Arc<Streams> {
    let logs: Arc<dyn LogStore> =
        Arc::new(SegmentLogs::open(dir, FsyncPolicy::Always, None).unwrap());
    Streams::open(Arc::new(SystemClock::new()), logs).unwrap()
}

fn batch_of(n: usize, size: usize, ts: i64) -> Bytes {
    let rs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'x'; size])),
            headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
        })
        .collect();
    batch::build(&rs, None)
}

async fn append(s: &Stream, p: u32, raw: &Bytes) -> u64 {
    let h = batch::validate(raw).unwrap();
    let a = s.append(p, raw, &h, 0).unwrap();
    a.commit.wait().await.unwrap();
    a.base_offset
}

fn offsets(b: &Bytes) -> Vec<i64> {
    batch::headers(b).map(|(_, h)| h.base_offset).collect()
}

/// A stream `t` of one partition holding `batches` batches of two records
/// (offsets 0, 2, ...), closed; the path of its partition's directory.
async fn seeded(dir: &std::path::Path, batches: usize) -> std::path::PathBuf {
    let streams = open(dir);
    let s = streams
        .create("/", "t", 1, StreamConfig::default())
        .unwrap();
    for _ in 0..batches {
        append(&s, 0, &batch_of(2, 100, 0)).await;
    }
    dir.join(format!("{:020}", 1)).join("0")
}

/// Why opening the streams at `dir` fails (it must).
fn refused(dir: &std::path::Path) -> String {
    let logs: Arc<dyn LogStore> =
        Arc::new(SegmentLogs::open(dir, FsyncPolicy::Always, None).unwrap());
    Streams::open(Arc::new(SystemClock::new()), logs)
        .err()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn batches_survive_a_restart_and_offsets_go_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let streams = open(dir.path());
        let s = streams
            .create("/", "events", 2, StreamConfig::default())
            .unwrap();
        assert_eq!(append(&s, 0, &batch_of(3, 10, 100)).await, 0);
        assert_eq!(append(&s, 0, &batch_of(2, 10, 200)).await, 3);
        assert_eq!(append(&s, 1, &batch_of(1, 10, 300)).await, 0);
    }
    let streams = open(dir.path());
    let s = streams.get("/", "events").unwrap();
    assert_eq!(s.partition_count(), 2);
    let p = s.partition(0).unwrap();
    assert_eq!(p.high_watermark(), 5);
    let got = p.read(0, 1 << 20).unwrap();
    assert_eq!(offsets(&got.records), vec![0, 3]);
    let rs = batch::records(
        &got.records
            .slice(..batch::headers(&got.records).nth(1).unwrap().0),
    )
    .unwrap();
    assert_eq!(rs[2].key.as_deref(), Some(&b"k2"[..]));
    assert_eq!(append(&s, 0, &batch_of(1, 10, 400)).await, 5);
    assert_eq!(p.offset_for_time(201).unwrap(), Some((4, 201)));
    streams.delete("/", "events").unwrap();
    drop(streams);
    let streams = open(dir.path());
    assert!(streams.get("/", "events").is_none());
}

#[tokio::test]
async fn segments_roll_index_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::default();
    config.set("segment.bytes", "1048576").unwrap();
    config.set("retention.bytes", "2097152").unwrap();
    let n = 60;
    {
        let streams = open(dir.path());
        let s = streams.create("/", "big", 1, config.clone()).unwrap();
        for i in 0..n {
            // ~64 KiB a batch: 16 to a segment.
            assert_eq!(
                append(&s, 0, &batch_of(4, 16 * 1024, i * 10)).await,
                (i * 4) as u64
            );
        }
    }
    let part_dir = dir.path().join(format!("{:020}", 1)).join("0");
    let logs = std::fs::read_dir(&part_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    let indexes = std::fs::read_dir(&part_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "index")
        })
        .count();
    assert!(logs >= 4, "{logs} segments");
    assert_eq!(
        indexes, logs,
        "every closed segment has an index, and the active one its recovery point"
    );
    let streams = open(dir.path());
    let s = streams.get("/", "big").unwrap();
    let p = s.partition(0).unwrap();
    assert_eq!(p.high_watermark(), (n * 4) as u64);
    // Reads from every segment, mid-batch and at segment edges.
    for off in [0u64, 1, 63, 64, 65, 130, (n * 4 - 1) as u64] {
        let got = p.read(off, 1).unwrap();
        let h = batch::headers(&got.records).next().unwrap().1;
        assert!(
            h.base_offset as u64 <= off && off <= h.last_offset() as u64,
            "{off}"
        );
    }
    let many = p.read(0, 300 * 1024).unwrap();
    assert_eq!(
        offsets(&many.records).len(),
        4,
        "whole batches up to max_bytes"
    );
    assert_eq!(p.offset_for_time(252).unwrap().map(|x| x.0), Some(102));
    assert_eq!(p.offset_for_time(255).unwrap().map(|x| x.0), Some(104));
    streams.enforce_retention();
    assert!(p.log_start() > 0);
    assert!(
        p.size() <= 2 * 1024 * 1024 + 1024 * 1024 + 200 * 1024,
        "{}",
        p.size()
    );
    assert!(matches!(
        p.read(0, 10),
        Err(ferry_core::stream::StreamError::OffsetOutOfRange { .. })
    ));
    let start = p.log_start();
    drop(streams);
    let streams = open(dir.path());
    assert_eq!(
        streams
            .get("/", "big")
            .unwrap()
            .partition(0)
            .unwrap()
            .log_start(),
        start
    );
}

#[tokio::test]
async fn a_torn_tail_is_trimmed_and_damage_before_data_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seg = seeded(dir.path(), 2).await.join(format!("{:020}.log", 0));
    let whole = std::fs::read(&seg).unwrap();
    // Cut the second batch short, as a crash mid-write would.
    std::fs::write(&seg, &whole[..whole.len() - 30]).unwrap();
    {
        let streams = open(dir.path());
        let p = streams.get("/", "t").unwrap().partition(0).unwrap();
        assert_eq!(p.high_watermark(), 2);
        let s = streams.get("/", "t").unwrap();
        assert_eq!(
            append(&s, 0, &batch_of(1, 10, 0)).await,
            2,
            "offsets continue from what was durable"
        );
    }
    // Damage the first batch with data after it: refused, not truncated
    // (by a scan: without the recovery point the clean stop left).
    std::fs::remove_file(seg.with_extension("index")).unwrap();
    let mut bad = std::fs::read(&seg).unwrap();
    bad[80] ^= 0xff;
    std::fs::write(&seg, &bad).unwrap();
    let err = refused(dir.path());
    assert!(err.contains("corrupt"), "{err}");
}

#[tokio::test]
async fn many_partitions_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let streams = open(dir.path());
    let s = streams
        .create("/", "wide", 8, StreamConfig::default())
        .unwrap();
    let raw = batch_of(1, 100, 0);
    let h = batch::validate(&raw).unwrap();
    let mut commits = Vec::new();
    for round in 0..20u64 {
        for p in 0..8 {
            let a = s.append(p, &raw, &h, 0).unwrap();
            assert_eq!(a.base_offset, round);
            commits.push(a.commit);
        }
    }
    for c in commits {
        c.wait().await.unwrap();
    }
    for p in s.partitions() {
        assert_eq!(p.high_watermark(), 20);
    }
}

#[tokio::test]
async fn deleted_records_stay_deleted_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::default();
    config.set("segment.bytes", "1048576").unwrap();
    {
        let streams = open(dir.path());
        let s = streams.create("/", "d", 1, config).unwrap();
        // 12 batches of 10 records, about 200 KiB each: a few segments.
        for i in 0..12 {
            append(&s, 0, &batch_of(10, 20_000, i * 10)).await;
        }
        let p = s.partition(0).unwrap();
        let files = |d: &std::path::Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "log")
                })
                .count()
        };
        let pdir = dir.path().join(format!("{:020}", s.id())).join("0");
        let before = files(&pdir);
        assert!(before > 2, "{before} segments");
        // Mid-batch and mid-segment: the start is exactly the offset asked.
        assert_eq!(p.delete_records(Some(75)).unwrap(), 75);
        assert!(files(&pdir) < before, "whole segments before 75 went");
        assert!(p.read(74, 1 << 20).is_err());
        let got = p.read(75, 1 << 20).unwrap();
        assert_eq!(offsets(&got.records).first(), Some(&70));
        // Past the end is refused; below the start changes nothing.
        assert!(p.delete_records(Some(121)).is_err());
        assert_eq!(p.delete_records(Some(10)).unwrap(), 75);
    }
    let streams = open(dir.path());
    let p = streams.get("/", "d").unwrap().partition(0).unwrap();
    assert_eq!((p.log_start(), p.high_watermark()), (75, 120));
    assert!(p.read(74, 1 << 20).is_err());
    // Everything: the start is the end, and appends go on from there.
    assert_eq!(p.delete_records(None).unwrap(), 120);
    drop(streams);
    let streams = open(dir.path());
    let s = streams.get("/", "d").unwrap();
    assert_eq!(s.partition(0).unwrap().log_start(), 120);
    assert_eq!(append(&s, 0, &batch_of(1, 10, 500)).await, 120);
}

#[tokio::test]
async fn segments_a_crash_kept_behind_the_start_go_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::default();
    config.set("segment.bytes", "1048576").unwrap();
    let pdir;
    let before;
    {
        let streams = open(dir.path());
        let s = streams.create("/", "c", 1, config).unwrap();
        for i in 0..12 {
            append(&s, 0, &batch_of(10, 20_000, i * 10)).await;
        }
        pdir = dir.path().join(format!("{:020}", s.id())).join("0");
        before = segment::list(&pdir).unwrap().len();
        // As if DeleteRecords had written its start and the process had
        // died before unlinking anything.
        super::start::write(&pdir, 95).unwrap();
    }
    let streams = open(dir.path());
    let p = streams.get("/", "c").unwrap().partition(0).unwrap();
    assert_eq!(p.log_start(), 95);
    let after = segment::list(&pdir).unwrap();
    assert!(
        after.len() < before,
        "{} of {before} segments kept",
        after.len()
    );
    assert!(
        after[0] <= 95 && after.get(1).is_none_or(|b| *b > 95),
        "{after:?}"
    );
    // A timestamp before everything answers the start, not a deleted record.
    assert_eq!(p.offset_for_time(0).unwrap().map(|(o, _)| o), Some(95));
}

#[tokio::test]
async fn a_segment_a_crash_cut_short_while_made_is_made_again() {
    // A roll to offset 2 that a crash cut short, in each way it can be
    // cut: no bytes, part of the header, a header's length of zeros.
    for left in [
        vec![],
        segment::header(1, 0, 2, false)[..17].to_vec(),
        vec![0u8; 40],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let part = seeded(dir.path(), 1).await;
        std::fs::write(part.join(format!("{:020}.log", 2)), &left).unwrap();
        let streams = open(dir.path());
        let s = streams.get("/", "t").unwrap();
        let p = s.partition(0).unwrap();
        assert_eq!(p.high_watermark(), 2, "left {} bytes", left.len());
        // Made again: it takes the next batch, which survives a restart.
        assert_eq!(append(&s, 0, &batch_of(1, 10, 0)).await, 2);
        drop((p, s, streams));
        let streams = open(dir.path());
        let p = streams.get("/", "t").unwrap().partition(0).unwrap();
        assert_eq!(offsets(&p.read(0, 1 << 20).unwrap().records), vec![0]);
        assert_eq!(offsets(&p.read(2, 1 << 20).unwrap().records), vec![2]);
        assert_eq!(p.high_watermark(), 3);
    }
    // Damage is still damage: a segment with a recovery point cut below
    // its header is refused (the clean stop left the point)...
    let dir = tempfile::tempdir().unwrap();
    let seg = seeded(dir.path(), 1).await.join(format!("{:020}.log", 0));
    assert!(seg.with_extension("index").exists(), "a clean stop's point");
    std::fs::write(&seg, [0u8; 10]).unwrap();
    let err = refused(dir.path());
    assert!(err.contains("corrupt"), "{err}");
    // ...and zeros where a header was, with data after them.
    let dir = tempfile::tempdir().unwrap();
    let seg = seeded(dir.path(), 1).await.join(format!("{:020}.log", 0));
    let mut bad = std::fs::read(&seg).unwrap();
    bad[..40].fill(0);
    std::fs::write(&seg, &bad).unwrap();
    let err = refused(dir.path());
    assert!(err.contains("corrupt"), "{err}");
}
