//! RabbitMQ stream queues over AMQP (lapin) against a real `ferry serve`:
//! declare, publish, consume from every kind of `x-stream-offset` with
//! acks as credit, RabbitMQ's refusals, an exchange feeding a stream and a
//! queue at once, a restart with the log kept; and the same log read and
//! written as a Kafka topic (rdkafka).

mod common;
mod kafka_support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::Ferry;

const WAIT: Duration = Duration::from_secs(10);

fn start(dir: &std::path::Path) -> Ferry {
    Ferry::start(dir, &["amqp", "kafka"], &[])
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn stream_args() -> FieldTable {
    table(&[("x-queue-type", text("stream"))])
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

async fn declare_stream(ch: &Channel, name: &str) {
    ch.queue_declare(name.into(), durable(), stream_args())
        .await
        .expect("declare stream");
}

/// Publishes `n` messages (bodies "m0".."m{n-1}", header `i`) through the
/// default exchange and waits for every confirm.
async fn publish(ch: &Channel, name: &str, from: usize, n: usize) {
    for i in from..from + n {
        let props = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_correlation_id(format!("c{i}").into())
            .with_headers(table(&[("i", AMQPValue::LongLongInt(i as i64))]));
        let confirm = ch
            .basic_publish(
                "".into(),
                name.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "message {i} nacked");
    }
}

/// A consumer of stream `name` from `offset`, on a channel of its own
/// with `prefetch`.
async fn stream_consumer(
    conn: &lapin::Connection,
    name: &str,
    offset: AMQPValue,
    prefetch: u16,
) -> (Channel, lapin::Consumer) {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let consumer = ch
        .basic_consume(
            name.into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[("x-stream-offset", offset)]),
        )
        .await
        .expect("consume");
    (ch, consumer)
}

/// A channel in confirm mode.
async fn confirming(conn: &lapin::Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

/// A consumer from `offset` with `prefetch`; reads `n` deliveries,
/// acking each, and returns (offset header, body, i header).
async fn consume(
    conn: &lapin::Connection,
    name: &str,
    offset: AMQPValue,
    prefetch: u16,
    n: usize,
) -> Vec<(i64, String, Option<i64>)> {
    let (ch, mut consumer) = stream_consumer(conn, name, offset, prefetch).await;
    let got = take(&mut consumer, n, true).await;
    let _ = ch.close(200, "done".into()).await;
    got
}

/// The next `n` deliveries of `consumer` as (offset header, body, i
/// header), each acked as it comes if `ack`.
async fn take(
    consumer: &mut lapin::Consumer,
    n: usize,
    ack: bool,
) -> Vec<(i64, String, Option<i64>)> {
    let mut got = Vec::new();
    while got.len() < n {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery in time")
            .expect("a delivery")
            .expect("delivery ok");
        let headers = d.properties.headers().clone().unwrap_or_default();
        let int = |k: &str| match headers.inner().get(k) {
            Some(AMQPValue::LongLongInt(v)) => Some(*v),
            Some(AMQPValue::LongInt(v)) => Some(i64::from(*v)),
            _ => None,
        };
        got.push((
            int("x-stream-offset").expect("offset header"),
            String::from_utf8_lossy(&d.data).into_owned(),
            int("i"),
        ));
        if ack {
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
    }
    got
}

/// What a consumer gets within `window` (nothing more expected).
async fn nothing_within(conn: &lapin::Connection, name: &str, offset: AMQPValue) -> usize {
    let (_ch, mut consumer) = stream_consumer(conn, name, offset, 10).await;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
    {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_queues_replay_from_any_offset_and_keep_their_log_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let ch = confirming(&conn).await;
    // Settings that must read back after the restart, a segment size
    // below Kafka's floor among them.
    let mut args = stream_args();
    args.insert("x-max-age".into(), text("30D"));
    args.insert(
        "x-stream-max-segment-size-bytes".into(),
        AMQPValue::LongInt(1000),
    );
    ch.queue_declare("events".into(), durable(), args)
        .await
        .expect("declare");
    publish(&ch, "events", 0, 10).await;

    // Every message, in order, with its offset; a prefetch of 3 is
    // enough for ten because each ack gives credit back.
    let all = consume(&conn, "events", text("first"), 3, 10).await;
    let want: Vec<_> = (0..10).map(|i| (i, format!("m{i}"), Some(i))).collect();
    assert_eq!(all, want);
    // Consuming removed nothing: a second reader sees it all again.
    assert_eq!(consume(&conn, "events", text("first"), 100, 10).await, want);
    // From an offset (and one past the end waits at the end).
    let from6 = consume(&conn, "events", AMQPValue::LongLongInt(6), 2, 4).await;
    assert_eq!(from6.first().map(|g| g.0), Some(6));
    // "last" is the newest chunk: here each publish is its own.
    assert_eq!(consume(&conn, "events", text("last"), 5, 1).await[0].0, 9);
    // By time: a timestamp before everything, and an interval.
    let ts = consume(&conn, "events", AMQPValue::Timestamp(1), 5, 10).await;
    assert_eq!(ts.len(), 10);
    assert_eq!(consume(&conn, "events", text("1h"), 5, 10).await[0].0, 0);
    // "next" (the default) sees only what comes after it starts.
    assert_eq!(nothing_within(&conn, "events", text("next")).await, 0);
    // The consumer is registered (consume-ok) before anything is
    // published, so "next" is before the two new messages.
    let (_next, mut consumer) = stream_consumer(&conn, "events", text("next"), 5).await;
    publish(&ch, "events", 10, 2).await;
    let later = take(&mut consumer, 2, true).await;
    assert_eq!(
        later,
        vec![(10, "m10".into(), Some(10)), (11, "m11".into(), Some(11))]
    );
    // A passive declare counts what the stream holds.
    let q = ch
        .queue_declare("events".into(), passive(), FieldTable::default())
        .await
        .expect("passive");
    assert_eq!(q.message_count(), 12);
    drop(conn);
    ferry.kill();

    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let got = consume(&conn, "events", text("first"), 50, 12).await;
    assert_eq!(got.len(), 12);
    assert!(got.iter().enumerate().all(|(i, g)| g.0 == i as i64));
    // Offsets go on where they were.
    let ch = confirming(&conn).await;
    publish(&ch, "events", 12, 1).await;
    assert_eq!(
        consume(&conn, "events", AMQPValue::LongLongInt(12), 1, 1).await[0].0,
        12
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefetch_count_is_credit_that_settling_gives_back() {
    use lapin::options::{BasicNackOptions, BasicRejectOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let ch = confirming(&conn).await;
    declare_stream(&ch, "credit").await;
    publish(&ch, "credit", 0, 6).await;
    let (_c, mut consumer) = stream_consumer(&conn, "credit", text("first"), 2).await;
    async fn soon(c: &mut lapin::Consumer) -> Option<lapin::message::Delivery> {
        tokio::time::timeout(Duration::from_millis(500), c.next())
            .await
            .ok()
            .flatten()
            .map(|d| d.expect("delivery ok"))
    }
    // Two deliveries and no more while neither is settled.
    let d0 = soon(&mut consumer).await.expect("delivery 0");
    let d1 = soon(&mut consumer).await.expect("delivery 1");
    assert!(
        soon(&mut consumer).await.is_none(),
        "a third delivery came with no credit"
    );
    // Each settlement gives one back, whatever it is; nothing is
    // redelivered (the log moves on).
    d0.reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let d2 = soon(&mut consumer).await.expect("delivery 2");
    assert!(soon(&mut consumer).await.is_none());
    d1.nack(BasicNackOptions {
        requeue: true,
        multiple: false,
    })
    .await
    .expect("nack");
    let d3 = soon(&mut consumer).await.expect("delivery 3");
    let offset = |d: &lapin::message::Delivery| {
        d.properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-stream-offset").cloned())
    };
    assert_eq!(offset(&d2), Some(AMQPValue::LongLongInt(2)));
    assert_eq!(offset(&d3), Some(AMQPValue::LongLongInt(3)));
    assert!(!d2.redelivered && !d3.redelivered);
    // A multiple ack of both gives two back.
    d3.ack(BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    assert!(soon(&mut consumer).await.is_some() && soon(&mut consumer).await.is_some());
    assert!(soon(&mut consumer).await.is_none(), "all six were read");
}

/// A ferry on a fresh directory, a connection and a channel to it, and
/// stream `name` declared.
async fn with_stream(name: &str) -> (tempfile::TempDir, Ferry, lapin::Connection, Channel) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    declare_stream(&ch, name).await;
    (dir, ferry, conn, ch)
}

/// Publishes one persistent message on `ch` (in confirm mode) and waits
/// for its ack.
async fn publish_persistent(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    let c = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(c.is_ack(), "{key}: nacked");
}

/// Takes one message from `queue` and rejects it without requeue (so it
/// is dead-lettered).
async fn reject_one(ch: &Channel, queue: &str) {
    let got = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    got.delivery
        .reject(lapin::options::BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
}

/// How many messages queue or stream `name` holds (a passive declare).
async fn held(ch: &Channel, name: &str) -> u32 {
    ch.queue_declare(name.into(), passive(), FieldTable::default())
        .await
        .expect("passive declare")
        .message_count()
}

/// A channel error's reply code, from the error lapin reports.
fn code_of(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_queues_refuse_what_rabbitmq_refuses() {
    let (_dir, _ferry, conn, _ch) = with_stream("s").await;

    let refused = |what: &'static str, want: u16, r: Result<(), lapin::Error>| {
        let e = r.expect_err(what);
        assert_eq!(code_of(&e), Some(want), "{what}: {e}");
    };
    let ch = conn.create_channel().await.expect("channel");
    refused(
        "non-durable",
        406,
        ch.queue_declare("t".into(), QueueDeclareOptions::default(), stream_args())
            .await
            .map(drop),
    );
    let ch = conn.create_channel().await.expect("channel");
    let mut args = stream_args();
    args.insert("x-max-length".into(), AMQPValue::LongInt(5));
    refused(
        "x-max-length",
        406,
        ch.queue_declare("t".into(), durable(), args)
            .await
            .map(drop),
    );
    // The same declare again is fine; another x-max-age is not.
    let ch = conn.create_channel().await.expect("channel");
    declare_stream(&ch, "s").await;
    let mut aged = stream_args();
    aged.insert("x-max-age".into(), text("1D"));
    refused(
        "another max age",
        406,
        ch.queue_declare("s".into(), durable(), aged)
            .await
            .map(drop),
    );
    let ch = conn.create_channel().await.expect("channel");
    refused(
        "classic over a stream",
        406,
        ch.queue_declare(
            "s".into(),
            durable(),
            table(&[("x-queue-type", text("classic"))]),
        )
        .await
        .map(drop),
    );
    let ch = conn.create_channel().await.expect("channel");
    refused(
        "basic.get",
        540,
        ch.basic_get("s".into(), BasicGetOptions::default())
            .await
            .map(drop),
    );
    // Consumers: no prefetch count, automatic acks, an offset that is none.
    for (what, want, prefetch, no_ack, offset) in [
        ("no prefetch", 406, 0, false, None),
        ("automatic acks", 540, 5, true, None),
        ("a bad offset", 406, 5, false, Some(text("yesterday"))),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        if prefetch > 0 {
            ch.basic_qos(prefetch, BasicQosOptions::default())
                .await
                .expect("qos");
        }
        let args = offset.map_or_else(FieldTable::default, |o| table(&[("x-stream-offset", o)]));
        let options = BasicConsumeOptions {
            no_ack,
            ..BasicConsumeOptions::default()
        };
        refused(
            what,
            want,
            ch.basic_consume("s".into(), "".into(), options, args)
                .await
                .map(drop),
        );
    }
    // A channel-wide prefetch is not credit a stream consumer takes.
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(5, BasicQosOptions::default())
        .await
        .expect("qos");
    ch.basic_qos(10, BasicQosOptions { global: true })
        .await
        .expect("global qos");
    refused(
        "global qos",
        540,
        ch.basic_consume(
            "s".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(drop),
    );
    let ch = conn.create_channel().await.expect("channel");
    refused(
        "purge",
        540,
        ch.queue_purge("s".into(), QueuePurgeOptions::default())
            .await
            .map(drop),
    );
    // The connection lived through all of it; deleting the stream works,
    // and it is gone.
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_delete("s".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    refused(
        "passive after delete",
        404,
        ch.queue_declare("s".into(), passive(), FieldTable::default())
            .await
            .map(drop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_feeds_a_stream_and_a_queue_with_one_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let ch = confirming(&conn).await;
    declare_stream(&ch, "audit").await;
    ch.queue_declare("work".into(), durable(), FieldTable::default())
        .await
        .expect("queue");
    ch.exchange_declare(
        "orders".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    for q in ["audit", "work"] {
        ch.queue_bind(
            q.into(),
            "orders".into(),
            "order.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
    for key in ["order.created", "order.paid", "invoice.sent"] {
        publish_persistent(&ch, "orders", key, key.as_bytes()).await;
    }
    let logged = consume(&conn, "audit", text("first"), 10, 2).await;
    let bodies: Vec<_> = logged.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(bodies, ["order.created", "order.paid"]);
    assert_eq!(
        nothing_within(&conn, "audit", AMQPValue::LongLongInt(2)).await,
        0
    );
    let work = ch
        .basic_get("work".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(&work.delivery.data[..], b"order.created");
    assert_eq!(work.delivery.routing_key.as_str(), "order.created");
    assert_eq!(work.delivery.exchange.as_str(), "orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_topic_and_a_stream_queue_are_one_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    kafka_support::create_topic(&ferry, "clicks", 1, &[]).await;
    let producer = kafka_support::producer(&ferry, "all", true);
    producer
        .send(
            FutureRecord::to("clicks")
                .key("user-7")
                .payload("from kafka")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "source",
                    value: Some("web"),
                })),
            Duration::from_secs(10),
        )
        .await
        .expect("produce");

    // Kafka -> AMQP: the key is the routing key, headers are headers.
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    // Declaring it over AMQP finds the topic.
    declare_stream(&ch, "clicks").await;
    let (_consuming, mut consumer) = stream_consumer(&conn, "clicks", text("first"), 5).await;
    let d = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("in time")
        .expect("delivery")
        .expect("ok");
    assert_eq!(&d.data[..], b"from kafka");
    assert_eq!(d.routing_key.as_str(), "user-7");
    let headers = d.properties.headers().clone().unwrap_or_default();
    assert_eq!(
        headers.inner().get("source"),
        Some(&AMQPValue::LongString("web".into()))
    );

    // AMQP -> Kafka: the routing key is the key, typed headers read as text.
    let pch = confirming(&conn).await;
    pch.exchange_declare(
        "in".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    pch.queue_bind(
        "clicks".into(),
        "in".into(),
        "user-9".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let c = pch
        .basic_publish(
            "in".into(),
            "user-9".into(),
            BasicPublishOptions::default(),
            b"from amqp",
            BasicProperties::default()
                .with_content_type("text/plain".into())
                .with_headers(table(&[("n", AMQPValue::LongInt(42))])),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(c.is_ack());
    let kc: BaseConsumer = kafka_support::config(&ferry)
        .set("group.id", "readers")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("clicks", 0, Offset::Offset(1))
        .expect("offset");
    kc.assign(&tpl).expect("assign");
    let deadline = Instant::now() + WAIT;
    let m = loop {
        assert!(Instant::now() < deadline, "no record from AMQP in time");
        if let Some(m) = kc.poll(Duration::from_millis(200)) {
            break m.expect("record").detach();
        }
    };
    assert_eq!(m.offset(), 1);
    assert_eq!(m.payload(), Some(&b"from amqp"[..]));
    assert_eq!(m.key(), Some(&b"user-9"[..]));
    let hs = m.headers().expect("headers");
    let get = |k: &str| {
        hs.iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(get("n").as_deref(), Some("42"));
    assert_eq!(get(":content-type").as_deref(), Some("text/plain"));
    assert_eq!(get(":exchange").as_deref(), Some("in"));

    // Deleted through Kafka: the AMQP consumer is cancelled and the
    // exchange's binding to it is gone (a mandatory publish comes back).
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka_support::config(&ferry).create().expect("admin");
    let deleted = admin
        .delete_topics(&["clicks"], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("delete topics");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(_)) = consumer.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the consumer was not cancelled");
    let c = pch
        .basic_publish(
            "in".into(),
            "user-9".into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            b"nowhere",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(
        c.take_message().is_some(),
        "the unroutable message came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_kafka_batches_read_over_amqp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    // The codecs this librdkafka build has without zlib or libzstd (the
    // Python suite covers gzip and zstd, and snappy in xerial framing).
    for codec in ["lz4", "snappy"] {
        let topic = format!("packed-{codec}");
        kafka_support::create_topic(&ferry, &topic, 1, &[]).await;
        let producer: rdkafka::producer::FutureProducer = kafka_support::config(&ferry)
            .set("acks", "all")
            .set("compression.codec", codec)
            .set("linger.ms", "50")
            .create()
            .expect("producer");
        let value = |i: usize| format!("record {i} ").repeat(30);
        let records: Vec<(String, String)> =
            (0..100).map(|i| (format!("k{i}"), value(i))).collect();
        // All queued before any is awaited, so the producer batches them
        // (`send` would queue each only when awaited).
        let sends: Vec<_> = records
            .iter()
            .map(|(k, v)| {
                producer
                    .send_result(FutureRecord::to(&topic).key(k).payload(v))
                    .map_err(|(e, _)| e)
                    .expect("queued")
            })
            .collect();
        for s in sends {
            s.await.expect("delivered").expect("produce");
        }

        let (_ch, mut consumer) = stream_consumer(&conn, &topic, text("first"), 20).await;
        for i in 0..100 {
            let d = tokio::time::timeout(WAIT, consumer.next())
                .await
                .unwrap_or_else(|_| panic!("{codec}: delivery {i} in time"))
                .expect("delivery")
                .expect("ok");
            assert_eq!(d.data, value(i).as_bytes(), "{codec} record {i}");
            assert_eq!(d.routing_key.as_str(), format!("k{i}"));
            let headers = d.properties.headers().clone().unwrap_or_default();
            assert_eq!(
                headers.inner().get("x-stream-offset"),
                Some(&AMQPValue::LongLongInt(i as i64))
            );
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
    }
    // The client really compressed: each partition's first stored batch
    // (after the segment's 40-byte header) names a codec in attributes
    // bits 0-2 (lz4 is 3, snappy 2).
    let mut codecs = Vec::new();
    for stream in std::fs::read_dir(dir.path().join("streams")).expect("streams") {
        let seg = stream
            .expect("entry")
            .path()
            .join("0/00000000000000000000.log");
        if let Ok(b) = std::fs::read(&seg) {
            codecs.push(i16::from_be_bytes([b[40 + 21], b[40 + 22]]) & 7);
        }
    }
    codecs.sort();
    assert_eq!(codecs, vec![2, 3], "stored batches' codecs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reads_partitions_added_after_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    kafka_support::create_topic(&ferry, "growing", 1, &[]).await;
    let conn = ferry.amqp_guest().await;
    let (_ch, mut consumer) = stream_consumer(&conn, "growing", text("next"), 10).await;

    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka_support::config(&ferry).create().expect("admin");
    let grown = admin
        .create_partitions(
            &[rdkafka::admin::NewPartitions::new("growing", 3)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("create partitions");
    assert!(grown[0].is_ok(), "{grown:?}");
    // Into the new partitions only, after they exist: the consumer started
    // at `next` when they did not, and still reads them from their start.
    let producer = kafka_support::producer(&ferry, "all", true);
    for p in [1, 2] {
        let body = format!("into {p}");
        producer
            .send(
                FutureRecord::to("growing")
                    .partition(p)
                    .key("k")
                    .payload(&body),
                Duration::from_secs(10),
            )
            .await
            .expect("produce");
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a record from a new partition in time")
            .expect("delivery")
            .expect("ok");
        let headers = d.properties.headers().clone().unwrap_or_default();
        let partition = headers.inner().get("x-stream-partition").cloned();
        got.push((String::from_utf8_lossy(&d.data).into_owned(), partition));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("into 1".to_owned(), Some(AMQPValue::LongLongInt(1))),
            ("into 2".to_owned(), Some(AMQPValue::LongLongInt(2))),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_takes_dead_letters_and_their_history() {
    let (dir, ferry, conn, ch) = with_stream("graveyard").await;
    // Dead letters of `work` go through the default exchange to the stream.
    ch.queue_declare(
        "work".into(),
        durable(),
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("graveyard")),
        ]),
    )
    .await
    .expect("declare work");
    publish_persistent(&confirming(&conn).await, "", "work", b"doomed").await;
    reject_one(&ch, "work").await;

    let (_c, mut consumer) = stream_consumer(&conn, "graveyard", text("first"), 5).await;
    let d = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the dead letter in time")
        .expect("delivery")
        .expect("ok");
    assert_eq!(&d.data[..], b"doomed");
    let headers = d.properties.headers().clone().unwrap_or_default();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death table: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("empty x-death");
    };
    assert_eq!(death.inner().get("queue"), Some(&text("work")));
    assert_eq!(death.inner().get("reason"), Some(&text("rejected")));
    assert_eq!(
        headers.inner().get("x-first-death-reason"),
        Some(&text("rejected"))
    );

    // The source's removal is journaled once the stream holds the letter
    // (a poll of a few milliseconds): after a crash the message is in the
    // stream only, not back in `work` too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(conn);
    ferry.kill();
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    let work = held(&ch, "work").await;
    assert_eq!(work, 0, "the dead letter came back to work");
    let stream = held(&ch, "graveyard").await;
    assert_eq!(stream, 1);

    // A clean stop right after a dead letter reached the stream journals
    // its removal on the way out (no waiting this time).
    publish_persistent(&confirming(&conn).await, "", "work", b"doomed too").await;
    reject_one(&ch, "work").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let q = held(&ch, "graveyard").await;
        if q == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second dead letter never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(conn);
    let mut ferry = ferry;
    // SAFETY: signalling the child this test started, by its pid.
    unsafe { libc::kill(ferry.child.id() as i32, libc::SIGTERM) };
    let status = ferry.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let ferry = start(dir.path());
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    let work = held(&ch, "work").await;
    assert_eq!(work, 0, "a dead letter came back after a clean stop");
}
