//! The requests the broker serves, with only what it reads from them, and
//! their decoders (field layouts as Kafka's message specs give them).

use bytes::Bytes;

use super::{DecodeError, Reader};

type R<T> = Result<T, DecodeError>;

/// A topic named, or (in versions with topic ids) identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicRef {
    Name(String),
    Id(u128),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRequest {
    /// `None`: every topic.
    pub topics: Option<Vec<TopicRef>>,
    pub allow_auto_topic_creation: bool,
}

pub fn metadata(r: &mut Reader, v: i16) -> R<MetadataRequest> {
    let topics = r.nullable_array(|r| {
        let id = if v >= 10 { r.uuid()? } else { 0 };
        let name = if v >= 10 {
            r.nullable_string()?
        } else {
            Some(r.string()?)
        };
        r.tagged()?;
        Ok(match name {
            Some(n) => TopicRef::Name(n),
            None => TopicRef::Id(id),
        })
    })?;
    // Version 0 asks for every topic with an empty list.
    let topics = match topics {
        Some(t) if v == 0 && t.is_empty() => None,
        t => t,
    };
    let allow_auto_topic_creation = if v >= 4 { r.bool()? } else { true };
    if (8..=10).contains(&v) {
        r.bool()?;
    }
    if v >= 8 {
        r.bool()?;
    }
    r.tagged()?;
    Ok(MetadataRequest {
        topics,
        allow_auto_topic_creation,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducePartition {
    pub index: i32,
    pub records: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceRequest {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
}

pub fn produce(r: &mut Reader, _v: i16) -> R<ProduceRequest> {
    let transactional_id = r.nullable_string()?;
    let acks = r.i16()?;
    let timeout_ms = r.i32()?;
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let index = r.i32()?;
            let records = r.nullable_bytes()?;
            r.tagged()?;
            Ok(ProducePartition { index, records })
        })?;
        r.tagged()?;
        Ok(ProduceTopic { name, partitions })
    })?;
    r.tagged()?;
    Ok(ProduceRequest {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    pub session_id: i32,
    pub session_epoch: i32,
    pub topics: Vec<FetchTopic>,
    pub forgotten: Vec<(String, Vec<i32>)>,
}

pub fn fetch(r: &mut Reader, v: i16) -> R<FetchRequest> {
    if v <= 14 {
        r.i32()?; // replica id
    }
    let max_wait_ms = r.i32()?;
    let min_bytes = r.i32()?;
    let max_bytes = r.i32()?;
    let isolation_level = r.i8()?;
    let (session_id, session_epoch) = if v >= 7 {
        (r.i32()?, r.i32()?)
    } else {
        (0, -1)
    };
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let partition = r.i32()?;
            if v >= 9 {
                r.i32()?; // current leader epoch
            }
            let fetch_offset = r.i64()?;
            if v >= 12 {
                r.i32()?; // last fetched epoch
            }
            if v >= 5 {
                r.i64()?; // log start offset (followers only)
            }
            let partition_max_bytes = r.i32()?;
            r.tagged()?;
            Ok(FetchPartition {
                partition,
                fetch_offset,
                partition_max_bytes,
            })
        })?;
        r.tagged()?;
        Ok(FetchTopic { name, partitions })
    })?;
    let forgotten = if v >= 7 {
        r.array(|r| {
            let name = r.string()?;
            let parts = r.array(|r| r.i32())?;
            r.tagged()?;
            Ok((name, parts))
        })?
    } else {
        Vec::new()
    };
    if v >= 11 {
        r.string()?; // rack id
    }
    r.tagged()?;
    Ok(FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes,
        isolation_level,
        session_id,
        session_epoch,
        topics,
        forgotten,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: String,
    /// (partition, timestamp): -1 latest, -2 earliest, -3 the newest
    /// timestamp, -4 earliest local; otherwise a time in ms.
    pub partitions: Vec<(i32, i64)>,
}

