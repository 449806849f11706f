//! Fetch (with max wait as a long poll over every partition asked for) and
//! ListOffsets (earliest, latest, by time).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::stream::{Durable, Partition, StreamError, any_arrival};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, FetchResponse, ListOffsetsResponse, TopicName};

use super::{frame, may, text};
use crate::Kafka;
use crate::error::kafka_error;
use crate::session::{Answer, Client};
use crate::wire::{self, DecodeError, Header, Reader};

/// The longest a fetch waits, whatever it asks for.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    topic: usize,
    index: i32,
    offset: i64,
    max_bytes: usize,
    partition: Result<Arc<Partition>, i16>,
}

pub fn fetch(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::fetch(r, v)?;
    let mut names = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    for t in req.topics {
        let stream = kafka.streams.get(&client.namespace, &t.name);
        let allowed = may(client, ferry_auth::Access::Read, &t.name);
        for p in t.partitions {
            let partition = if !allowed {
                Err(ResponseError::TopicAuthorizationFailed.code())
            } else {
                stream
                    .as_ref()
                    .zip(u32::try_from(p.partition).ok())
                    .and_then(|(s, i)| s.partition(i))
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())
            };
            wanted.push(Wanted {
                topic: names.len(),
                index: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                partition,
            });
        }
        names.push(t.name);
    }
    let h = h.clone();
    let client = Arc::clone(client);
    Ok(Answer::Later(tokio::spawn(async move {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        let max_bytes = if req.max_bytes <= 0 {
            usize::MAX
        } else {
            req.max_bytes as usize
        };
        loop {
            let (parts, total, failed) = read_all(&wanted, max_bytes);
            let expired = tokio::time::Instant::now() >= deadline;
            if total >= min_bytes.max(1) || failed || expired {
                let delivered: u64 = parts
                    .iter()
                    .map(|p| count_records(p.records.as_ref()))
                    .sum();
                client.entry.delivered(delivered);
                return respond(&h, v, &names, &wanted, parts);
            }
            let durables: Vec<(Arc<Durable>, u64)> = wanted
                .iter()
                .filter_map(|w| {
                    w.partition
                        .as_ref()
                        .ok()
                        .map(|p| (Arc::clone(p.durable()), w.offset.max(0) as u64))
                })
                .collect();
            if durables.is_empty() {
                tokio::time::sleep_until(deadline).await;
                continue;
            }
            let _ = tokio::time::timeout_at(deadline, any_arrival(&durables)).await;
        }
    })))
}

/// Reads every partition once: the data, the bytes in all, and whether a
/// partition answered an error (which is answered at once, as Kafka does).
fn read_all(wanted: &[Wanted], max_bytes: usize) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut failed = false;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut pd = PartitionData::default().with_partition_index(w.index);
        match &w.partition {
            Err(code) => {
                pd.error_code = *code;
                failed = true;
            }
            Ok(p) => {
                pd.high_watermark = p.high_watermark() as i64;
                pd.last_stable_offset = pd.high_watermark;
                pd.log_start_offset = p.log_start() as i64;
                // Past the response's limit, a partition still gets its
                // first batch only if nothing came before it.
                let room = if total == 0 {
                    w.max_bytes.max(1)
                } else {
                    w.max_bytes.min(max_bytes.saturating_sub(total))
                };
                if room == 0 {
                    pd.records = Some(Bytes::new());
                } else {
                    match u64::try_from(w.offset).map_err(|_| StreamError::OffsetOutOfRange {
                        offset: 0,
                        start: p.log_start(),
                        end: p.high_watermark(),
                    }) {
                        Ok(off) => match p.read(off, room) {
                            Ok(f) => {
                                total += f.records.len();
                                pd.high_watermark = f.high_watermark as i64;
                                pd.last_stable_offset = pd.high_watermark;
                                pd.log_start_offset = f.log_start as i64;
                                pd.records = Some(f.records);
                            }
                            Err(e) => {
                                pd.error_code = kafka_error(&e).code();
                                failed = true;
                            }
                        },
                        Err(e) => {
                            pd.error_code = kafka_error(&e).code();
                            failed = true;
                        }
                    }
                }
            }
        }
        out.push(pd);
    }
    (out, total, failed)
}

fn count_records(b: Option<&Bytes>) -> u64 {
    b.map_or(0, |b| {
        ferry_core::stream::batch::headers(b)
            .map(|(_, h)| h.record_count.max(0) as u64)
            .sum()
    })
}

fn respond(
    h: &Header,
    v: i16,
    names: &[String],
    wanted: &[Wanted],
    parts: Vec<PartitionData>,
) -> Option<Bytes> {
    let mut topics: Vec<FetchableTopicResponse> = names
        .iter()
        .map(|n| FetchableTopicResponse::default().with_topic(TopicName(text(n.clone()))))
        .collect();
    for (w, mut pd) in wanted.iter().zip(parts) {
        pd.aborted_transactions = Some(Vec::new());
        if let Some(t) = topics.get_mut(w.topic) {
            t.partitions.push(pd);
        }
    }
    let resp = FetchResponse::default().with_responses(topics);
    frame(h, ApiKey::Fetch, v, &resp)
}

pub fn list_offsets(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let topics = wire::list_offsets(r, v)?;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let stream = kafka.streams.get(&client.namespace, &t.name);
        let allowed = may(client, ferry_auth::Access::Read, &t.name);
        let mut parts = Vec::with_capacity(t.partitions.len());
        for (index, ts) in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(index)
                .with_timestamp(-1)
                .with_offset(-1);
            let partition = stream
                .as_ref()
                .zip(u32::try_from(index).ok())
                .and_then(|(s, i)| s.partition(i));
            match (allowed, partition) {
                (false, _) => pr.error_code = ResponseError::TopicAuthorizationFailed.code(),
                (_, None) => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                (true, Some(p)) => {
                    if v >= 4 {
                        pr.leader_epoch = 0;
                    }
                    match ts {
                        -1 => pr.offset = p.high_watermark() as i64,
                        -2 | -4 => pr.offset = p.log_start() as i64,
                        ts if ts >= 0 => match p.offset_for_time(ts) {
                            Ok(Some((off, at))) => {
                                pr.offset = off as i64;
                                pr.timestamp = at;
                            }
                            Ok(None) => {}
                            Err(e) => pr.error_code = kafka_error(&e).code(),
                        },
                        _ => pr.error_code = ResponseError::UnsupportedVersion.code(),
                    }
                }
            }
            parts.push(pr);
        }
        out.push(
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(text(t.name)))
                .with_partitions(parts),
        );
    }
    let resp = ListOffsetsResponse::default().with_topics(out);
    Ok(Answer::Now(frame(h, ApiKey::ListOffsets, v, &resp)))
}
