//! Kafka's admin APIs on topics and the cluster: CreatePartitions,
//! DeleteRecords, the configs APIs (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs)
//! and DescribeCluster. Changes to a topic are written durably before they
//! are answered, so those run on the blocking pool.

use std::sync::Arc;

use ferry_auth::Access;
use ferry_core::stream::{CONFIG_KEYS as KEYS, StreamConfig, StreamError};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsResponse, ApiKey, BrokerId, CreatePartitionsResponse, DeleteRecordsResponse,
    DescribeClusterResponse, DescribeConfigsResponse, IncrementalAlterConfigsResponse, TopicName,
    alter_configs_response, incremental_alter_configs_response,
};

use super::topics::{DEFAULT_CONFIG, TOPIC_CONFIG};
use super::{frame, may, text};
use crate::Kafka;
use crate::error::{code_and_message, kafka_error};
use crate::session::{Answer, Client};
use crate::wire::{
    self, AlterConfigsResource, ConfigChange, ConfigOp, DecodeError, Header, RESOURCE_BROKER,
    RESOURCE_TOPIC, Reader,
};

/// Kafka's `ConfigSource` of a setting from the broker's config file.
const STATIC_BROKER_CONFIG: i8 = 4;

/// Kafka's `ConfigType`s of the topic keys served.
fn config_type(key: &str) -> i8 {
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const LIST: i8 = 7;
    match key {
        "segment.bytes" | "max.message.bytes" => INT,
        "retention.ms" | "retention.bytes" | "segment.ms" => LONG,
        "cleanup.policy" => LIST,
        _ => STRING,
    }
}

/// The most topics or resources one admin request may name: past it the
/// request is taken as abuse and its connection closed (each entry costs
/// work and answer bytes; no tool sends nearly this many).
const MAX_ITEMS: usize = 10_000;

fn too_many(key: ApiKey, n: usize) -> Option<Answer> {
    (n > MAX_ITEMS)
        .then(|| Answer::Close(format!("{key:?} names {n} items, more than {MAX_ITEMS}")))
}

