use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::batch::{self, Record};
use super::*;
use crate::clock::{FakeClock, Timestamp};

fn records(n: usize, ts: i64) -> Bytes {
    let rs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
        })
        .collect();
    batch::build(&rs, None)
}

fn append(s: &Stream, p: u32, raw: &Bytes, now: i64) -> Appended {
    let h = batch::validate(raw).unwrap();
    s.append(p, raw, &h, now).unwrap()
}

#[test]
fn offsets_are_dense_and_reads_return_whole_batches() {
    let streams = Streams::in_memory();
    let s = streams
        .create("/", "t", 2, StreamConfig::default())
        .unwrap();
    assert!(matches!(
        streams.create("/", "t", 1, StreamConfig::default()),
        Err(StreamError::StreamExists(_))
    ));
    let a = append(&s, 0, &records(3, 100), 0);
    let b = append(&s, 0, &records(2, 200), 0);
    assert_eq!((a.base_offset, b.base_offset), (0, 3));
    let p = s.partition(0).unwrap();
    assert_eq!(p.high_watermark(), 5);
    let all = p.read(0, 1 << 20).unwrap();
    let offsets: Vec<i64> = batch::headers(&all.records)
        .map(|(_, h)| h.base_offset)
        .collect();
    assert_eq!(offsets, vec![0, 3]);
    // From the middle of a batch: that whole batch.
    let mid = p.read(4, 1).unwrap();
    assert_eq!(batch::records(&mid.records).unwrap()[1].offset, 4);
    // At least one batch even when max_bytes is smaller.
    assert_eq!(batch::headers(&p.read(0, 1).unwrap().records).count(), 1);
    assert!(p.read(5, 100).unwrap().records.is_empty());
    assert!(matches!(
        p.read(6, 100),
        Err(StreamError::OffsetOutOfRange {
            start: 0,
            end: 5,
            ..
        })
    ));
    assert_eq!(s.partition(1).unwrap().high_watermark(), 0);
    assert_eq!(p.offset_for_time(201).unwrap(), Some((4, 201)));
    assert_eq!(p.offset_for_time(0).unwrap(), Some((0, 100)));
    assert_eq!(p.offset_for_time(1000).unwrap(), None);
}

#[test]
fn idempotent_retries_get_the_original_offset() {
    let streams = Streams::in_memory();
    let s = streams
        .create("/", "t", 1, StreamConfig::default())
        .unwrap();
    let pid = streams.new_producer_id();
    let rs = vec![Record {
        offset: 0,
        timestamp: 1,
        key: None,
        value: Some(Bytes::from_static(b"x")),
        headers: vec![],
    }];
    let b0 = batch::build(&rs, Some((pid, 0, 0)));
    let b1 = batch::build(&rs, Some((pid, 0, 1)));
    let b3 = batch::build(&rs, Some((pid, 0, 3)));
    assert_eq!(append(&s, 0, &b0, 0).base_offset, 0);
    assert_eq!(append(&s, 0, &b1, 0).base_offset, 1);
    assert_eq!(
        append(&s, 0, &b0, 0).base_offset,
        0,
        "a retry is not appended twice"
    );
    assert_eq!(s.partition(0).unwrap().high_watermark(), 2);
    let h = batch::validate(&b3).unwrap();
    assert!(matches!(
        s.append(0, &b3, &h, 0),
        Err(StreamError::OutOfOrderSequence {
            expected: 2,
            got: 3,
            ..
        })
    ));
    assert_ne!(streams.new_producer_id(), pid);
}

#[test]
fn limits_and_bad_input_are_refused() {
    let streams = Streams::in_memory();
    assert!(matches!(
        streams.create("/", "", 1, StreamConfig::default()),
        Err(StreamError::InvalidName(_))
    ));
    assert!(matches!(
        streams.create("/", "x", 0, StreamConfig::default()),
        Err(StreamError::InvalidPartitions(0))
    ));
    streams.set_max_partitions(3);
    streams
        .create("/", "a", 2, StreamConfig::default())
        .unwrap();
    assert!(matches!(
        streams.create("/", "b", 2, StreamConfig::default()),
        Err(StreamError::TooManyPartitions(3))
    ));
    streams.delete("/", "a").unwrap();
    let config = StreamConfig {
        max_message_bytes: 100,
        ..StreamConfig::default()
    };
    let s = streams.create("/", "b", 2, config).unwrap();
    let big = records(20, 0);
    let h = batch::validate(&big).unwrap();
    assert!(matches!(
        s.append(0, &big, &h, 0),
        Err(StreamError::BatchTooLarge { .. })
    ));
    assert!(matches!(
        s.append(7, &big, &h, 0),
        Err(StreamError::UnknownPartition { .. })
    ));
    assert!(streams.get("/", "a").is_none());
    streams.add_partitions("/", "b", 3).unwrap();
    assert_eq!(s.partition_count(), 3);
    assert!(streams.add_partitions("/", "b", 2).is_err());
}

#[test]
fn log_append_time_restamps_batches() {
    let clock = FakeClock::new(Timestamp::from_millis(5_000));
    let streams = Streams::open(Arc::new(clock), Arc::new(MemoryLogs::new())).unwrap();
    let mut config = StreamConfig::default();
    config
        .set("message.timestamp.type", "LogAppendTime")
        .unwrap();
    let s = streams.create("/", "t", 1, config).unwrap();
    let a = append(&s, 0, &records(2, 1), 7_000);
    assert_eq!(a.log_append_time, Some(7_000));
    let got = s.partition(0).unwrap().read(0, 1 << 20).unwrap();
    assert!(
        batch::records(&got.records)
            .unwrap()
            .iter()
            .all(|r| r.timestamp == 7_000)
    );
}

#[test]
fn retention_moves_the_log_start() {
    let clock = FakeClock::new(Timestamp::from_millis(1_000_000));
    let streams = Streams::open(Arc::new(clock.clone()), Arc::new(MemoryLogs::new())).unwrap();
    let mut config = StreamConfig::default();
    config.set("retention.ms", "1000").unwrap();
    let s = streams.create("/", "t", 1, config).unwrap();
    append(&s, 0, &records(2, 1_000_000), 0);
    append(&s, 0, &records(2, 1_000_500), 0);
    append(&s, 0, &records(2, 1_002_000), 0);
    clock.advance(Duration::from_millis(1_800));
    streams.enforce_retention();
    let p = s.partition(0).unwrap();
    assert_eq!(
        p.log_start(),
        4,
        "the two old batches went, the newest stays"
    );
    assert!(matches!(
        p.read(0, 10),
        Err(StreamError::OffsetOutOfRange { .. })
    ));
    assert_eq!(p.high_watermark(), 6);
}

#[tokio::test]
async fn a_fetch_waiting_on_several_partitions_wakes_on_any() {
    let streams = Streams::in_memory();
    let s = streams
        .create("/", "t", 2, StreamConfig::default())
        .unwrap();
    let durables: Vec<(Arc<Durable>, u64)> = s
        .partitions()
        .iter()
        .map(|p| (Arc::clone(p.durable()), p.high_watermark()))
        .collect();
    let waiting = tokio::spawn(async move { any_arrival(&durables).await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    append(&s, 1, &records(1, 0), 0);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
}
