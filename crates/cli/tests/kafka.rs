//! The Kafka face against a real `ferry serve` with librdkafka (through
//! rdkafka): topics, produce with every acks mode and idempotence, fetch
//! with long polls, offsets by time, restart with the data kept.

mod common;
mod kafka_support;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::Ferry;
use kafka_support::{config, create_topic, producer, start};

/// Every record of `topic`'s partitions from the start: (partition,
/// offset, key, value), read until `want` came or 20 s passed.
type Got = (i32, i64, String, String, Option<String>);

fn consume_all(ferry: &Ferry, topic: &str, partitions: i32, want: usize) -> Vec<Got> {
    let consumer: BaseConsumer = config(ferry)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == "n"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            )),
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_every_acks_mode_consume_and_keep_it_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &[]);
    create_topic(&ferry, "orders", 3, &[("retention.ms", "-1")]).await;

    let durable = producer(&ferry, "all", true);
    for i in 0..30 {
        let key = format!("k{i}");
        let value = format!("order {i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_string()),
        });
        let d = durable
            .send(
                FutureRecord::to("orders")
                    .partition(i % 3)
                    .key(&key)
                    .payload(&value)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .expect("acked");
        assert_eq!((d.partition, d.offset), (i % 3, i64::from(i / 3)));
    }
    let one = producer(&ferry, "1", false);
    let zero = producer(&ferry, "0", false);
    for i in 0..5 {
        let v = format!("acks1 {i}");
        one.send(
            FutureRecord::to("orders")
                .partition(0)
                .key("a1")
                .payload(&v),
            Duration::from_secs(10),
        )
        .await
        .expect("acks=1");
        let v = format!("acks0 {i}");
        zero.send(
            FutureRecord::to("orders")
                .partition(1)
                .key("a0")
                .payload(&v),
            Duration::from_secs(10),
        )
        .await
        .expect("acks=0");
    }
    rdkafka::producer::Producer::flush(&zero, Duration::from_secs(10)).expect("flush");

    let got = consume_all(&ferry, "orders", 3, 40);
    assert_eq!(got.len(), 40, "{got:?}");
    for p in 0..3 {
        let offsets: Vec<i64> = got.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let dense: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, dense, "partition {p} offsets are dense");
    }
    assert!(
        got.iter()
            .any(|r| (r.0, r.1, r.2.as_str(), r.3.as_str()) == (2, 3, "k11", "order 11"))
    );
    assert!(
        got.iter()
            .any(|r| (r.0, r.1, r.2.as_str(), r.3.as_str()) == (0, 14, "a1", "acks1 4"))
    );

    // Headers come back as sent.
    assert!(
        got.iter()
            .any(|r| r.0 == 2 && r.1 == 3 && r.4.as_deref() == Some("11"))
    );
    drop((durable, one, zero));

    // SIGKILL: what was acknowledged was synced.
    ferry.kill();
    let ferry = start(dir.path(), &[]);
    let again = consume_all(&ferry, "orders", 3, 40);
    assert_eq!(again, got, "everything is there after a restart");
    let d = producer(&ferry, "all", true)
        .send(
            FutureRecord::to("orders")
                .partition(0)
                .key("x")
                .payload("after"),
            Duration::from_secs(10),
        )
        .await
        .expect("acked");
    assert_eq!(d.offset, 15, "offsets go on from where they were");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_time_auto_creation_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &["--kafka-num-partitions", "2"]);
    let p = producer(&ferry, "all", true);
    // Auto-created on the producer's metadata request, with 2 partitions.
    for (i, ts) in [1_000i64, 2_000, 3_000].into_iter().enumerate() {
        let v = format!("at {ts}");
        let d = p
            .send(
                FutureRecord::to("clicks")
                    .partition(1)
                    .key("k")
                    .payload(&v)
                    .timestamp(ts),
                Duration::from_secs(10),
            )
            .await
            .expect("acked");
        assert_eq!(d.offset, i as i64);
    }
    let consumer: BaseConsumer = config(&ferry)
        .set("group.id", "t")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some("clicks"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(meta.topics()[0].partitions().len(), 2);
    let mut q = TopicPartitionList::new();
    q.add_partition_offset("clicks", 1, Offset::Offset(1_500))
        .expect("tpl");
    q.add_partition_offset("clicks", 0, Offset::Offset(1_500))
        .expect("tpl");
    let found = consumer
        .offsets_for_times(q, Duration::from_secs(10))
        .expect("offsets for times");
    let at = |part: i32| {
        found
            .find_partition("clicks", part)
            .expect("partition")
            .offset()
    };
    assert_eq!(
        at(1),
        Offset::Offset(1),
        "the first record at or after the time"
    );
    assert_eq!(at(0), Offset::End, "nothing that new: the end");

    // A partition that does not exist is refused with Kafka's error.
    let err = p
        .send(
            FutureRecord::to("clicks")
                .partition(7)
                .key("k")
                .payload("x"),
            Duration::from_secs(5),
        )
        .await
        .expect_err("no partition 7");
    assert!(
        matches!(
            err.0,
            KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition)
        ),
        "{err:?}"
    );

    // Topic names Kafka refuses, and an existing topic, are refused on create.
    let admin: AdminClient<DefaultClientContext> = config(&ferry).create().expect("admin");
    let res = admin
        .create_topics(
            &[
                NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
                NewTopic::new("clicks", 1, TopicReplication::Fixed(1)),
                NewTopic::new("fine", 1, TopicReplication::Fixed(3)),
                NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon"),
            ],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    let codes: Vec<RDKafkaErrorCode> = res
        .iter()
        .map(|r| r.as_ref().expect_err("refused").1)
        .collect();
    assert_eq!(
        codes,
        vec![
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::TopicAlreadyExists,
            RDKafkaErrorCode::InvalidReplicationFactor,
            RDKafkaErrorCode::InvalidConfig,
        ]
    );
    let res = admin
        .delete_topics(&["clicks", "never-made"], &AdminOptions::new())
        .await
        .expect("delete topics");
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(
        res[1].as_ref().expect_err("unknown").1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
}

/// (partition, record count) of each partition in a fetch answer.
fn fetched(r: &kafka_protocol::messages::FetchResponse) -> Vec<(i32, u64)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let n = p.records.as_ref().map_or(0, |b| {
                ferry_core::stream::batch::headers(b)
                    .map(|(_, h)| h.record_count as u64)
                    .sum()
            });
            (p.partition_index, n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetch_sessions_answer_only_what_changed() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &[]);
    create_topic(&ferry, "sess", 2, &[]).await;
    let p = producer(&ferry, "all", false);
    let send = |partition: i32| {
        let p = p.clone();
        async move {
            p.send(
                FutureRecord::<(), _>::to("sess")
                    .payload("x")
                    .partition(partition),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
        }
    };
    send(0).await;
    let name = TopicName(StrBytes::from_static_str("sess"));
    let part = |i: i32, offset: i64| {
        FetchPartition::default()
            .with_partition(i)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)
    };
    let fetch = |id: i32, epoch: i32, parts: Vec<FetchPartition>, forget: Vec<i32>| {
        let mut req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(id)
            .with_session_epoch(epoch);
        if !parts.is_empty() {
            req.topics = vec![
                FetchTopic::default()
                    .with_topic(name.clone())
                    .with_partitions(parts),
            ];
        }
        if !forget.is_empty() {
            req.forgotten_topics_data = vec![
                ForgottenTopic::default()
                    .with_topic(name.clone())
                    .with_partitions(forget),
            ];
        }
        req
    };
    let mut conn = std::net::TcpStream::connect(ferry.addr("kafka")).expect("connect");
    let mut call = |req: FetchRequest| -> FetchResponse {
        kafka_support::call(&mut conn, ApiKey::Fetch, 12, &req)
    };

    // A full fetch opening a session: both partitions, and the session's id.
    let r = call(fetch(0, 0, vec![part(0, 0), part(1, 0)], vec![]));
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert!(id > 0, "a session was opened");
    assert_eq!(fetched(&r), vec![(0, 1), (1, 0)]);
    // Partition 0 moved on; nothing is new anywhere: nothing comes back.
    let r = call(fetch(id, 1, vec![part(0, 1)], vec![]));
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(fetched(&r), vec![]);
    // A record on partition 1, which this request does not name: the
    // session's offset for it (0) is used, and only it comes back.
    send(1).await;
    let r = call(fetch(id, 2, vec![], vec![]));
    assert_eq!(fetched(&r), vec![(1, 1)]);
    // Forgotten, partition 1 no longer comes back whatever arrives.
    let r = call(fetch(id, 3, vec![part(1, 1)], vec![1]));
    assert_eq!(fetched(&r), vec![]);
    send(1).await;
    send(0).await;
    let r = call(fetch(id, 4, vec![], vec![]));
    assert_eq!(fetched(&r), vec![(0, 1)]);
    // A repeated epoch and an unknown session: Kafka's errors.
    assert_eq!(call(fetch(id, 4, vec![], vec![])).error_code, 71);
    assert_eq!(call(fetch(id + 100, 1, vec![], vec![])).error_code, 70);
    // Closing the session: a sessionless full answer, and it is gone.
    let r = call(fetch(id, -1, vec![part(0, 0)], vec![]));
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(fetched(&r), vec![(0, 2)]);
    assert_eq!(call(fetch(id, 5, vec![], vec![])).error_code, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_finds_the_record_with_the_newest_timestamp() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), &[]);
    create_topic(&ferry, "times", 2, &[]).await;
    let p = producer(&ferry, "all", false);
    let base = 1_700_000_000_000i64;
    for ts in [base + 1000, base + 5000, base + 3000, base + 5000] {
        p.send(
            FutureRecord::<(), _>::to("times")
                .payload("x")
                .partition(0)
                .timestamp(ts),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
    let ask = |v: i16, ts: i64| {
        let mut req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("times")))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(ts),
                    ]),
            ]);
        if v >= 10 {
            req = req.with_timeout_ms(1000);
        }
        req
    };
    let mut conn = std::net::TcpStream::connect(ferry.addr("kafka")).expect("connect");
    for v in [7, 10] {
        let r: ListOffsetsResponse =
            kafka_support::call(&mut conn, ApiKey::ListOffsets, v, &ask(v, -3));
        let got: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.offset, p.timestamp))
            .collect();
        // The first record with the newest time; an empty partition has none.
        assert_eq!(got, vec![(0, 0, 1, base + 5000), (1, 0, -1, -1)], "v{v}");
    }
    // Latest tiered: nothing is tiered here.
    let r: ListOffsetsResponse =
        kafka_support::call(&mut conn, ApiKey::ListOffsets, 9, &ask(9, -5));
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].offset
        ),
        (0, -1)
    );
}