/// How many times each name comes in a request.
fn counts<'a>(
    names: impl Iterator<Item = (i8, &'a str)>,
) -> std::collections::HashMap<(i8, &'a str), usize> {
    let mut m = std::collections::HashMap::new();
    for n in names {
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

/// A refusal's code and message, or `None` for success.
type Outcome = Option<(ResponseError, String)>;

pub fn create_partitions(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::create_partitions(r, v)?;
    if let Some(close) = too_many(ApiKey::CreatePartitions, req.topics.len()) {
        return Ok(close);
    }
    let (kafka, client, h) = (Arc::clone(kafka), Arc::clone(client), h.clone());
    Ok(Answer::Later(tokio::task::spawn_blocking(move || {
        let named = counts(req.topics.iter().map(|t| (0, t.name.as_str())));
        let results = req
            .topics
            .iter()
            .map(|t| {
                // Kafka refuses a topic named twice in one request, both times.
                let twice = named.get(&(0, t.name.as_str())).is_some_and(|n| *n > 1);
                let (code, message) = if twice {
                    (
                        ResponseError::InvalidRequest.code(),
                        Some(format!("topic {} is named more than once", t.name)),
                    )
                } else {
                    match add_partitions(&kafka, &client, t, req.validate_only) {
                        None => (0, None),
                        Some((code, m)) => (code, Some(m)),
                    }
                };
                CreatePartitionsTopicResult::default()
                    .with_name(TopicName(text(t.name.clone())))
                    .with_error_code(code)
                    .with_error_message(message.map(text))
            })
            .collect();
        frame(
            &h,
            ApiKey::CreatePartitions,
            v,
            &CreatePartitionsResponse::default().with_results(results),
        )
    })))
}

/// DeleteRecords: each partition's log start moves to the offset given
/// (-1: its high watermark), durably, before the answer. Kafka asks for
/// DELETE on the topic; ferry's rule for that is configure, as for
/// DeleteTopics.
pub fn delete_records(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let topics = wire::delete_records(r, v)?;
    let items = topics.iter().map(|t| t.partitions.len().max(1)).sum();
    if let Some(close) = too_many(ApiKey::DeleteRecords, items) {
        return Ok(close);
    }
    let (kafka, client, h) = (Arc::clone(kafka), Arc::clone(client), h.clone());
    Ok(Answer::Later(tokio::task::spawn_blocking(move || {
        let results = topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|&(index, offset)| {
                        let (low, code) =
                            match delete_partition(&kafka, &client, &t.name, index, offset) {
                                Ok(low) => (low, 0),
                                Err(e) => (-1, e.code()),
                            };
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(index)
                            .with_low_watermark(low)
                            .with_error_code(code)
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(TopicName(text(t.name.clone())))
                    .with_partitions(partitions)
            })
            .collect();
        frame(
            &h,
            ApiKey::DeleteRecords,
            v,
            &DeleteRecordsResponse::default().with_topics(results),
        )
    })))
}

/// One partition of a DeleteRecords: its new log start, or Kafka's error.
fn delete_partition(
    kafka: &Kafka,
    client: &Client,
    topic: &str,
    index: i32,
    offset: i64,
) -> Result<i64, ResponseError> {
    if !may(client, Access::Configure, topic) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let partition = kafka
        .streams
        .get(&client.namespace, topic)
        .and_then(|s| s.partition(u32::try_from(index).ok()?))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let before = match offset {
        -1 => None,
        o => Some(u64::try_from(o).map_err(|_| ResponseError::OffsetOutOfRange)?),
    };
    match partition.delete_records(before) {
        Ok(low) => {
            tracing::info!(namespace = %client.namespace, topic, partition = index, log_start = low, user = %client.user.name, "records deleted");
            Ok(low as i64)
        }
        Err(e) => Err(kafka_error(&e)),
    }
}

fn add_partitions(
    kafka: &Kafka,
    client: &Client,
    t: &wire::PartitionsIncrease,
    validate_only: bool,
) -> Option<(i16, String)> {
    let refuse = |e: ResponseError, m: String| Some((e.code(), m));
    if !may(client, Access::Configure, &t.name) {
        return refuse(
            ResponseError::TopicAuthorizationFailed,
            format!("user {} may not alter {}", client.user.name, t.name),
        );
    }
    let Some(stream) = kafka.streams.get(&client.namespace, &t.name) else {
        return refuse(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {} does not exist", t.name),
        );
    };
    if t.assignments {
        return refuse(
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignment is not supported on a single node".into(),
        );
    }
    let have = stream.partition_count();
    let Ok(total) = u32::try_from(t.count) else {
        return refuse(
            ResponseError::InvalidPartitions,
            format!("{} partitions", t.count),
        );
    };
    if total <= have {
        return refuse(
            ResponseError::InvalidPartitions,
            format!(
                "topic {} has {have} partitions; it can grow, not shrink or stay",
                t.name
            ),
        );
    }
    if validate_only {
        return None;
    }
    kafka
        .streams
        .add_partitions(&client.namespace, &t.name, total)
        .err()
        .map(|e| code_and_message(&e))
}

pub fn describe_configs(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::describe_configs(r, v)?;
    if let Some(close) = too_many(ApiKey::DescribeConfigs, req.resources.len()) {
        return Ok(close);
    }
    let results = req
        .resources
        .iter()
        .map(|res| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(text(res.name.clone()));
            let entries = match res.resource_type {
                RESOURCE_TOPIC => topic_entries(kafka, client, &res.name),
                RESOURCE_BROKER => broker_entries(kafka, &res.name),
                n => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {n} has no configs here (topics and brokers do)"),
                )),
            };
            match entries {
                Err((e, m)) => base
                    .with_error_code(e.code())
                    .with_error_message(Some(text(m))),
                Ok(all) => base.with_configs(
                    all.into_iter()
                        .filter(|(k, ..)| {
                            // No keys, or an empty list: every key (as Kafka).
                            res.keys
                                .as_ref()
                                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|w| w == k))
                        })
                        .map(|(k, val, source, read_only)| {
                            let mut c = DescribeConfigsResourceResult::default()
                                .with_name(text(k.clone()))
                                .with_value(Some(text(val.clone())))
                                .with_read_only(read_only)
                                .with_config_source(source);
                            if req.include_synonyms {
                                c.synonyms = vec![
                                    DescribeConfigsSynonym::default()
                                        .with_name(text(k.clone()))
                                        .with_value(Some(text(val)))
                                        .with_source(source),
                                ];
                            }
                            if v >= 3 {
                                c.config_type = config_type(&k);
                            }
                            c
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    let res = DescribeConfigsResponse::default().with_results(results);
    Ok(Answer::Now(frame(h, ApiKey::DescribeConfigs, v, &res)))
}

/// A topic's keys: (name, value, source, read only).
type Entries = Result<Vec<(String, String, i8, bool)>, (ResponseError, String)>;

fn topic_entries(kafka: &Kafka, client: &Client, name: &str) -> Entries {
    if !may(client, Access::Configure, name) && !may(client, Access::Read, name) {
        return Err((
            ResponseError::TopicAuthorizationFailed,
            format!("user {} may not describe {name}", client.user.name),
        ));
    }
    let stream = kafka.streams.get(&client.namespace, name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )
    })?;
    Ok(stream
        .config()
        .entries()
        .into_iter()
        .map(|(k, val, is_default)| {
            let source = if is_default {
                DEFAULT_CONFIG
            } else {
                TOPIC_CONFIG
            };
            (k.to_owned(), val, source, false)
        })
        .collect())
}

