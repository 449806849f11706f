//! Streams sealed at rest: what reaches the disk, what opens, and what
//! does not.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferry_core::stream::batch::{self, Record};
use ferry_core::stream::{Stream, StreamConfig, Streams};
use ferry_core::{SystemClock, stream::LogStore};

use super::SegmentLogs;
use crate::FsyncPolicy;
use crate::seal::MasterKey;

const MARK: &[u8] = b"plaintext-mark";

fn open(dir: &Path, key: Option<&Arc<MasterKey>>) -> Result<Arc<Streams>, String> {
    let logs =
        SegmentLogs::open(dir, FsyncPolicy::Always, key.cloned()).map_err(|e| e.to_string())?;
    let logs: Arc<dyn LogStore> = Arc::new(logs);
    Streams::open(Arc::new(SystemClock::new()), logs).map_err(|e| e.to_string())
}

fn batch_of(n: usize, ts: i64) -> Bytes {
    let rs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from([MARK, &vec![b'v'; 8 * 1024]].concat())),
            headers: vec![("h".into(), Some(Bytes::from_static(MARK)))],
        })
        .collect();
    batch::build(&rs, None)
}

async fn append(s: &Stream, raw: &Bytes) -> u64 {
    let h = batch::validate(raw).expect("valid");
    let a = s.append(0, raw, &h, 0).expect("append");
    a.commit.wait().await.expect("durable");
    a.base_offset
}

/// Every record of partition 0, read one batch at a time.
fn read_all(s: &Stream) -> Vec<Record> {
    let p = s.partition(0).expect("partition");
    let mut out = Vec::new();
    let mut at = p.log_start();
    while at < p.high_watermark() {
        let got = p.read(at, 1).expect("read");
        let (_, h) = batch::headers(&got.records).next().expect("a batch");
        let one = got.records.slice(..h.size);
        assert!(
            batch::validate(&one).is_ok(),
            "a read hands back a valid batch"
        );
        out.extend(batch::records(&one).expect("records"));
        at = h.last_offset() as u64 + 1;
    }
    out
}

/// The segment files of partition 0 of stream 1, and whether each holds
/// the mark in the clear.
fn segments_in_clear(dir: &Path) -> Vec<bool> {
    let part = dir.join(format!("{:020}", 1)).join("0");
    let mut logs: Vec<_> = std::fs::read_dir(&part)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.iter()
        .map(|p| {
            std::fs::read(p)
                .expect("read")
                .windows(MARK.len())
                .any(|w| w == MARK)
        })
        .collect()
}

fn small_segments() -> StreamConfig {
    let mut c = StreamConfig::default();
    c.set("segment.bytes", "1048576").expect("segment.bytes");
    c
}

#[tokio::test]
async fn a_sealed_stream_keeps_no_plaintext_and_reads_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    {
        let streams = open(dir.path(), Some(&key)).expect("open");
        let s = streams
            .create("/", "secret", 1, small_segments())
            .expect("create");
        for i in 0..40 {
            // 8 records of ~8 KiB: a segment rolls every ~16 batches.
            assert_eq!(append(&s, &batch_of(8, i * 100)).await, (i * 8) as u64);
        }
        assert_eq!(read_all(&s).len(), 320, "read before a restart");
    }
    let clear = segments_in_clear(dir.path());
    assert!(clear.len() >= 3, "{} segments", clear.len());
    assert!(
        clear.iter().all(|c| !c),
        "a segment holds the mark in the clear"
    );

    let streams = open(dir.path(), Some(&key)).expect("reopen with the key");
    let s = streams.get("/", "secret").expect("stream");
    let rs = read_all(&s);
    assert_eq!(rs.len(), 320);
    assert!(
        rs.iter()
            .all(|r| r.value.as_deref().is_some_and(|v| v.starts_with(MARK)))
    );
    assert_eq!(rs[3].headers[0].1.as_deref(), Some(MARK));
    let p = s.partition(0).expect("partition");
    assert_eq!(
        p.offset_for_time(1_203).expect("by time"),
        Some((99, 1_203))
    );
    drop((s, p, streams));

    let without = open(dir.path(), None)
        .err()
        .expect("opened without its key");
    assert!(without.contains("encrypted"), "{without}");
    let other = Arc::new(MasterKey::generate().expect("key"));
    let wrong = open(dir.path(), Some(&other))
        .err()
        .expect("opened with another key");
    assert!(wrong.contains("different key"), "{wrong}");
}

#[tokio::test]
async fn a_key_given_later_seals_new_segments_and_the_clear_ones_stay_readable() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let streams = open(dir.path(), None).expect("open");
        let s = streams
            .create("/", "secret", 1, small_segments())
            .expect("create");
        append(&s, &batch_of(2, 0)).await;
    }
    let key = Arc::new(MasterKey::generate().expect("key"));
    {
        let streams = open(dir.path(), Some(&key)).expect("open with a key");
        let s = streams.get("/", "secret").expect("stream");
        assert_eq!(append(&s, &batch_of(2, 10)).await, 2);
        assert_eq!(read_all(&s).len(), 4);
    }
    assert_eq!(segments_in_clear(dir.path()), vec![true, false]);
    let streams = open(dir.path(), Some(&key)).expect("reopen");
    assert_eq!(
        read_all(&streams.get("/", "secret").expect("stream")).len(),
        4
    );
    drop(streams);
    assert!(
        open(dir.path(), None).is_err(),
        "a sealed segment needs its key"
    );
}

#[tokio::test]
async fn a_fresh_sealed_partition_starts_sealed_and_retention_forgets_its_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    let mut config = small_segments();
    config
        .set("retention.bytes", "1048576")
        .expect("retention.bytes");
    let streams = open(dir.path(), Some(&key)).expect("open");
    let s = streams.create("/", "short", 1, config).expect("create");
    for i in 0..60 {
        append(&s, &batch_of(8, i * 100)).await;
    }
    streams.enforce_retention();
    let p = s.partition(0).expect("partition");
    assert!(p.log_start() > 0);
    let start = p.log_start();
    drop((p, s, streams));
    // The next start drops the keys of the segments retention unlinked.
    let streams = open(dir.path(), Some(&key)).expect("reopen");
    let s = streams.get("/", "short").expect("stream");
    let p = s.partition(0).expect("partition");
    assert_eq!(p.log_start(), start);
    let part = dir.path().join(format!("{:020}", 1)).join("0");
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("keys.json")).expect("keys.json"))
            .expect("json");
    let wrapped = keys.to_string();
    let on_disk = super::segment::list(&part).expect("list");
    assert!(!on_disk.contains(&0), "the first segment went");
    assert!(
        !wrapped.contains("\"0\""),
        "the gone segment's data key is still kept: {wrapped}"
    );
    for base in on_disk {
        assert!(
            wrapped.contains(&format!("\"{base}\"")),
            "no data key for segment {base}"
        );
    }
    assert_eq!(
        read_all(&s).first().map(|r| r.offset as u64),
        Some(p.log_start())
    );
}

#[test]
fn a_sealed_segment_whose_data_key_is_gone_is_refused_at_open() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    rt.block_on(async {
        let streams = open(dir.path(), Some(&key)).expect("open");
        let s = streams
            .create("/", "secret", 1, StreamConfig::default())
            .expect("create");
        append(&s, &batch_of(1, 0)).await;
    });
    let part = dir.path().join(format!("{:020}", 1)).join("0");
    std::fs::remove_file(part.join("keys.json")).expect("remove keys.json");
    let err = open(dir.path(), Some(&key))
        .err()
        .expect("opened without the data key");
    assert!(err.contains("no data key"), "{err}");
}
