//! What the Kafka tests share: a ferry with the Kafka listener, and
//! rdkafka clients pointed at it.

#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

use crate::common::Ferry;

pub fn start(dir: &std::path::Path, extra: &[&str]) -> Ferry {
    Ferry::start(dir, &["kafka"], extra)
}

pub fn config(ferry: &Ferry) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", ferry.addr("kafka").to_string())
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "15000");
    c
}

pub fn producer(ferry: &Ferry, acks: &str, idempotent: bool) -> FutureProducer {
    config(ferry)
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "1")
        .create()
        .expect("producer")
}

pub async fn create_topic(ferry: &Ferry, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = config(ferry).create().expect("admin");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let res = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics");
    assert!(res[0].is_ok(), "{res:?}");
}
