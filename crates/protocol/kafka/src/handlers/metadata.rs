//! ApiVersions and Metadata: what the broker serves, and where topics are.

use std::sync::Arc;

use bytes::Bytes;
use ferry_core::stream::{Stream, StreamConfig};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, TopicName,
};

use super::{frame, may, text};
use crate::Kafka;
use crate::error::{kafka_error, valid_topic_name};
use crate::session::{Answer, Client};
use crate::wire::{self, DecodeError, Header, Reader, TopicRef};

pub fn api_versions(h: &Header, version: i16, unsupported: bool) -> Option<Bytes> {
    let api_keys = wire::SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
    let code = if unsupported {
        ResponseError::UnsupportedVersion.code()
    } else {
        0
    };
    let resp = ApiVersionsResponse::default()
        .with_error_code(code)
        .with_api_keys(api_keys);
    frame(h, ApiKey::ApiVersions, version, &resp)
}

pub async fn metadata(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::metadata(r, v)?;
    let ns = &client.namespace;
    let mut topics = Vec::new();
    match req.topics {
        None => {
            for s in kafka.streams.list(ns) {
                let name = s.name();
                if may(client, ferry_auth::Access::Read, &name)
                    || may(client, ferry_auth::Access::Write, &name)
                {
                    topics.push(describe(kafka, v, &name, Some(&s), 0));
                }
            }
        }
        Some(list) => {
            for t in list {
                let name = match t {
                    TopicRef::Name(n) => n,
                    TopicRef::Id(id) => match kafka
                        .streams
                        .list(ns)
                        .into_iter()
                        .find(|s| s.topic_id() == id)
                    {
                        Some(s) => s.name(),
                        None => {
                            let mut t = MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code());
                            if v >= 10 {
                                t.topic_id = uuid::Uuid::from_u128(id);
                            }
                            topics.push(t);
                            continue;
                        }
                    },
                };
                let stream = match kafka.streams.get(ns, &name) {
                    Some(s) => Some(s),
                    None if req.allow_auto_topic_creation && kafka.config.auto_create_topics => {
                        auto_create(kafka, client, &name).await
                    }
                    None => None,
                };
                let code = match (&stream, valid_topic_name(&name)) {
                    (_, Err(_)) => ResponseError::InvalidTopicException.code(),
                    (Some(_), _)
                        if !may(client, ferry_auth::Access::Read, &name)
                            && !may(client, ferry_auth::Access::Write, &name) =>
                    {
                        ResponseError::TopicAuthorizationFailed.code()
                    }
                    (Some(_), _) => 0,
                    (None, _) => ResponseError::UnknownTopicOrPartition.code(),
                };
                let s = stream.as_ref().filter(|_| code == 0);
                topics.push(describe(kafka, v, &name, s, code));
            }
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(kafka.config.node_id))
        .with_host(text(kafka.config.advertised_host.clone()))
        .with_port(i32::from(kafka.config.advertised_port));
    let resp = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(text(kafka.config.cluster_id.clone())))
        .with_controller_id(BrokerId(kafka.config.node_id))
        .with_topics(topics);
    Ok(Answer::Now(frame(h, ApiKey::Metadata, v, &resp)))
}

/// Creates a topic a client asked about, as Kafka's auto-creation does
/// (with the client's configure permission; the default partitions).
async fn auto_create(kafka: &Arc<Kafka>, client: &Arc<Client>, name: &str) -> Option<Arc<Stream>> {
    if valid_topic_name(name).is_err() || !may(client, ferry_auth::Access::Configure, name) {
        return None;
    }
    let k = Arc::clone(kafka);
    let ns = client.namespace.clone();
    let n = name.to_owned();
    let made = tokio::task::spawn_blocking(move || {
        k.streams.create(
            &ns,
            &n,
            k.config.default_partitions,
            StreamConfig::default(),
        )
    })
    .await
    .ok()?;
    match made {
        Ok(s) => Some(s),
        // Another client made it first.
        Err(ferry_core::stream::StreamError::StreamExists(_)) => {
            kafka.streams.get(&client.namespace, name)
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, code = kafka_error(&e).code(), "auto-creating a topic failed");
            None
        }
    }
}

fn describe(
    kafka: &Kafka,
    v: i16,
    name: &str,
    stream: Option<&Arc<Stream>>,
    code: i16,
) -> MetadataResponseTopic {
    let node = BrokerId(kafka.config.node_id);
    let mut t = MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(TopicName(text(name))));
    if let Some(s) = stream {
        if v >= 10 {
            t.topic_id = uuid::Uuid::from_u128(s.topic_id());
        }
        t.partitions = (0..s.partition_count())
            .map(|i| {
                MetadataResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_leader_id(node)
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
            })
            .collect();
    }
    t
}
