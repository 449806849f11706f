//! The Kafka wire protocol on ferry's streams engine: a topic is a stream,
//! a partition is a stream partition, and a batch a producer sends is
//! stored as it came.
//!
//! - [`wire`]: frames and request decoders (hand-written, bounded).
//! - `session.rs`: one connection: reading requests, answering in order
//!   while later requests are already being served.
//! - `handlers/`: the APIs, grouped as Kafka's protocol guide groups them
//!   (`metadata.rs`: ApiVersions and Metadata; `produce.rs`; `fetch.rs`:
//!   Fetch and ListOffsets; `topics.rs`: CreateTopics and DeleteTopics;
//!   `producers.rs`: InitProducerId; `groups.rs` and `offsets.rs`: the
//!   group coordinator; `admin.rs`: CreatePartitions, the configs APIs,
//!   DescribeCluster; `unsupported.rs`: Kafka's errors for the rest).
//! - [`error`]: the error table.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod error;
mod handlers;
mod sasl;
mod session;
pub mod wire;

use std::sync::Arc;

use ferry_auth::Users;
use ferry_core::Broker;
use ferry_core::group::Groups;
use ferry_core::stream::Streams;
use ferry_face::{Accepted, FaceSpec, Stream, StreamFace, Transport};

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// The namespace topics live in (AMQP's vhost of the same name sees
    /// them as stream queues).
    pub namespace: String,
    /// Where clients are told to connect (Kafka's `advertised.listeners`):
    /// by default the listener's own address.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of a topic made without a count.
    pub default_partitions: u32,
    /// Kafka's `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// Kafka's `node.id` as clients see it.
    pub node_id: i32,
    pub cluster_id: String,
    /// The user a client that does not authenticate acts as (with that
    /// user's permissions and loopback rule); `None`: such clients are
    /// refused.
    pub anonymous_user: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            namespace: "/".into(),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            node_id: 0,
            cluster_id: "ferry".into(),
            anonymous_user: Some("guest".into()),
        }
    }
}

pub static SPEC: FaceSpec = FaceSpec {
    name: "kafka",
    about: "Kafka (Kafka clients: librdkafka, Java, kafka-python, kafkajs)",
    transport: Transport::Stream,
    port: 9092,
    tls_port: 9093,
    tls_name: None,
    holds_back: "produce requests wait (up to their timeout, then REQUEST_TIMED_OUT) until the alarm clears",
};

pub struct Kafka {
    streams: Arc<Streams>,
    groups: Arc<Groups>,
    broker: Arc<Broker>,
    users: Arc<Users>,
    config: KafkaConfig,
}

impl Kafka {
    pub fn new(
        streams: Arc<Streams>,
        groups: Arc<Groups>,
        broker: Arc<Broker>,
        users: Arc<Users>,
        config: KafkaConfig,
    ) -> Arc<Kafka> {
        Arc::new(Kafka {
            streams,
            groups,
            broker,
            users,
            config,
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn now_ms(&self) -> i64 {
        ferry_core::Clock::now(self.streams.clock().as_ref()).as_millis() as i64
    }
}

impl StreamFace for Kafka {
    fn spec(&self) -> &'static FaceSpec {
        &SPEC
    }

    async fn serve<S: Stream>(self: Arc<Self>, conn: Accepted<S>) {
        session::run(self, conn).await;
    }
}
