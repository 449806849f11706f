//! Produce: each partition's batches are checked and appended in the
//! reader's turn (so they keep the order they were sent in); the answer
//! waits for them to be durable (acks 1 and all alike: on one node, the
//! leader's log is the only replica), or is never sent (acks 0).

use std::sync::Arc;
use std::time::Duration;

use ferry_core::store::Commit;
use ferry_core::stream::batch;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceResponse, TopicName};

use super::{frame, may, text};
use crate::Kafka;
use crate::error::code_and_message;
use crate::session::{Answer, Client};
use crate::wire::{self, DecodeError, Header, Reader};

/// One partition's outcome, before its commit is waited for.
struct Outcome {
    index: i32,
    base_offset: i64,
    log_append_time: i64,
    log_start: i64,
    error: Option<(i16, String)>,
    commit: Commit,
}

fn refused(index: i32, code: ResponseError, message: String) -> Outcome {
    Outcome {
        index,
        base_offset: -1,
        log_append_time: -1,
        log_start: -1,
        error: Some((code.code(), message)),
        commit: Commit::done(),
    }
}

pub fn produce(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::produce(r, v)?;
    let mut held_back = kafka.broker.alarm();
    let alarm_up = held_back.borrow().is_some();
    let now = kafka.now_ms();
    let mut topics: Vec<(String, Vec<Outcome>)> = Vec::with_capacity(req.topics.len());
    let mut records = 0u64;
    for t in req.topics {
        let stream = kafka.streams.get(&client.namespace, &t.name);
        let mut outs = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let out = if req.transactional_id.is_some() {
                refused(
                    p.index,
                    ResponseError::InvalidRequest,
                    "transactions are not supported yet".into(),
                )
            } else if !matches!(req.acks, -1..=1) {
                refused(
                    p.index,
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={} is not 0, 1 or -1", req.acks),
                )
            } else if !may(client, ferry_auth::Access::Write, &t.name) {
                refused(
                    p.index,
                    ResponseError::TopicAuthorizationFailed,
                    format!("user {} may not write to {}", client.user.name, t.name),
                )
            } else if alarm_up {
                refused(
                    p.index,
                    ResponseError::RequestTimedOut,
                    "the broker is holding publishers back".into(),
                )
            } else {
                match (&stream, u32::try_from(p.index)) {
                    (Some(s), Ok(index)) if index < s.partition_count() => {
                        append(s, index, p.index, p.records, now, &mut records)
                    }
                    _ => refused(
                        p.index,
                        ResponseError::UnknownTopicOrPartition,
                        format!("{}-{} does not exist", t.name, p.index),
                    ),
                }
            };
            outs.push(out);
        }
        topics.push((t.name, outs));
    }
    client.entry.published(records);
    if req.acks == 0 {
        return Ok(Answer::Now(None));
    }
    let h = h.clone();
    let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 600_000) as u64);
    Ok(Answer::Later(tokio::spawn(async move {
        if alarm_up {
            // Held back: answer once the alarm clears (then the client
            // resends), or at its timeout.
            let _ = tokio::time::timeout(timeout, held_back.wait_for(|a| a.is_none())).await;
        }
        let mut responses = Vec::with_capacity(topics.len());
        for (name, outs) in topics {
            let mut parts = Vec::with_capacity(outs.len());
            for o in outs {
                let error = match o.commit.wait().await {
                    Ok(()) => o.error,
                    Err(e) => Some(code_and_message(&e.into())),
                };
                let mut p = PartitionProduceResponse::default()
                    .with_index(o.index)
                    .with_base_offset(if error.is_some() { -1 } else { o.base_offset })
                    .with_log_append_time_ms(o.log_append_time);
                if v >= 5 {
                    p.log_start_offset = o.log_start;
                }
                if let Some((code, message)) = error {
                    p.error_code = code;
                    if v >= 8 {
                        p.error_message = Some(text(message));
                    }
                }
                parts.push(p);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(TopicName(text(name)))
                    .with_partition_responses(parts),
            );
        }
        let resp = ProduceResponse::default().with_responses(responses);
        frame(&h, ApiKey::Produce, v, &resp)
    })))
}

fn append(
    s: &Arc<ferry_core::stream::Stream>,
    index: u32,
    wire_index: i32,
    records: Option<bytes::Bytes>,
    now: i64,
    count: &mut u64,
) -> Outcome {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return refused(
            wire_index,
            ResponseError::CorruptMessage,
            "no records".into(),
        );
    };
    let batches = match batch::split(&records) {
        Ok(b) => b,
        Err(e) => {
            let (code, message) = code_and_message(&e.into());
            return Outcome {
                error: Some((code, message)),
                ..refused(wire_index, ResponseError::CorruptMessage, String::new())
            };
        }
    };
    let log_start = s.partition(index).map_or(0, |p| p.log_start()) as i64;
    let mut first: Option<(i64, i64)> = None;
    let mut commit = Commit::done();
    for (h, raw) in &batches {
        match s.append(index, raw, h, now) {
            Ok(a) => {
                *count += h.record_count.max(0) as u64;
                first.get_or_insert((a.base_offset as i64, a.log_append_time.unwrap_or(-1)));
                commit = commit.and(a.commit);
            }
            Err(e) => {
                // Batches before it stay appended; the partition answers
                // with the error (the client retries what it must).
                let (code, message) = code_and_message(&e);
                return Outcome {
                    index: wire_index,
                    base_offset: -1,
                    log_append_time: -1,
                    log_start,
                    error: Some((code, message)),
                    commit,
                };
            }
        }
    }
    let (base_offset, log_append_time) = first.unwrap_or((-1, -1));
    Outcome {
        index: wire_index,
        base_offset,
        log_append_time,
        log_start,
        error: None,
        commit,
    }
}
