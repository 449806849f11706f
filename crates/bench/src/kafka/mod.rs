//! The Kafka load, for any Kafka-protocol broker: producers send
//! uncompressed RecordBatch v2 batches of `--batch` records with
//! `--acks`, `--confirm` requests in flight, over the partitions of their
//! topic in turn; consumers fetch their share of a topic's partitions
//! from offset 0 (topics are made fresh for each run) with long polls.
//! Each record's value starts with the stamp (send time, producer,
//! sequence), so latency is end to end and loss is counted as for the
//! other protocols.

mod client;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::stream::batch::{self, Record};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::stats::{Counters, Ledger, latency_histogram, read_stamp, stamp};
use crate::{BenchError, ConsumerResult, Ctx, ProducerResult};
use client::Conn;

pub const DEFAULT_URL: &str = "127.0.0.1:9092";

/// The versions used: ones both Kafka 4 and older brokers serve, and the
/// last that name topics (newer Fetch and Produce name topic ids).
const PRODUCE: i16 = 9;
const FETCH: i16 = 12;
const CREATE_TOPICS: i16 = 5;
const DELETE_TOPICS: i16 = 4;
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Produce requests in flight when `--confirm` is 0 (librdkafka's default).
const DEFAULT_IN_FLIGHT: usize = 5;

fn address(url: &str) -> &str {
    url.strip_prefix("kafka://")
        .unwrap_or(url)
        .trim_end_matches('/')
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Kafka's acks: all (-1), 1 or 0.
fn acks(text: &str) -> Result<i16, BenchError> {
    match text {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(BenchError::Usage(format!(
            "--acks must be all, 1 or 0, not {other:?}"
        ))),
    }
}

pub async fn setup(ctx: &Ctx) -> Result<(), BenchError> {
    let opts = &ctx.opts;
    acks(&opts.acks)?;
    let partitions = i32::try_from(opts.partitions)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| BenchError::Usage("--partitions must be at least 1".into()))?;
    let mut c = Conn::connect(address(&ctx.url)).await?;
    let topics = (0..opts.queues)
        .map(|i| {
            CreatableTopic::default()
                .with_name(topic(&opts.queue_name(i)))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(30_000);
    let res: CreateTopicsResponse = c.call(ApiKey::CreateTopics, CREATE_TOPICS, &req).await?;
    for t in res.topics {
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            return Err(BenchError::Protocol(format!(
                "creating topic {}: error {} {}",
                t.name.0,
                t.error_code,
                t.error_message.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

pub async fn teardown(ctx: &Ctx) -> Result<(), BenchError> {
    let opts = &ctx.opts;
    let mut c = Conn::connect(address(&ctx.url)).await?;
    let req = DeleteTopicsRequest::default()
        .with_topic_names(
            (0..opts.queues)
                .map(|i| topic(&opts.queue_name(i)))
                .collect(),
        )
        .with_timeout_ms(30_000);
    let _: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, DELETE_TOPICS, &req).await?;
    Ok(())
}

/// A produce request waiting for its answer.
struct InFlight {
    first_seq: u64,
    records: u64,
    sent_ns: u64,
}

pub async fn producer(ctx: Ctx, id: u16, name: String) -> Result<ProducerResult, BenchError> {
    let opts = &ctx.opts;
    let acks = acks(&opts.acks)?;
    let mut c = Conn::connect(address(&ctx.url)).await?;
    let window = if opts.confirm == 0 {
        DEFAULT_IN_FLIGHT
    } else {
        opts.confirm
    };
    let per_batch = opts.batch.max(1) as u64;
    let partitions = opts.partitions.max(1);
    let limit = opts.producer_count(id as usize);
    let rate = opts.producer_rate();
    let mut body = vec![0u8; opts.size];
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut accepted = Ledger::default();
    let mut latency = latency_histogram();
    let mut seq: u64 = 0;
    let mut next_partition = u32::from(id) % partitions;
    let started = ctx.clock.elapsed_s();
    loop {
        if *ctx.stop.borrow() || limit.is_some_and(|l| seq >= l) {
            break;
        }
        if acks != 0 && in_flight.len() >= window {
            settle(
                &mut c,
                &ctx,
                id,
                &mut in_flight,
                &mut accepted,
                &mut latency,
            )
            .await?;
            continue;
        }
        let mut n = per_batch;
        if let Some(l) = limit {
            n = n.min(l - seq);
        }
        if rate > 0.0 {
            let due = ((ctx.clock.elapsed_s() - started) * rate) as u64;
            n = n.min(due.saturating_sub(seq));
            if n == 0 {
                let next_at = started + (seq + 1) as f64 / rate;
                let pause =
                    Duration::from_secs_f64((next_at - ctx.clock.elapsed_s()).clamp(0.0, 0.01));
                if in_flight.is_empty() {
                    tokio::time::sleep(pause).await;
                } else if let Ok(r) = tokio::time::timeout(
                    pause,
                    settle(
                        &mut c,
                        &ctx,
                        id,
                        &mut in_flight,
                        &mut accepted,
                        &mut latency,
                    ),
                )
                .await
                {
                    r?;
                }
                continue;
            }
        }
        let now = ctx.clock.now_ns();
        let wall_ms = wall_ms();
        let records: Vec<Record> = (0..n)
            .map(|i| {
                stamp(&mut body, id, seq + i, now);
                Record {
                    offset: i as i64,
                    timestamp: wall_ms,
                    key: None,
                    value: Some(Bytes::copy_from_slice(&body)),
                    headers: Vec::new(),
                }
            })
            .collect();
        let partition = next_partition;
        next_partition = (next_partition + 1) % partitions;
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic(&name))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition as i32)
                            .with_records(Some(batch::build(&records, None))),
                    ]),
            ]);
        c.queue(ApiKey::Produce, PRODUCE, &req)?;
        if acks == 0 {
            c.unanswered();
        }
        c.flush().await?;
        Counters::add(&ctx.counters.sent, n);
        if acks == 0 {
            // No answer comes: what was written counts as taken.
            for s in seq..seq + n {
                accepted.record(id, s);
            }
            Counters::add(&ctx.counters.confirmed, n);
        } else {
            in_flight.push_back(InFlight {
                first_seq: seq,
                records: n,
                sent_ns: now,
            });
        }
        seq += n;
    }
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while !in_flight.is_empty() {
            settle(
                &mut c,
                &ctx,
                id,
                &mut in_flight,
                &mut accepted,
                &mut latency,
            )
            .await?;
        }
        Ok::<(), BenchError>(())
    })
    .await;
    if let Ok(Err(e)) = drained {
        return Err(e);
    }
    let unconfirmed = in_flight.iter().map(|f| f.records).sum();
    Ok(ProducerResult {
        sent: seq,
        accepted,
        unconfirmed,
        confirm_latency: (acks != 0).then_some(latency),
    })
}

