//! Fetch (with max wait as a long poll over every partition asked for,
//! and incremental fetch sessions: `fetch_session.rs`) and ListOffsets
//! (earliest, latest, max timestamp, by time).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::stream::{Durable, Partition, Stream, StreamError, any_arrival};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, FetchResponse, ListOffsetsResponse, TopicName};

use super::fetch_session::{Plan, SessionPartition, Told};
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

/// A topic's stream if the client may read it, else the error code.
type TopicAccess = Result<Arc<Stream>, i16>;

/// A fetch's session, for its answer.
#[derive(Clone, Copy)]
enum Answering {
    Sessionless,
    /// A new session: every partition, with its id.
    Full {
        id: i32,
    },
    /// An existing session's request at `epoch`: only partitions with news.
    Incremental {
        id: i32,
        epoch: i32,
    },
}

pub fn fetch(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::fetch(r, v)?;
    let plan = if v >= 7 {
        client
            .fetch_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .plan(&req)
    } else {
        Plan::Sessionless
    };
    let (answering, asked): (Answering, Vec<SessionPartition>) = match plan {
        Plan::Refused(e) => {
            let resp = FetchResponse::default().with_error_code(e.code());
            return Ok(Answer::Now(frame(h, ApiKey::Fetch, v, &resp)));
        }
        Plan::Sessionless => (
            Answering::Sessionless,
            super::fetch_session::partitions_of(&req),
        ),
        Plan::Full { id, partitions } => (Answering::Full { id }, partitions),
        Plan::Incremental {
            id,
            epoch,
            partitions,
        } => (Answering::Incremental { id, epoch }, partitions),
    };
    // Per topic, once: its place in the answer, and the stream if the
    // client may read it.
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut topics: HashMap<Arc<str>, (usize, TopicAccess)> = HashMap::new();
    let mut wanted = Vec::with_capacity(asked.len());
    for p in &asked {
        let (topic, stream) = topics.entry(Arc::clone(&p.topic)).or_insert_with(|| {
            names.push(Arc::clone(&p.topic));
            let stream = if !may(client, ferry_auth::Access::Read, &p.topic) {
                Err(ResponseError::TopicAuthorizationFailed.code())
            } else {
                kafka
                    .streams
                    .get(&client.namespace, &p.topic)
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())
            };
            (names.len() - 1, stream)
        });
        let partition = stream.clone().and_then(|s| {
            u32::try_from(p.partition)
                .ok()
                .and_then(|i| s.partition(i))
                .ok_or(ResponseError::UnknownTopicOrPartition.code())
        });
        wanted.push(Wanted {
            topic: *topic,
            index: p.partition,
            offset: p.offset,
            max_bytes: p.max_bytes.max(0) as usize,
            partition,
        });
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
                return answer(&client, &h, v, answering, &names, &wanted, &asked, parts);
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

/// The response, with only what a session's client has not been told on
/// an incremental fetch; the session learns what it was told.
#[allow(clippy::too_many_arguments)]
fn answer(
    client: &Client,
    h: &Header,
    v: i16,
    answering: Answering,
    names: &[Arc<str>],
    wanted: &[Wanted],
    asked: &[SessionPartition],
    parts: Vec<PartitionData>,
) -> Option<Bytes> {
    let news = |pd: &PartitionData, a: &SessionPartition| {
        pd.error_code != 0
            || pd.records.as_ref().is_some_and(|r| !r.is_empty())
            || a.told != Some((pd.high_watermark, pd.log_start_offset))
    };
    let mut kept: Vec<(&Wanted, PartitionData)> = Vec::with_capacity(parts.len());
    for ((w, pd), a) in wanted.iter().zip(parts).zip(asked) {
        if matches!(answering, Answering::Incremental { .. }) && !news(&pd, a) {
            continue;
        }
        kept.push((w, pd));
    }
    let (id, epoch) = match answering {
        Answering::Sessionless => (0, None),
        Answering::Full { id } => (id, Some(0)),
        Answering::Incremental { id, epoch } => (id, Some(epoch)),
    };
    if let Some(epoch) = epoch {
        let told: Vec<Told> = kept
            .iter()
            .filter_map(|(w, pd)| {
                Some(Told {
                    topic: Arc::clone(names.get(w.topic)?),
                    partition: w.index,
                    marks: (pd.error_code == 0).then_some((pd.high_watermark, pd.log_start_offset)),
                    records: pd.records.as_ref().is_some_and(|r| !r.is_empty()),
                })
            })
            .collect();
        client
            .fetch_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .told(id, epoch, &told);
    }
    respond(h, v, id, names, kept)
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
    session_id: i32,
    names: &[Arc<str>],
    parts: Vec<(&Wanted, PartitionData)>,
) -> Option<Bytes> {
    let mut topics: Vec<FetchableTopicResponse> = names
        .iter()
        .map(|n| FetchableTopicResponse::default().with_topic(TopicName(text(n.to_string()))))
        .collect();
    for (w, mut pd) in parts {
        pd.aborted_transactions = Some(Vec::new());
        if let Some(t) = topics.get_mut(w.topic) {
            t.partitions.push(pd);
        }
    }
    // An incremental answer names only topics with partitions in it.
    topics.retain(|t| session_id == 0 || !t.partitions.is_empty());
    let mut resp = FetchResponse::default().with_responses(topics);
    if v >= 7 {
        resp = resp.with_session_id(session_id);
    }
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
                        // Earliest, and earliest local (there is no
                        // remote tier: the same).
                        -2 | -4 => pr.offset = p.log_start() as i64,
                        // Max timestamp: the record with the newest.
                        -3 => match p.offset_of_max_timestamp() {
                            Ok(Some((off, at))) => {
                                pr.offset = off as i64;
                                pr.timestamp = at;
                            }
                            Ok(None) => {}
                            Err(e) => pr.error_code = kafka_error(&e).code(),
                        },
                        // Latest tiered: nothing is tiered, so no offset.
                        -5 => {}
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
