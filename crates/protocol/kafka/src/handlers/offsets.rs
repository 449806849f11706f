//! Committed offsets: OffsetCommit (answered once the commit is durable),
//! OffsetFetch and OffsetDelete.

use std::sync::Arc;

use bytes::Bytes;
use ferry_auth::Access;
use ferry_core::group::{Committed, Committer, GroupError, OffsetCommit};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse, TopicName,
};

use super::{frame, may, text};
use crate::Kafka;
use crate::error::{group_code, group_error};
use crate::session::{Answer, Client};
use crate::wire::{self, DecodeError, Header, Reader};

/// Whether `client` may see `topic`'s partition `index`, and it exists:
/// the partition's number, or the error code for it.
fn partition_of(kafka: &Kafka, client: &Client, topic: &str, index: i32) -> Result<u32, i16> {
    if !may(client, Access::Read, topic) {
        return Err(ResponseError::TopicAuthorizationFailed.code());
    }
    let count = kafka
        .streams
        .get(&client.namespace, topic)
        .map_or(0, |s| s.partition_count());
    u32::try_from(index)
        .ok()
        .filter(|i| *i < count)
        .ok_or(ResponseError::UnknownTopicOrPartition.code())
}

pub fn offset_commit(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::offset_commit(r, v)?;
    // Per partition, in request order: its error now, or its place among
    // the commits handed to the group.
    let mut slots: Vec<(usize, i32, Result<usize, i16>)> = Vec::new();
    let mut commits = Vec::new();
    for (t, topic) in req.topics.iter().enumerate() {
        for p in &topic.partitions {
            let slot = partition_of(kafka, client, &topic.name, p.partition_index).map(|index| {
                commits.push(OffsetCommit {
                    topic: topic.name.clone(),
                    partition: index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.clone(),
                });
                commits.len() - 1
            });
            slots.push((t, p.partition_index, slot));
        }
    }
    let who_generation = req.generation_id_or_member_epoch;
    let who = Committer {
        generation: req.generation_id_or_member_epoch,
        member_id: req.member_id,
        instance_id: req.group_instance_id,
    };
    let outcome = if commits.is_empty() {
        Ok((Vec::new(), ferry_core::store::Commit::done()))
    } else {
        kafka
            .groups
            .commit(&client.namespace, &req.group_id, &who, commits)
    };
    let names: Vec<String> = req.topics.into_iter().map(|t| t.name).collect();
    let h = h.clone();
    Ok(Answer::Later(tokio::spawn(async move {
        let (codes, durable): (Vec<i16>, Result<(), GroupError>) = match outcome {
            Ok((answers, commit)) => (
                answers.iter().map(group_code).collect(),
                commit.wait().await.map_err(GroupError::Store),
            ),
            // OffsetCommit below v9 knows no GROUP_ID_NOT_FOUND: a member's
            // commit to a missing group has a stale generation there.
            Err(GroupError::GroupIdNotFound(_)) if v < 9 => (
                Vec::new(),
                Err(GroupError::IllegalGeneration {
                    given: who_generation,
                    current: -1,
                }),
            ),
            Err(e) => (Vec::new(), Err(e)),
        };
        let durable_code = group_code(&durable);
        let mut topics: Vec<OffsetCommitResponseTopic> = names
            .into_iter()
            .map(|n| OffsetCommitResponseTopic::default().with_name(TopicName(text(n))))
            .collect();
        for (t, index, slot) in slots {
            let code = match slot {
                Err(code) => code,
                Ok(i) => match codes.get(i) {
                    Some(0) | None => durable_code,
                    Some(c) => *c,
                },
            };
            if let Some(topic) = topics.get_mut(t) {
                topic.partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
        }
        let res = OffsetCommitResponse::default().with_topics(topics);
        frame(&h, ApiKey::OffsetCommit, v, &res)
    })))
}

/// One partition's fetched offset: (offset, leader epoch, metadata, error).
type Fetched = (i32, i64, i32, String, i16);

/// What one group has for the partitions asked (`None`: every partition
/// it has an offset for that the client may see), by topic.
fn fetch_group(
    kafka: &Kafka,
    client: &Client,
    group: &str,
    topics: Option<&[(String, Vec<i32>)]>,
) -> Vec<(String, Vec<Fetched>)> {
    let unset = |p: i32, code: i16| (p, -1, -1, String::new(), code);
    let from = |p: u32, c: Option<Committed>| match c {
        Some(c) => (p as i32, c.offset, c.leader_epoch, c.metadata, 0),
        None => unset(p as i32, 0),
    };
    match topics {
        None => {
            let mut out: Vec<(String, Vec<Fetched>)> = Vec::new();
            for (t, p, c) in kafka.groups.fetch(&client.namespace, group, None) {
                if !may(client, Access::Read, &t) {
                    continue;
                }
                match out.last_mut() {
                    Some((name, parts)) if *name == t => parts.push(from(p, c)),
                    _ => out.push((t, vec![from(p, c)])),
                }
            }
            out
        }
        Some(topics) => topics
            .iter()
            .map(|(t, parts)| {
                if !may(client, Access::Read, t) {
                    let code = ResponseError::TopicAuthorizationFailed.code();
                    return (t.clone(), parts.iter().map(|p| unset(*p, code)).collect());
                }
                let asked: Vec<u32> = parts
                    .iter()
                    .filter_map(|p| u32::try_from(*p).ok())
                    .collect();
                let mut got = kafka
                    .groups
                    .fetch(&client.namespace, group, Some(&[(t.clone(), asked)]))
                    .into_iter();
                let fetched = parts
                    .iter()
                    .map(|p| {
                        if *p < 0 {
                            return unset(*p, 0);
                        }
                        match got.next() {
                            Some((_, i, c)) => from(i, c),
                            None => unset(*p, 0),
                        }
                    })
                    .collect();
                (t.clone(), fetched)
            })
            .collect(),
    }
}

pub fn offset_fetch(
    kafka: &Kafka,
    client: &Client,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::offset_fetch(r, v)?;
    let invalid = ResponseError::InvalidGroupId.code();
    let epoch = |e: i32| if v >= 5 { e } else { -1 };
    let mut res = OffsetFetchResponse::default();
    if v >= 8 {
        res.groups = req
            .groups
            .iter()
            .map(|g| {
                let mut out = OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(text(g.group_id.clone())));
                if g.group_id.is_empty() {
                    out.error_code = invalid;
                    return out;
                }
                out.topics = fetch_group(kafka, client, &g.group_id, g.topics.as_deref())
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(text(t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, e, m, code)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(e)
                                            .with_metadata(Some(text(m)))
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                out
            })
            .collect();
    } else if let Some(g) = req.groups.first() {
        if g.group_id.is_empty() {
            if v >= 2 {
                res.error_code = invalid;
            }
        } else {
            res.topics = fetch_group(kafka, client, &g.group_id, g.topics.as_deref())
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(text(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o, e, m, code)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(epoch(e))
                                        .with_metadata(Some(text(m)))
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
        }
    }
    Ok(Answer::Now(frame(h, ApiKey::OffsetFetch, v, &res)))
}

/// The topics a "consumer" protocol member subscribes to, from its
/// metadata (Kafka's ConsumerProtocolSubscription: version, then the
/// topics, in the classic encoding); `None` if it cannot be read.
fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader::new(Bytes::copy_from_slice(metadata), 0, false);
    r.i16().and_then(|_| r.array(|r| r.string())).ok()
}

pub fn offset_delete(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::offset_delete(r, v)?;
    let mut denied: Vec<(String, Vec<i32>)> = Vec::new();
    let mut asked: Vec<(String, Vec<u32>)> = Vec::new();
    for (t, parts) in &req.topics {
        if may(client, Access::Read, t) {
            asked.push((
                t.clone(),
                parts
                    .iter()
                    .filter_map(|p| u32::try_from(*p).ok())
                    .collect(),
            ));
        } else {
            denied.push((t.clone(), parts.clone()));
        }
    }
    let outcome =
        kafka
            .groups
            .delete_offsets(&client.namespace, &req.group_id, &asked, &subscribed_topics);
    let h = h.clone();
    Ok(Answer::Later(tokio::spawn(async move {
        let mut res = OffsetDeleteResponse::default();
        match outcome {
            Err(e) => res.error_code = group_error(&e).code(),
            Ok((answers, commit)) => {
                let durable = group_code(&commit.wait().await.map_err(GroupError::Store));
                let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
                let mut add = |t: String, p: i32, code: i16| {
                    let part = OffsetDeleteResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(code);
                    match topics.iter_mut().find(|x| *x.name == *t) {
                        Some(x) => x.partitions.push(part),
                        None => topics.push(
                            OffsetDeleteResponseTopic::default()
                                .with_name(TopicName(text(t)))
                                .with_partitions(vec![part]),
                        ),
                    }
                };
                for (t, p, o) in answers {
                    let code = match group_code(&o) {
                        0 => durable,
                        c => c,
                    };
                    add(t, p as i32, code);
                }
                let code = ResponseError::TopicAuthorizationFailed.code();
                for (t, parts) in denied {
                    for p in parts {
                        add(t.clone(), p, code);
                    }
                }
                res.topics = topics;
            }
        }
        frame(&h, ApiKey::OffsetDelete, v, &res)
    })))
}