/// The broker settings clients ask about, all from ferry's config (so
/// read-only here). `name` is the node id, or empty for the defaults.
fn broker_entries(kafka: &Kafka, name: &str) -> Entries {
    if !name.is_empty() && name != kafka.config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("no broker {name}; this is broker {}", kafka.config.node_id),
        ));
    }
    let g = kafka.groups.config();
    let defaults = StreamConfig::default();
    let topic_default = |k: &str| defaults.get(k).unwrap_or_default();
    let entries = [
        (
            "auto.create.topics.enable",
            kafka.config.auto_create_topics.to_string(),
        ),
        (
            "num.partitions",
            kafka.config.default_partitions.to_string(),
        ),
        ("default.replication.factor", "1".into()),
        ("broker.id", kafka.config.node_id.to_string()),
        ("node.id", kafka.config.node_id.to_string()),
        (
            "socket.request.max.bytes",
            kafka.config.max_request_bytes.to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            g.initial_rebalance_delay_ms.to_string(),
        ),
        (
            "group.min.session.timeout.ms",
            g.min_session_timeout_ms.to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            g.max_session_timeout_ms.to_string(),
        ),
        (
            "group.max.size",
            i32::try_from(g.max_size).unwrap_or(i32::MAX).to_string(),
        ),
        (
            "offsets.retention.minutes",
            (g.offsets_retention_ms / 60_000).to_string(),
        ),
        ("log.retention.ms", topic_default("retention.ms")),
        ("log.retention.bytes", topic_default("retention.bytes")),
        ("log.segment.bytes", topic_default("segment.bytes")),
        ("message.max.bytes", topic_default("max.message.bytes")),
        ("log.cleanup.policy", topic_default("cleanup.policy")),
    ];
    Ok(entries
        .into_iter()
        .map(|(k, val)| (k.to_owned(), val, STATIC_BROKER_CONFIG, true))
        .collect())
}

