//! CreateTopics and DeleteTopics. Both touch the disk (a stream's
//! metadata is written durably before it is answered), so they run on the
//! blocking pool.

use std::sync::Arc;

use ferry_core::stream::{StreamConfig, StreamError};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, CreateTopicsResponse, DeleteTopicsResponse, TopicName};

use super::{frame, may, text};
use crate::Kafka;
use crate::error::{code_and_message, valid_topic_name};
use crate::session::{Answer, Client};
use crate::wire::{self, CreatableTopic, DecodeError, Header, Reader, TopicRef};

/// Kafka's `ConfigSource` for a topic's own setting and for a default.
pub(super) const TOPIC_CONFIG: i8 = 1;
pub(super) const DEFAULT_CONFIG: i8 = 5;

pub async fn create_topics(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::create_topics(r, v)?;
    let kafka = Arc::clone(kafka);
    let client = Arc::clone(client);
    let h = h.clone();
    Ok(Answer::Later(tokio::task::spawn_blocking(move || {
        let topics = req
            .topics
            .iter()
            .map(|t| create_one(&kafka, &client, v, t, req.validate_only))
            .collect();
        frame(
            &h,
            ApiKey::CreateTopics,
            v,
            &CreateTopicsResponse::default().with_topics(topics),
        )
    })))
}

fn create_one(
    kafka: &Kafka,
    client: &Client,
    v: i16,
    t: &CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let mut res = CreatableTopicResult::default().with_name(TopicName(text(t.name.clone())));
    let fail = |mut res: CreatableTopicResult, code: ResponseError, message: String| {
        res.error_code = code.code();
        if v >= 1 {
            res.error_message = Some(text(message));
        }
        res.num_partitions = -1;
        res.replication_factor = -1;
        res
    };
    if let Err(m) = valid_topic_name(&t.name) {
        return fail(res, ResponseError::InvalidTopicException, m);
    }
    if !may(client, ferry_auth::Access::Configure, &t.name) {
        return fail(
            res,
            ResponseError::TopicAuthorizationFailed,
            format!("user {} may not create {}", client.user.name, t.name),
        );
    }
    if t.assignments > 0 {
        return fail(
            res,
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignment is not supported on a single node".into(),
        );
    }
    if t.replication_factor != -1 && t.replication_factor != 1 {
        return fail(
            res,
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 broker available",
                t.replication_factor
            ),
        );
    }
    let partitions = match t.num_partitions {
        -1 => kafka.config.default_partitions,
        n if n > 0 => n as u32,
        n => {
            return fail(
                res,
                ResponseError::InvalidPartitions,
                format!("{n} partitions"),
            );
        }
    };
    let mut config = StreamConfig::default();
    for (k, val) in &t.configs {
        let Some(val) = val else { continue };
        if let Err(m) = config.set(k, val) {
            return fail(res, ResponseError::InvalidConfig, m);
        }
    }
    if kafka.streams.get(&client.namespace, &t.name).is_some() {
        return fail(
            res,
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", t.name),
        );
    }
    if !validate_only {
        match kafka
            .streams
            .create(&client.namespace, &t.name, partitions, config.clone())
        {
            Ok(s) => {
                if v >= 7 {
                    res.topic_id = uuid::Uuid::from_u128(s.topic_id());
                }
            }
            Err(e) => {
                let (code, message) = code_and_message(&e);
                res.error_code = code;
                res.error_message = Some(text(message));
                return res;
            }
        }
    }
    res.num_partitions = partitions as i32;
    res.replication_factor = 1;
    if v >= 5 {
        let explicit: Vec<&str> = t.configs.iter().map(|(k, _)| k.as_str()).collect();
        res.configs = Some(
            config
                .entries()
                .into_iter()
                .map(|(k, val, _)| {
                    CreatableTopicConfigs::default()
                        .with_name(text(k))
                        .with_value(Some(text(val)))
                        .with_config_source(if explicit.contains(&k) {
                            TOPIC_CONFIG
                        } else {
                            DEFAULT_CONFIG
                        })
                })
                .collect(),
        );
    }
    res
}

pub async fn delete_topics(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let topics = wire::delete_topics(r, v)?;
    let kafka = Arc::clone(kafka);
    let client = Arc::clone(client);
    let h = h.clone();
    Ok(Answer::Later(tokio::task::spawn_blocking(move || {
        let ns = &client.namespace;
        let responses = topics
            .into_iter()
            .map(|t| {
                let (name, id) = match t {
                    TopicRef::Name(n) => (Some(n), None),
                    TopicRef::Id(id) => (
                        kafka
                            .streams
                            .list(ns)
                            .into_iter()
                            .find(|s| s.topic_id() == id)
                            .map(|s| s.name()),
                        Some(id),
                    ),
                };
                let mut res = DeletableTopicResult::default()
                    .with_name(name.clone().map(|n| TopicName(text(n))));
                if v >= 6 {
                    res.topic_id = uuid::Uuid::from_u128(id.unwrap_or_default());
                }
                let outcome = match &name {
                    None => Err((
                        ResponseError::UnknownTopicId.code(),
                        "no topic has that id".to_owned(),
                    )),
                    Some(n) if !may(&client, ferry_auth::Access::Configure, n) => Err((
                        ResponseError::TopicAuthorizationFailed.code(),
                        format!("user {} may not delete {n}", client.user.name),
                    )),
                    Some(n) => kafka
                        .streams
                        .delete(ns, n)
                        .map_err(|e: StreamError| code_and_message(&e))
                        .and_then(|()| {
                            // A topic made again under the name starts
                            // with no group's offsets.
                            let forgotten = kafka.groups.forget_topic(ns, n);
                            tokio::runtime::Handle::current()
                                .block_on(forgotten.wait())
                                .map_err(|e| {
                                    (ResponseError::KafkaStorageError.code(), e.to_string())
                                })
                        }),
                };
                if let Err((code, message)) = outcome {
                    res.error_code = code;
                    if v >= 5 {
                        res.error_message = Some(text(message));
                    }
                }
                res
            })
            .collect();
        frame(
            &h,
            ApiKey::DeleteTopics,
            v,
            &DeleteTopicsResponse::default().with_responses(responses),
        )
    })))
}