/// Takes the oldest request's answer.
async fn settle(
    c: &mut Conn,
    ctx: &Ctx,
    id: u16,
    in_flight: &mut VecDeque<InFlight>,
    accepted: &mut Ledger,
    latency: &mut hdrhistogram::Histogram<u64>,
) -> Result<(), BenchError> {
    let res: ProduceResponse = c.recv(ApiKey::Produce, PRODUCE).await?;
    let Some(f) = in_flight.pop_front() else {
        return Err(BenchError::Protocol("an answer to no request".into()));
    };
    let error = res
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| p.error_code)
        .next()
        .unwrap_or(-1);
    if error == 0 {
        for s in f.first_seq..f.first_seq + f.records {
            accepted.record(id, s);
        }
        Counters::add(&ctx.counters.confirmed, f.records);
        let us = ctx.clock.now_ns().saturating_sub(f.sent_ns) / 1000;
        let _ = latency.record(us.max(1));
    } else {
        tracing::warn!(error, "a produce request was refused");
        Counters::add(&ctx.counters.nacked, f.records);
    }
    Ok(())
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Consumer `index` reads its share of its topic's partitions: the
/// consumers of one topic split them round-robin.
pub async fn consumer(ctx: Ctx, index: usize) -> Result<ConsumerResult, BenchError> {
    let opts = &ctx.opts;
    let queues = opts.queues.max(1);
    let name = opts.queue_name(index % queues);
    let rank = index / queues;
    let peers = (opts.consumers.saturating_sub(index % queues))
        .div_ceil(queues)
        .max(1);
    let mut offsets: Vec<(i32, i64)> = (0..opts.partitions.max(1))
        .filter(|p| *p as usize % peers == rank)
        .map(|p| (p as i32, 0))
        .collect();
    let mut histogram = latency_histogram();
    let mut ledger = Ledger::default();
    let mut done = ctx.done.clone();
    if offsets.is_empty() {
        let _ = done.wait_for(|d| *d).await;
        return Ok(ConsumerResult { histogram, ledger });
    }
    let mut c = Conn::connect(address(&ctx.url)).await?;
    while !*done.borrow() {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic(&name))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|&(p, o)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(o)
                                    .with_partition_max_bytes(8 << 20)
                            })
                            .collect(),
                    ),
            ]);
        let res: FetchResponse = tokio::select! {
            r = c.call(ApiKey::Fetch, FETCH, &req) => r?,
            _ = done.wait_for(|d| *d) => break,
        };
        for part in res.responses.iter().flat_map(|t| t.partitions.iter()) {
            let Some(slot) = offsets.iter_mut().find(|(p, _)| *p == part.partition_index) else {
                continue;
            };
            if part.error_code != 0 {
                Counters::add(&ctx.counters.errors, 1);
                continue;
            }
            let Some(records) = &part.records else {
                continue;
            };
            let now = ctx.clock.now_ns();
            let mut got = 0;
            for (at, h) in batch::headers(records) {
                let raw = records.slice(at..at + h.size);
                let Ok(rs) = batch::records(&raw) else {
                    Counters::add(&ctx.counters.errors, 1);
                    continue;
                };
                for r in rs {
                    if r.offset < slot.1 {
                        continue;
                    }
                    let Some((producer, seq, sent)) = r.value.as_deref().and_then(read_stamp)
                    else {
                        continue;
                    };
                    let us = now.saturating_sub(sent) / 1000;
                    let _ = histogram.record(us.max(1));
                    ctx.counters
                        .last_latency_us
                        .store(us, std::sync::atomic::Ordering::Relaxed);
                    if ledger.record(producer, seq) {
                        got += 1;
                    }
                }
                slot.1 = slot.1.max(h.last_offset() + 1);
            }
            Counters::add(&ctx.counters.received, got);
        }
    }
    Ok(ConsumerResult { histogram, ledger })
}
