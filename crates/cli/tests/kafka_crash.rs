//! Crash test over Kafka: idempotent producers send with acks=all and
//! record what was acknowledged; a group commits offsets; ferry is killed
//! with SIGKILL at a random moment and restarted on the same data. After
//! each restart every acknowledged record is at its offset, every
//! partition reads densely from its start to its end (none is corrupt),
//! and the group's committed offsets are where they were. Bounded: a fixed
//! number of cycles, each with time limits.

mod common;
mod kafka_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use common::{Ferry, Rand};
use kafka_support::{config, create_topic};

/// An acknowledged record: partition, offset, value.
type Acked = (i32, i64, Vec<u8>);

const CYCLES: usize = 8;
const PRODUCERS: usize = 3;
const PARTITIONS: i32 = 4;

fn start(data: &std::path::Path) -> Ferry {
    kafka_support::start(data, &[])
}

/// (partition, offset) -> value of every record read back, reading each
/// partition from its start to its end; checks the offsets are dense.
fn read_all(ferry: &Ferry, cycle: usize) -> HashMap<(i32, i64), Vec<u8>> {
    let c: BaseConsumer = config(ferry)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut next = HashMap::new();
    let mut high = HashMap::new();
    for p in 0..PARTITIONS {
        let (lo, hi) = c
            .fetch_watermarks("crash", p, Duration::from_secs(10))
            .expect("watermarks");
        tpl.add_partition_offset("crash", p, Offset::Offset(lo))
            .expect("tpl");
        next.insert(p, lo);
        high.insert(p, hi);
    }
    c.assign(&tpl).expect("assign");
    let mut out = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while next.iter().any(|(p, n)| n < &high[p]) {
        assert!(
            Instant::now() < deadline,
            "cycle {cycle}: stuck at {next:?} of {high:?}"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let at = next.get_mut(&p).expect("assigned");
                assert_eq!(m.offset(), *at, "cycle {cycle}: partition {p} is not dense");
                out.insert((p, *at), m.payload().unwrap_or_default().to_vec());
                *at += 1;
            }
            Some(Err(e)) => panic!("cycle {cycle}: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_and_commits_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ferry = start(dir.path());
    // Small segments: rolls happen under the crash too.
    create_topic(&ferry, "crash", PARTITIONS, &[("segment.bytes", "1048576")]).await;
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut committed: Vec<i64> = vec![0; PARTITIONS as usize];
    let mut rand = Rand::new(0x5eed_cafe);
    for cycle in 0..CYCLES {
        // The group commits where it is (a made-up position per partition).
        let group: BaseConsumer = config(&ferry)
            .set("group.id", "crash-group")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for (p, at) in committed.iter_mut().enumerate() {
            *at += 1 + rand.below(5) as i64;
            tpl.add_partition_offset("crash", p as i32, Offset::Offset(*at))
                .expect("tpl");
        }
        group.commit(&tpl, CommitMode::Sync).expect("commit");
        drop(group);

        let mut tasks = Vec::new();
        for w in 0..PRODUCERS {
            let p: FutureProducer = config(&ferry)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "1")
                .set("message.timeout.ms", "2000")
                .set("request.timeout.ms", "2000")
                .create()
                .expect("producer");
            let acked = Arc::clone(&acked);
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let value = format!("c{cycle}-w{w}-{n}-{}", "x".repeat(200));
                    let key = format!("k{}", n % 13);
                    let sent = p
                        .send(
                            FutureRecord::to("crash").key(&key).payload(&value),
                            Duration::from_secs(2),
                        )
                        .await;
                    match sent {
                        Ok(d) => acked.lock().expect("acked").push((
                            d.partition,
                            d.offset,
                            value.into_bytes(),
                        )),
                        Err(_) => break, // the broker was killed
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200 + rand.below(600))).await;
        ferry.kill();
        // Sends still in flight are not waited for: only what was
        // acknowledged before the kill is checked.
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }

        ferry = start(dir.path());
        let found = read_all(&ferry, cycle);
        let acked = acked.lock().expect("acked").clone();
        assert!(!acked.is_empty(), "cycle {cycle}: nothing was acknowledged");
        for (p, offset, value) in &acked {
            assert_eq!(
                found.get(&(*p, *offset)),
                Some(value),
                "cycle {cycle}: acknowledged record at {p}/{offset} lost or changed"
            );
        }
        let group: BaseConsumer = config(&ferry)
            .set("group.id", "crash-group")
            .create()
            .expect("consumer");
        let mut ask = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            ask.add_partition("crash", p);
        }
        let got = group
            .committed_offsets(ask, Duration::from_secs(10))
            .expect("committed");
        let got: Vec<i64> = got
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                other => panic!("cycle {cycle}: committed {other:?}"),
            })
            .collect();
        assert_eq!(got, committed, "cycle {cycle}: committed offsets moved");
    }
}
