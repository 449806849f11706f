//! Kafka's admin APIs on topics against a real `ferry serve` with
//! librdkafka's admin client: CreatePartitions, DeleteRecords,
//! DescribeConfigs and AlterConfigs, and that what they change takes
//! effect.

mod common;
mod kafka_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeAclsRequest, DescribeAclsResponse, DescribeClusterRequest,
    DescribeClusterResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, OwnedResourceSpecifier,
    ResourceSpecifier,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

use kafka_support::{call, config, create_topic, producer, send, start};

fn admin(ferry: &common::Ferry) -> AdminClient<DefaultClientContext> {
    config(ferry).create().expect("admin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_and_new_ones_take_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &[]);
    create_topic(&ferry, "grow", 1, &[]).await;
    let a = admin(&ferry);
    let opts = AdminOptions::new();
    let res = a
        .create_partitions(&[NewPartitions::new("grow", 3)], &opts)
        .await
        .expect("create partitions");
    assert_eq!(res, vec![Ok("grow".to_owned())]);

    // The new partitions exist and take records.
    let p = producer(&ferry, "all", false);
    let delivered = p
        .send(
            FutureRecord::<(), _>::to("grow").payload("x").partition(2),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    assert_eq!((delivered.partition, delivered.offset), (2, 0));

    // Shrinking, staying, a missing topic and a topic named twice: Kafka's
    // errors, each for its own topic.
    let res = a
        .create_partitions(
            &[
                NewPartitions::new("grow", 2),
                NewPartitions::new("missing", 4),
            ],
            &opts,
        )
        .await
        .expect("create partitions");
    assert_eq!(
        res,
        vec![
            Err(("grow".to_owned(), RDKafkaErrorCode::InvalidPartitions)),
            Err((
                "missing".to_owned(),
                RDKafkaErrorCode::UnknownTopicOrPartition
            )),
        ]
    );
    // Validation only changes nothing.
    let res = a
        .create_partitions(
            &[NewPartitions::new("grow", 5)],
            &AdminOptions::new().validate_only(true),
        )
        .await
        .expect("validate");
    assert_eq!(res, vec![Ok("grow".to_owned())]);
    drop(a);

    // Restart: the partitions stay, with their record.
    drop(ferry);
    let ferry = start(dir.path(), &[]);
    let c: rdkafka::consumer::BaseConsumer = config(&ferry).create().expect("consumer");
    use rdkafka::consumer::Consumer;
    let md = c
        .fetch_metadata(Some("grow"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 3);
    let (low, high) = c
        .fetch_watermarks("grow", 2, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_records_are_gone_for_consumers_and_after_a_restart() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &[]);
    create_topic(&ferry, "trim", 2, &[]).await;
    let p = producer(&ferry, "all", false);
    for i in 0..10 {
        p.send(
            FutureRecord::<(), _>::to("trim")
                .payload(&format!("r{i}"))
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
    let a = admin(&ferry);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(4))
        .expect("offset");
    // Partition 1 is empty: "up to the high watermark" is offset 0.
    tpl.add_partition_offset("trim", 1, Offset::End)
        .expect("offset");
    tpl.add_partition_offset("trim", 7, Offset::Offset(1))
        .expect("offset");
    let res = a
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("delete records");
    let by_partition = |p: i32| res.find_partition("trim", p).expect("partition result");
    assert_eq!(by_partition(0).offset(), Offset::Offset(4));
    assert!(by_partition(0).error().is_ok());
    assert_eq!(by_partition(1).offset(), Offset::Offset(0));
    assert!(by_partition(7).error().is_err(), "a missing partition");
    // Past the end: OFFSET_OUT_OF_RANGE.
    let mut past = TopicPartitionList::new();
    past.add_partition_offset("trim", 0, Offset::Offset(11))
        .expect("offset");
    let res = a
        .delete_records(&past, &AdminOptions::new())
        .await
        .expect("delete records");
    assert_eq!(
        res.find_partition("trim", 0).expect("result").error(),
        Err(KafkaError::OffsetFetch(RDKafkaErrorCode::OffsetOutOfRange))
    );
    drop(a);
    drop(ferry);

    // After a restart the log starts at 4, and a consumer from the
    // beginning reads from there.
    let ferry = start(dir.path(), &[]);
    let c: BaseConsumer = config(&ferry)
        .set("group.id", "trim-readers")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (low, high) = c
        .fetch_watermarks("trim", 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (4, 10));
    let mut from = TopicPartitionList::new();
    from.add_partition_offset("trim", 0, Offset::Beginning)
        .expect("offset");
    c.assign(&from).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(std::time::Instant::now() < deadline, "nothing read");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            break rdkafka::Message::offset(&m.expect("record"));
        }
    };
    assert_eq!(first, 4);
}

/// The config entries of one resource, as DescribeConfigs gives them.
async fn described(
    a: &AdminClient<DefaultClientContext>,
    what: ResourceSpecifier<'_>,
) -> Vec<rdkafka::admin::ConfigEntry> {
    let mut res = a
        .describe_configs(&[what], &AdminOptions::new())
        .await
        .expect("describe");
    res.remove(0).expect("configs").entries
}

fn value<'a>(
    entries: &'a [rdkafka::admin::ConfigEntry],
    key: &str,
) -> &'a rdkafka::admin::ConfigEntry {
    entries
        .iter()
        .find(|e| e.name == key)
        .unwrap_or_else(|| panic!("no {key} in {entries:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_described_altered_and_take_effect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &["--kafka-num-partitions", "2"]);
    create_topic(&ferry, "conf", 1, &[("retention.ms", "3600000")]).await;
    let a = admin(&ferry);
    let opts = AdminOptions::new();

    let topic = described(&a, ResourceSpecifier::Topic("conf")).await;
    let retention = value(&topic, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let max = value(&topic, "max.message.bytes");
    assert_eq!(max.value.as_deref(), Some("1048588"));
    assert_eq!(max.source, ConfigSource::Default);

    // AlterConfigs replaces the topic's settings: retention.ms goes back
    // to its default, max.message.bytes is set.
    let res = a
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("conf")).set("max.message.bytes", "200")],
            &opts,
        )
        .await
        .expect("alter");
    assert_eq!(res, vec![Ok(OwnedResourceSpecifier::Topic("conf".into()))]);
    let topic = described(&a, ResourceSpecifier::Topic("conf")).await;
    assert_eq!(
        value(&topic, "max.message.bytes").value.as_deref(),
        Some("200")
    );
    assert_eq!(
        value(&topic, "retention.ms").value.as_deref(),
        Some("604800000")
    );
    // It takes effect: a batch over 200 bytes is refused.
    let p = producer(&ferry, "1", false);
    let big = "x".repeat(500);
    let err = p
        .send(
            FutureRecord::<(), _>::to("conf").payload(&big),
            Duration::from_secs(10),
        )
        .await
        .expect_err("too large");
    assert_eq!(
        err.0,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    );

    // Unknown keys and bad values are refused (rust-rdkafka does not pass
    // on per-resource errors, so the compatibility suite checks the codes
    // with confluent-kafka); nothing changes.
    for (key, val) in [("no.such.key", "1"), ("retention.ms", "-7")] {
        a.alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("conf")).set(key, val)],
            &opts,
        )
        .await
        .expect("alter");
    }
    let topic = described(&a, ResourceSpecifier::Topic("conf")).await;
    assert_eq!(
        value(&topic, "retention.ms").value.as_deref(),
        Some("604800000")
    );
    assert_eq!(
        value(&topic, "max.message.bytes").value.as_deref(),
        Some("200")
    );
    assert!(!topic.iter().any(|e| e.name == "no.such.key"));

    // The broker's settings are described, read-only, from ferry's config
    // (the compatibility suite checks an alter of them is refused).
    let broker = described(&a, ResourceSpecifier::Broker(0)).await;
    let parts = value(&broker, "num.partitions");
    assert_eq!(parts.value.as_deref(), Some("2"));
    assert!(parts.is_read_only);

    // Restart: the topic's settings were durable.
    drop(a);
    drop(ferry);
    let ferry = start(dir.path(), &[]);
    let a = admin(&ferry);
    let topic = described(&a, ResourceSpecifier::Topic("conf")).await;
    assert_eq!(
        value(&topic, "max.message.bytes").value.as_deref(),
        Some("200")
    );
}

