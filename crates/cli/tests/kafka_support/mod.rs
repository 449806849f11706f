//! What the Kafka tests share: a ferry with the Kafka listener, and
//! rdkafka clients pointed at it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
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

/// One request over a raw connection, and its response.
pub fn call<Req: Encodable, Res: Decodable>(
    conn: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Res {
    send(conn, key, version, req);
    let mut size = [0u8; 4];
    conn.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    conn.read_exact(&mut body).expect("response");
    let mut body = bytes::Bytes::from(body);
    let h = ResponseHeader::decode(&mut body, key.response_header_version(version)).expect("hdr");
    assert_eq!(h.correlation_id, 7);
    let res = Res::decode(&mut body, version).expect("response body");
    assert_eq!(body.remaining(), 0, "the whole response was read");
    res
}

/// Writes one request (correlation id 7) without reading its answer.
pub fn send<Req: Encodable>(conn: &mut TcpStream, key: ApiKey, version: i16, req: &Req) {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("raw")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    req.encode(&mut buf, version).expect("request");
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    conn.write_all(&buf).expect("send");
}