pub fn alter_configs(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
    incremental: bool,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::alter_configs(r, v, incremental)?;
    let key = if incremental {
        ApiKey::IncrementalAlterConfigs
    } else {
        ApiKey::AlterConfigs
    };
    if let Some(close) = too_many(key, req.resources.len()) {
        return Ok(close);
    }
    let (kafka, client, h) = (Arc::clone(kafka), Arc::clone(client), h.clone());
    Ok(Answer::Later(tokio::task::spawn_blocking(move || {
        let named = counts(
            req.resources
                .iter()
                .map(|r| (r.resource_type, r.name.as_str())),
        );
        let outcomes: Vec<(i8, String, Outcome)> = req
            .resources
            .iter()
            .map(|res| {
                // Kafka refuses a resource named twice, both times.
                let twice = named
                    .get(&(res.resource_type, res.name.as_str()))
                    .is_some_and(|n| *n > 1);
                let outcome = if twice {
                    Some((
                        ResponseError::InvalidRequest,
                        format!("resource {} is named more than once", res.name),
                    ))
                } else {
                    alter_one(&kafka, &client, res, incremental, req.validate_only)
                };
                (res.resource_type, res.name.clone(), outcome)
            })
            .collect();
        if incremental {
            let responses = outcomes
                .into_iter()
                .map(|(t, name, outcome)| {
                    let (code, message) = split(outcome);
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(t)
                        .with_resource_name(text(name))
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            let res = IncrementalAlterConfigsResponse::default().with_responses(responses);
            frame(&h, ApiKey::IncrementalAlterConfigs, v, &res)
        } else {
            let responses = outcomes
                .into_iter()
                .map(|(t, name, outcome)| {
                    let (code, message) = split(outcome);
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(t)
                        .with_resource_name(text(name))
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            let res = AlterConfigsResponse::default().with_responses(responses);
            frame(&h, ApiKey::AlterConfigs, v, &res)
        }
    })))
}

fn split(outcome: Outcome) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match outcome {
        None => (0, None),
        Some((e, m)) => (e.code(), Some(text(m))),
    }
}

fn alter_one(
    kafka: &Kafka,
    client: &Client,
    res: &AlterConfigsResource,
    incremental: bool,
    validate_only: bool,
) -> Outcome {
    match res.resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Some((
                ResponseError::InvalidRequest,
                "broker settings come from ferry's config file and flags; they cannot be altered here"
                    .into(),
            ));
        }
        n => {
            return Some((
                ResponseError::InvalidRequest,
                format!("resource type {n} has no configs here (topics do)"),
            ));
        }
    }
    let name = &res.name;
    if !may(client, Access::Configure, name) {
        return Some((
            ResponseError::TopicAuthorizationFailed,
            format!("user {} may not alter {name}", client.user.name),
        ));
    }
    let Some(stream) = kafka.streams.get(&client.namespace, name) else {
        return Some((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    };
    // Kafka refuses a key named twice for one resource.
    let mut names = std::collections::HashSet::new();
    if let Some(c) = res.changes.iter().find(|c| !names.insert(c.name.as_str())) {
        return Some((
            ResponseError::InvalidRequest,
            format!("config {} is named more than once", c.name),
        ));
    }
    // AlterConfigs replaces the topic's settings (keys not named go back
    // to their defaults); IncrementalAlterConfigs changes what it names.
    // Either is worked out from the current config under the stream's
    // metadata lock, so alters at the same time do not undo each other.
    let apply = |current: &StreamConfig| -> Result<StreamConfig, Refusal> {
        let mut config = if incremental {
            current.clone()
        } else {
            StreamConfig::default()
        };
        for c in &res.changes {
            if let Some(value) = new_value(c, &config)? {
                config
                    .set(&c.name, &value)
                    .map_err(|m| Refusal(ResponseError::InvalidConfig, m))?;
            }
        }
        Ok(config)
    };
    let outcome = if validate_only {
        apply(&stream.config()).map(drop)
    } else {
        kafka.streams.update_config(&client.namespace, name, apply)
    };
    outcome.err().map(|Refusal(e, m)| (e, m))
}

/// A refusal of a config change (core's errors become Kafka's).
struct Refusal(ResponseError, String);

impl From<StreamError> for Refusal {
    fn from(e: StreamError) -> Self {
        Refusal(kafka_error(&e), e.to_string())
    }
}

/// The value one change gives its key (`None`: nothing changes).
fn new_value(c: &ConfigChange, config: &StreamConfig) -> Result<Option<String>, Refusal> {
    if !KEYS.contains(&c.name.as_str()) {
        return Err(Refusal(
            ResponseError::InvalidConfig,
            format!("unknown topic config {}", c.name),
        ));
    }
    let value = || {
        c.value.clone().ok_or_else(|| {
            Refusal(
                ResponseError::InvalidRequest,
                format!("{}: a null value", c.name),
            )
        })
    };
    match c.op {
        ConfigOp::Delete => Ok(StreamConfig::default().get(&c.name)),
        ConfigOp::Set => value().map(Some),
        ConfigOp::Append | ConfigOp::Subtract => {
            let v = value()?;
            // Only cleanup.policy is a list here.
            if c.name != "cleanup.policy" {
                return Err(Refusal(
                    ResponseError::InvalidConfig,
                    format!("{} is not a list", c.name),
                ));
            }
            let mut items: Vec<String> = config
                .get(&c.name)
                .unwrap_or_default()
                .split(',')
                .filter(|i| !i.is_empty())
                .map(str::to_owned)
                .collect();
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let at = items.iter().position(|i| i == item);
                match (c.op, at) {
                    (ConfigOp::Append, None) => items.push(item.to_owned()),
                    (ConfigOp::Subtract, Some(i)) => {
                        items.remove(i);
                    }
                    // Appending what is there or taking away what is not:
                    // nothing to do.
                    _ => {}
                }
            }
            Ok(Some(items.join(",")))
        }
    }
}

pub fn describe_cluster(kafka: &Kafka, h: &Header, r: &mut Reader) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::describe_cluster(r, v)?;
    let node = BrokerId(kafka.config.node_id);
    let broker = DescribeClusterBroker::default()
        .with_broker_id(node)
        .with_host(text(kafka.config.advertised_host.clone()))
        .with_port(i32::from(kafka.config.advertised_port));
    let mut res = DescribeClusterResponse::default()
        .with_cluster_id(text(kafka.config.cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![broker])
        // Kafka's "not asked for".
        .with_cluster_authorized_operations(i32::MIN);
    if v >= 1 {
        res.endpoint_type = req.endpoint_type;
        if req.endpoint_type != 1 {
            // Brokers answer for brokers (KIP-919: controllers for
            // controllers); this node has no separate controller endpoint.
            res.error_code = ResponseError::MismatchedEndpointType.code();
            res.error_message = Some(text("this is a broker endpoint"));
            res.brokers.clear();
        }
    }
    if req.include_authorized_operations {
        // AclOperation bits: CREATE (5), DESCRIBE (8), DESCRIBE_CONFIGS
        // (10), IDEMPOTENT_WRITE (12): what any user may do on the cluster
        // (each topic's own rules decide the rest).
        res.cluster_authorized_operations = (1 << 5) | (1 << 8) | (1 << 10) | (1 << 12);
    }
    Ok(Answer::Now(frame(h, ApiKey::DescribeCluster, v, &res)))
}