/// Whether the broker closed `conn` (rather than answering or hanging:
/// a read that times out fails the test).
fn closed(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(e) => panic!("neither answered nor closed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apis_and_versions_not_served_get_kafkas_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &[]);
    let mut conn = TcpStream::connect(ferry.addr("kafka")).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    // Transactions: EndTxn is answered UNSUPPORTED_VERSION (35).
    let end: EndTxnResponse = call(
        &mut conn,
        ApiKey::EndTxn,
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_committed(true),
    );
    assert_eq!(end.error_code, 35);
    // SASL once the session has started (here by EndTxn): Kafka's
    // ILLEGAL_SASL_STATE, as re-authentication is not supported.
    let sasl: SaslHandshakeResponse = call(
        &mut conn,
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(sasl.error_code, 34, "ILLEGAL_SASL_STATE");
    // Kafka ACLs: SECURITY_DISABLED (54).
    let acls: DescribeAclsResponse = call(
        &mut conn,
        ApiKey::DescribeAcls,
        3,
        &DescribeAclsRequest::default(),
    );
    assert_eq!(acls.error_code, 54);
    // A served API at a version that is not: Fetch v17 (topic ids only).
    let fetch: FetchResponse = call(
        &mut conn,
        ApiKey::Fetch,
        17,
        &FetchRequest::default().with_max_wait_ms(10),
    );
    assert_eq!(fetch.error_code, 35);
    // The connection serves on.
    let cluster: DescribeClusterResponse = call(
        &mut conn,
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(cluster.cluster_id.to_string(), "ferry");

    // A response with nowhere to put an error (Produce v12, past the
    // versions served, has none at the top) or an API key Kafka does not
    // have: that connection is closed, and the broker serves others on.
    send(&mut conn, ApiKey::Produce, 12, &ProduceRequest::default());
    assert!(closed(&mut conn), "closed");
    let mut other = TcpStream::connect(ferry.addr("kafka")).expect("connect");
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    other
        .write_all(&[0, 0, 0, 10, 3, 231, 0, 0, 0, 0, 0, 1, 255, 255])
        .expect("send");
    assert!(closed(&mut other), "closed");
    let mut third = TcpStream::connect(ferry.addr("kafka")).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let cluster: DescribeClusterResponse = call(
        &mut third,
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(cluster.brokers.len(), 1);
}