pub fn list_offsets(r: &mut Reader, v: i16) -> R<Vec<ListOffsetsTopic>> {
    r.i32()?; // replica id
    if v >= 2 {
        r.i8()?; // isolation level: every durable record is committed here
    }
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let p = r.i32()?;
            if v >= 4 {
                r.i32()?; // current leader epoch
            }
            let ts = r.i64()?;
            r.tagged()?;
            Ok((p, ts))
        })?;
        r.tagged()?;
        Ok(ListOffsetsTopic { name, partitions })
    })?;
    if v >= 10 {
        r.i32()?; // timeout
    }
    r.tagged()?;
    Ok(topics)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatableTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub assignments: usize,
    pub configs: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    pub validate_only: bool,
}

pub fn create_topics(r: &mut Reader, _v: i16) -> R<CreateTopicsRequest> {
    let topics = r.array(|r| {
        let name = r.string()?;
        let num_partitions = r.i32()?;
        let replication_factor = r.i16()?;
        let assignments = r.array(|r| {
            r.i32()?;
            r.array(|r| r.i32())?;
            r.tagged()
        })?;
        let configs = r.array(|r| {
            let k = r.string()?;
            let v = r.nullable_string()?;
            r.tagged()?;
            Ok((k, v))
        })?;
        r.tagged()?;
        Ok(CreatableTopic {
            name,
            num_partitions,
            replication_factor,
            assignments: assignments.len(),
            configs,
        })
    })?;
    r.i32()?; // timeout
    let validate_only = r.bool()?;
    r.tagged()?;
    Ok(CreateTopicsRequest {
        topics,
        validate_only,
    })
}

pub fn delete_topics(r: &mut Reader, v: i16) -> R<Vec<TopicRef>> {
    let topics = if v >= 6 {
        r.array(|r| {
            let name = r.nullable_string()?;
            let id = r.uuid()?;
            r.tagged()?;
            Ok(match name {
                Some(n) => TopicRef::Name(n),
                None => TopicRef::Id(id),
            })
        })?
    } else {
        r.array(|r| Ok(TopicRef::Name(r.string()?)))?
    };
    r.i32()?; // timeout
    r.tagged()?;
    Ok(topics)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    pub transactional_id: Option<String>,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

pub fn init_producer_id(r: &mut Reader, v: i16) -> R<InitProducerIdRequest> {
    let transactional_id = r.nullable_string()?;
    r.i32()?; // transaction timeout
    let (producer_id, producer_epoch) = if v >= 3 {
        (r.i64()?, r.i16()?)
    } else {
        (-1, -1)
    };
    r.tagged()?;
    Ok(InitProducerIdRequest {
        transactional_id,
        producer_id,
        producer_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::messages::{self as km, ApiKey};

    use crate::wire::flexible;
    use crate::wire::testing::{TAG, check, t};

    #[test]
    fn list_offsets_every_version() {
        for v in 1..=10 {
            let flex = flexible(ApiKey::ListOffsets, v);
            let part = |i, ts| {
                let mut x = km::list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(i)
                    .with_timestamp(ts);
                if v >= 4 {
                    x = x.with_current_leader_epoch(3);
                }
                if flex {
                    x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                x
            };
            let mut topic = km::list_offsets_request::ListOffsetsTopic::default()
                .with_name(t("orders"))
                .with_partitions(vec![part(0, -3), part(2, 1_700_000_000_000)]);
            if flex {
                topic = topic.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let mut m = km::ListOffsetsRequest::default()
                .with_replica_id(km::BrokerId(-1))
                .with_topics(vec![topic]);
            if v >= 2 {
                m = m.with_isolation_level(1);
            }
            if v >= 10 {
                m = m.with_timeout_ms(500);
            }
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::ListOffsets, v, &m, list_offsets);
            assert_eq!(
                d,
                vec![ListOffsetsTopic {
                    name: "orders".into(),
                    partitions: vec![(0, -3), (2, 1_700_000_000_000)],
                }],
                "v{v}"
            );
        }
    }
}
