//! The AMQP face against a real client (lapin) over real sockets: a ferry
//! broker in this process, on a loopback port the test picks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_amqp::{Amqp, AmqpConfig, AuthConfig, Users};
use ferry_core::Broker;
use ferry_face::{Accepted, Registry, StreamFace};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(5);

struct Ferry {
    addr: SocketAddr,
    broker: Arc<Broker>,
    _stop: watch::Sender<bool>,
}

async fn ferry() -> Ferry {
    ferry_with(AmqpConfig::default(), AuthConfig::default()).await
}

async fn ferry_with(config: AmqpConfig, users: AuthConfig) -> Ferry {
    ferry_on(Broker::in_memory(), config, users).await
}

async fn ferry_on(broker: Arc<Broker>, config: AmqpConfig, users: AuthConfig) -> Ferry {
    let users = Arc::new(Users::fixed(users).expect("users"));
    let registry = Arc::new(Registry::default());
    let amqp = Amqp::new(Arc::clone(&broker), config, users).expect("amqp");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = watch::channel(false);
    // The server's accept loop in miniature: admit, then hand to the face.
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let Ok(admission) = registry.admit("amqp", peer) else {
                continue;
            };
            tokio::spawn(Arc::clone(&amqp).serve(Accepted {
                stream,
                peer,
                certified: None,
                admission,
                stop: stopped.clone(),
            }));
        }
    });
    Ferry {
        addr,
        broker,
        _stop: stop,
    }
}

impl Ferry {
    async fn connect(&self) -> Connection {
        Connection::connect(
            &format!("amqp://guest:guest@{}/%2f", self.addr),
            ConnectionProperties::default(),
        )
        .await
        .expect("connect")
    }

    async fn channel(&self) -> (Connection, Channel) {
        let c = self.connect().await;
        let ch = c.create_channel().await.expect("channel");
        (c, ch)
    }
}

fn s(v: &str) -> ShortString {
    v.into()
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn long(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// The reply code of a channel or connection error.
fn code(e: &lapin::Error) -> u16 {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => p.get_id(),
        other => panic!("not a protocol error: {other:?}"),
    }
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(s(name), QueueDeclareOptions::default(), args)
        .await
        .expect("declare");
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        s(exchange),
        s(key),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish");
}

/// A synchronous method's answer: everything sent before it on this
/// channel has been handled.
async fn round_trip(ch: &Channel) {
    ch.exchange_declare(
        s("amq.direct"),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare");
}

async fn get(ch: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(s(queue), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
}

async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
        .expect("delivery")
}

#[tokio::test]
async fn publish_with_confirms_then_consume_and_ack() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    ch.queue_declare(
        s("work"),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for i in 0..20u8 {
        let confirm = ch
            .basic_publish(
                s(""),
                s("work"),
                BasicPublishOptions::default(),
                &[i],
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_correlation_id(s(&format!("c{i}"))),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
    }
    let mut consumer = ch
        .basic_consume(
            s("work"),
            s("me"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..20u8 {
        let d = next(&mut consumer).await;
        assert_eq!(d.data, vec![i]);
        assert_eq!(
            d.properties.correlation_id().as_ref().map(|c| c.as_str()),
            Some(format!("c{i}").as_str())
        );
        assert_eq!(*d.properties.delivery_mode(), Some(2));
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    // Everything acked: nothing left, nothing leased.
    round_trip(&ch).await;
    let q = f.broker.queue("/", "work").expect("queue");
    let stats = q.stats();
    assert_eq!((stats.ready, stats.leased), (0, 0));
}

#[tokio::test]
async fn unacked_deliveries_come_back_redelivered_when_the_channel_closes() {
    let f = ferry().await;
    let (c, ch) = f.channel().await;
    declare(&ch, "q", FieldTable::default()).await;
    publish(&ch, "", "q", b"one", BasicProperties::default()).await;
    let mut consumer = ch
        .basic_consume(
            s("q"),
            s(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let d = next(&mut consumer).await;
    assert!(!d.redelivered);
    ch.close(200, s("bye")).await.expect("close");
    let ch2 = c.create_channel().await.expect("channel");
    let again = ch2
        .basic_get(s("q"), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("the message is back");
    assert!(again.delivery.redelivered);
    assert_eq!(again.delivery.data, b"one");
    ch2.basic_ack(again.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    assert!(get(&ch2, "q").await.is_none());
}

#[tokio::test]
async fn exchanges_route_by_kind_and_exchange_bindings_chain() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    for (name, kind) in [
        ("logs", ExchangeKind::Topic),
        ("all", ExchangeKind::Fanout),
        ("by-header", ExchangeKind::Headers),
    ] {
        ch.exchange_declare(
            s(name),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    }
    for q in ["errors", "everything", "fan1", "fan2", "matched"] {
        declare(&ch, q, FieldTable::default()).await;
    }
    let bind = |q: &'static str, x: &'static str, k: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            ch.queue_bind(s(q), s(x), s(k), QueueBindOptions::default(), args)
                .await
                .expect("bind");
        }
    };
    bind("errors", "logs", "*.error", FieldTable::default()).await;
    bind("everything", "logs", "#", FieldTable::default()).await;
    bind("fan1", "all", "", FieldTable::default()).await;
    bind("fan2", "all", "", FieldTable::default()).await;
    bind(
        "matched",
        "by-header",
        "",
        table(&[("x-match", long("all")), ("kind", long("invoice"))]),
    )
    .await;
    // Everything published to the topic exchange also goes to the fanout one.
    ch.exchange_bind(
        s("all"),
        s("logs"),
        s("#"),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange bind");

    publish(&ch, "logs", "db.error", b"e", BasicProperties::default()).await;
    publish(&ch, "logs", "db.info", b"i", BasicProperties::default()).await;
    let headers = table(&[("kind", long("invoice"))]);
    publish(
        &ch,
        "by-header",
        "",
        b"h",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    publish(&ch, "by-header", "", b"no", BasicProperties::default()).await;

    let count = |q: &str| f.broker.queue("/", q).expect("queue").stats().ready;
    round_trip(&ch).await;
    assert_eq!(count("errors"), 1);
    assert_eq!(count("everything"), 2);
    assert_eq!(count("fan1"), 2);
    assert_eq!(count("fan2"), 2);
    assert_eq!(count("matched"), 1);
    let m = get(&ch, "errors").await.expect("message");
    assert_eq!(m.delivery.exchange.as_str(), "logs");
    assert_eq!(m.delivery.routing_key.as_str(), "db.error");
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered_with_x_death() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    ch.exchange_declare(
        s("dlx"),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    declare(&ch, "dead", FieldTable::default()).await;
    ch.queue_bind(
        s("dead"),
        s("dlx"),
        s("rk"),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    declare(
        &ch,
        "live",
        table(&[
            ("x-dead-letter-exchange", long("dlx")),
            ("x-dead-letter-routing-key", long("rk")),
        ]),
    )
    .await;
    publish(&ch, "", "live", b"bad", BasicProperties::default()).await;
    let m = ch
        .basic_get(s("live"), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    )
    .await
    .expect("reject");
    let dead = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = get(&ch, "dead").await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("dead-lettered in time");
    assert_eq!(dead.delivery.data, b"bad");
    let headers = dead.delivery.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death in {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!("empty x-death");
    };
    assert_eq!(first.inner().get("reason"), Some(&long("rejected")));
    assert_eq!(first.inner().get("queue"), Some(&long("live")));
    assert_eq!(first.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
}

#[tokio::test]
async fn errors_close_the_channel_with_rabbitmq_codes_and_the_connection_lives() {
    let f = ferry().await;
    let c = f.connect().await;

    let ch = c.create_channel().await.expect("channel");
    let e = ch
        .queue_declare(
            s("missing"),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("passive declare of a missing queue");
    assert_eq!(code(&e), 404);

    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "q", FieldTable::default()).await;
    let e = ch
        .queue_declare(
            s("q"),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect_err("redeclare with other settings");
    assert_eq!(code(&e), 406);

    let ch = c.create_channel().await.expect("channel");
    // The publish itself is asynchronous: its confirm carries the error.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let e = ch
        .basic_publish(
            s("no-such-exchange"),
            s("k"),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish is sent")
        .await
        .expect_err("the channel was closed by the bad publish");
    assert_eq!(code(&e), 404, "no such exchange");

    let ch = c.create_channel().await.expect("channel");
    let e = ch
        .exchange_declare(
            s("amq.mine"),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("reserved name");
    assert_eq!(code(&e), 403);

    let ch = c.create_channel().await.expect("channel");
    let e = ch
        .basic_ack(999, BasicAckOptions::default())
        .await
        .and(
            ch.queue_declare(
                s("q3"),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(|_| ()),
        )
        .expect_err("unknown delivery tag closes the channel");
    // lapin reports the 406 as the channel being closed by then (the
    // Python suite checks the code itself).
    assert!(
        matches!(e.kind(), lapin::ErrorKind::InvalidChannelState(..)) || code(&e) == 406,
        "{e:?}"
    );

    // The connection is still good.
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "still-fine", FieldTable::default()).await;
}

#[tokio::test]
async fn exclusive_queues_belong_to_their_connection() {
    let f = ferry().await;
    let (c1, ch1) = f.channel().await;
    ch1.queue_declare(
        s("mine"),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let (_c2, ch2) = f.channel().await;
    let e = ch2
        .basic_get(s("mine"), BasicGetOptions::default())
        .await
        .expect_err("another connection's exclusive queue");
    assert_eq!(code(&e), 405);
    // close-ok comes after the connection's queues are gone.
    c1.close(200, s("bye")).await.expect("close");
    assert!(
        f.broker.queue("/", "mine").is_err(),
        "gone with its connection"
    );
}

#[tokio::test]
async fn mandatory_unroutable_messages_are_returned_before_their_confirm() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = ch
        .basic_publish(
            s(""),
            s("nowhere"),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    let returned = confirm.take_message().expect("returned");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.delivery.data, b"lost");
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(&ch, "q", FieldTable::default()).await;
    for i in 0..10u8 {
        publish(&ch, "", "q", &[i], BasicProperties::default()).await;
    }
    ch.basic_qos(3, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            s("q"),
            s("c"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut consumer).await);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), consumer.next())
            .await
            .is_err(),
        "no fourth delivery while three are unacked"
    );
    // One ack (multiple) frees all three.
    held[2]
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    for _ in 0..3 {
        held.push(next(&mut consumer).await);
    }
    let tags: Vec<u8> = held.iter().map(|d| d.data[0]).collect();
    assert_eq!(tags, vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn transactions_publish_and_ack_only_on_commit() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(&ch, "q", FieldTable::default()).await;
    ch.tx_select().await.expect("tx");
    publish(&ch, "", "q", b"rolled back", BasicProperties::default()).await;
    ch.tx_rollback().await.expect("rollback");
    publish(&ch, "", "q", b"kept", BasicProperties::default()).await;
    let q = f.broker.queue("/", "q").expect("queue");
    assert_eq!(q.stats().ready, 0, "nothing before commit");
    ch.tx_commit().await.expect("commit");
    assert_eq!(q.stats().ready, 1);
    let m = get(&ch, "q").await.expect("message");
    assert_eq!(m.delivery.data, b"kept");
}

#[tokio::test]
async fn direct_reply_to_answers_a_request() {
    let f = ferry().await;
    let (_c, client) = f.channel().await;
    let (_s, server) = f.channel().await;
    declare(&server, "rpc", FieldTable::default()).await;
    let mut replies = client
        .basic_consume(
            s("amq.rabbitmq.reply-to"),
            s("replies"),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply consumer");
    publish(
        &client,
        "",
        "rpc",
        b"2+2",
        BasicProperties::default()
            .with_reply_to(s("amq.rabbitmq.reply-to"))
            .with_correlation_id(s("req-1")),
    )
    .await;
    let mut requests = server
        .basic_consume(
            s("rpc"),
            s(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let req = next(&mut requests).await;
    let reply_to = req.properties.reply_to().clone().expect("reply-to");
    assert!(reply_to.as_str().starts_with("amq.rabbitmq.reply-to."));
    publish(
        &server,
        "",
        reply_to.as_str(),
        b"4",
        BasicProperties::default().with_correlation_id(s("req-1")),
    )
    .await;
    req.ack(BasicAckOptions::default()).await.expect("ack");
    let answer = next(&mut replies).await;
    assert_eq!(answer.data, b"4");
    assert_eq!(
        answer
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("req-1")
    );
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(&ch, "short-lived", FieldTable::default()).await;
    let mut consumer = ch
        .basic_consume(
            s("short-lived"),
            s("c"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (_c2, other) = f.channel().await;
    other
        .queue_delete(s("short-lived"), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let end = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the consumer ends in time");
    assert!(end.is_none(), "the stream ends with basic.cancel: {end:?}");
}

#[tokio::test]
async fn priorities_ttl_and_max_length_work_as_in_rabbitmq() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(
        &ch,
        "prio",
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
    )
    .await;
    for p in [1u8, 9, 5] {
        publish(
            &ch,
            "",
            "prio",
            &[p],
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(get(&ch, "prio").await.expect("message").delivery.data[0]);
    }
    assert_eq!(got, vec![9, 5, 1]);

    declare(
        &ch,
        "capped",
        table(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await;
    for i in 0..5u8 {
        publish(&ch, "", "capped", &[i], BasicProperties::default()).await;
    }
    assert_eq!(
        get(&ch, "capped").await.expect("message").delivery.data,
        vec![3]
    );

    declare(&ch, "ttl", FieldTable::default()).await;
    publish(
        &ch,
        "",
        "ttl",
        b"gone",
        BasicProperties::default().with_expiration(s("1")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(get(&ch, "ttl").await.is_none(), "expired after 1 ms");
}

#[tokio::test]
async fn reject_publish_overflow_nacks_the_publisher() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(
        &ch,
        "full",
        table(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", long("reject-publish")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut outcomes = Vec::new();
    for i in 0..2u8 {
        let c = ch
            .basic_publish(
                s(""),
                s("full"),
                BasicPublishOptions::default(),
                &[i],
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        outcomes.push(c.is_ack());
    }
    assert_eq!(outcomes, vec![true, false]);
}

/// Bytes that are not AMQP close that one connection; the broker serves on.
#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let f = ferry().await;
    // Another protocol: the broker answers with its protocol header and closes.
    let mut raw = TcpStream::connect(f.addr).await.expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(buf, b"AMQP\x00\x00\x09\x01");

    // A frame of an unknown type after the header: connection.close 501.
    let mut raw = TcpStream::connect(f.addr).await.expect("connect");
    raw.write_all(b"AMQP\x00\x00\x09\x01").await.expect("write");
    let mut start = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, raw.read(&mut start))
        .await
        .expect("connection.start in time")
        .expect("read");
    assert!(n > 0);
    raw.write_all(&[9, 0, 0, 0, 0, 0, 0, 0xCE])
        .await
        .expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    // connection.close: class 10, method 50, reply code 501.
    let close = rest.windows(6).any(|w| w == [0, 10, 0, 50, 0x01, 0xF5]);
    assert!(close, "expected connection.close 501 in {rest:?}");

    // And the broker still serves.
    let (_c, ch) = f.channel().await;
    declare(&ch, "alive", FieldTable::default()).await;
}

#[tokio::test]
async fn bad_credentials_are_refused() {
    let f = ferry().await;
    let e = Connection::connect(
        &format!("amqp://guest:wrong@{}/%2f", f.addr),
        ConnectionProperties::default(),
    )
    .await
    .expect_err("wrong password");
    assert_eq!(code(&e), 403);
    let e = Connection::connect(
        &format!("amqp://guest:guest@{}/nope", f.addr),
        ConnectionProperties::default(),
    )
    .await
    .expect_err("unknown vhost");
    assert_eq!(code(&e), 530);
}

#[tokio::test]
async fn a_no_ack_consumer_gets_a_backlog_larger_than_the_in_flight_cap() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(&ch, "backlog", FieldTable::default()).await;
    let n = 5_000u32;
    for i in 0..n {
        publish(
            &ch,
            "",
            "backlog",
            &i.to_be_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    round_trip(&ch).await;
    let mut consumer = ch
        .basic_consume(
            s("backlog"),
            s("fast"),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..n {
        let d = next(&mut consumer).await;
        assert_eq!(d.data, i.to_be_bytes(), "in order, none lost");
    }
}

#[tokio::test]
async fn cancelling_a_no_ack_consumer_loses_nothing_on_its_way() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(&ch, "q", FieldTable::default()).await;
    let n = 3_000u32;
    for i in 0..n {
        publish(&ch, "", "q", &i.to_be_bytes(), BasicProperties::default()).await;
    }
    let mut consumer = ch
        .basic_consume(
            s("q"),
            s("c"),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    next(&mut consumer).await;
    ch.basic_cancel(s("c"), BasicCancelOptions::default())
        .await
        .expect("cancel");
    // Whatever was written before cancel-ok reached the client's stream.
    let mut got = 1u32;
    while let Ok(Some(Ok(_))) =
        tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
    {
        got += 1;
    }
    let left = f.broker.queue("/", "q").expect("queue").stats().ready as u32;
    assert_eq!(got + left, n, "delivered {got}, left {left}");
}

#[tokio::test]
async fn a_global_qos_limits_the_whole_channel() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    for q in ["a", "b"] {
        declare(&ch, q, FieldTable::default()).await;
        for i in 0..5u8 {
            publish(&ch, "", q, &[i], BasicProperties::default()).await;
        }
    }
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .expect("qos");
    let mut a = ch
        .basic_consume(
            s("a"),
            s("ca"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut b = ch
        .basic_consume(
            s("b"),
            s("cb"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let stats = |q: &str| f.broker.queue("/", q).expect("queue").stats();
    let leased = || stats("a").leased + stats("b").leased;
    let acked = || stats("a").acked + stats("b").acked;
    until(|| leased() == 3).await;
    // Everything the broker had to do for this channel is done by now (the
    // reply comes after it): still three, not more.
    round_trip(&ch).await;
    assert_eq!(leased(), 3, "three unacked across both consumers");
    // Acking frees room for more.
    let first = tokio::select! {
        d = next(&mut a) => d,
        d = next(&mut b) => d,
    };
    first.ack(BasicAckOptions::default()).await.expect("ack");
    until(|| acked() == 1 && leased() == 3).await;
    round_trip(&ch).await;
    assert_eq!(leased(), 3);
}

/// Waits (bounded) until `ok` holds.
async fn until(ok: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the condition never held");
}

#[tokio::test]
async fn acking_a_tag_twice_in_a_transaction_is_refused() {
    let f = ferry().await;
    let (_c, ch) = f.channel().await;
    declare(&ch, "q", FieldTable::default()).await;
    publish(&ch, "", "q", b"x", BasicProperties::default()).await;
    let m = ch
        .basic_get(s("q"), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    ch.tx_select().await.expect("tx");
    let tag = m.delivery.delivery_tag;
    ch.basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("sent");
    let e = ch
        .tx_commit()
        .await
        .expect_err("the second ack closed the channel");
    assert!(
        matches!(e.kind(), lapin::ErrorKind::InvalidChannelState(..)) || code(&e) == 406,
        "{e:?}"
    );
    // Nothing was committed: the message is still held, then back on close.
    assert_eq!(
        f.broker.queue("/", "q").expect("queue").stats().leased
            + f.broker.queue("/", "q").expect("queue").stats().ready,
        1
    );
}

/// Field tables nested thousands deep would overflow a recursive parser.
#[tokio::test]
async fn deeply_nested_tables_are_refused_before_login() {
    let f = ferry().await;
    let mut raw = TcpStream::connect(f.addr).await.expect("connect");
    raw.write_all(b"AMQP\x00\x00\x09\x01").await.expect("write");
    let mut start = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, raw.read(&mut start))
        .await
        .expect("connection.start in time")
        .expect("read");
    assert!(n > 0);
    // connection.start-ok whose client properties nest arrays 800 deep
    // (it fits the 4 KiB frames allowed before tune).
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..800 {
        let mut outer = vec![b'A'];
        outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    let mut table = vec![1, b'k'];
    table.extend_from_slice(&inner);
    let mut payload = vec![0, 10, 0, 11];
    payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
    payload.extend_from_slice(&table);
    let mut frame = vec![1, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    raw.write_all(&frame).await.expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    // connection.close with 502 SYNTAX_ERROR.
    assert!(
        rest.windows(6).any(|w| w == [0, 10, 0, 50, 0x01, 0xF6]),
        "expected connection.close 502 in {rest:?}"
    );
    let (_c, ch) = f.channel().await;
    declare(&ch, "alive", FieldTable::default()).await;
}

#[tokio::test]
async fn users_get_only_the_vhosts_and_resources_their_permissions_name() {
    let auth: ferry_auth::AuthConfig = toml::from_str(
        r#"
        [[users]]
        name = "app"
        password = "pw"

        [[permissions]]
        user = "app"
        vhost = "/"
        configure = "^app\\."
        write = "^(app\\.|amq\\.default$)"
        read = "^app\\."
        "#,
    )
    .expect("parse");
    let config = AmqpConfig {
        vhosts: vec!["other".into()],
        ..AmqpConfig::default()
    };
    let f = ferry_with(config, auth).await;
    let addr = f.addr;
    let login = |vhost: &'static str| async move {
        Connection::connect(
            &format!("amqp://app:pw@{addr}/{vhost}"),
            ConnectionProperties::default(),
        )
        .await
    };
    let e = login("other").await.expect_err("no permissions on 'other'");
    assert_eq!(code(&e), 530);
    let guest = Connection::connect(
        &format!("amqp://guest:guest@{}/%2f", f.addr),
        ConnectionProperties::default(),
    )
    .await
    .expect_err("configured users replace guest");
    assert_eq!(code(&guest), 403);

    let c = login("%2f").await.expect("login");
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "app.jobs", FieldTable::default()).await;
    publish(&ch, "", "app.jobs", b"ok", BasicProperties::default()).await;
    assert_eq!(
        get(&ch, "app.jobs").await.expect("message").delivery.data,
        b"ok"
    );
    let e = ch
        .queue_declare(
            s("app.dead-lettering"),
            QueueDeclareOptions::default(),
            table(&[("x-dead-letter-exchange", long("secret"))]),
        )
        .await
        .expect_err("dead-lettering into an exchange the user may not write to");
    assert_eq!(code(&e), 403);
    let ch = c.create_channel().await.expect("channel");
    let e = ch
        .queue_declare(
            s("other.jobs"),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("configure refused");
    assert_eq!(code(&e), 403);
    let ch = c.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let e = ch
        .basic_publish(
            s("amq.topic"),
            s("k"),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("sent")
        .await
        .expect_err("write to amq.topic refused");
    assert_eq!(code(&e), 403);
}

#[tokio::test]
async fn a_resource_alarm_blocks_publishers_and_lets_consumers_drain() {
    let f = ferry().await;
    let (publisher, ch) = f.channel().await;
    declare(&ch, "q", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for body in [&b"first"[..], b"before"] {
        assert!(
            confirmable(&ch, body)
                .await
                .await
                .expect("confirm")
                .is_ack()
        );
    }

    f.broker.set_alarm(Some("memory: test".into()));
    // Having published before the alarm does not block: the connection
    // may still take and ack what it consumes.
    let got = ch
        .basic_get(s("q"), BasicGetOptions::default())
        .await
        .expect("get during the alarm")
        .expect("message");
    got.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(got.delivery.data, b"first");
    assert!(!publisher.status().blocked());
    let held = confirmable(&ch, b"during").await;
    let held = tokio::time::timeout(Duration::from_millis(300), held).await;
    assert!(held.is_err(), "no confirm while the alarm is raised");
    tokio::time::timeout(WAIT, async {
        while !publisher.status().blocked() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connection.blocked reached the client");

    // A consumer on another connection still gets what was published before.
    let (_c, consumer) = f.channel().await;
    let first = get(&consumer, "q").await.expect("message");
    assert_eq!(first.delivery.data, b"before");

    f.broker.set_alarm(None);
    tokio::time::timeout(WAIT, async {
        while publisher.status().blocked() || get(&consumer, "q").await.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("unblocked, and the held publish went through");
}

/// Publishes to "q"; the confirm is for the caller to await (or not).
async fn confirmable(ch: &Channel, body: &[u8]) -> lapin::PublisherConfirm {
    ch.basic_publish(
        s(""),
        s("q"),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("sent")
}

/// A store whose commits settle only when the test says: `release` makes
/// everything appended so far durable, `fail` fails it.
#[derive(Default)]
struct GatedStore {
    appended: std::sync::Mutex<u64>,
    progress: Arc<ferry_core::store::Tracker>,
}

impl GatedStore {
    fn last(&self) -> u64 {
        *self.appended.lock().expect("gate")
    }

    fn release(&self) {
        let last = self.last();
        self.progress.update(|p| p.done = last);
    }

    fn fail(&self) {
        let last = self.last();
        self.progress.update(|p| {
            let first = p.done + 1;
            p.fail(first, last, ferry_core::store::StoreError::Full)
        });
    }
}

impl ferry_core::store::Store for GatedStore {
    fn append(
        &self,
        records: &mut Vec<ferry_core::store::Record>,
        locations: &mut Vec<ferry_core::store::Location>,
    ) -> Result<ferry_core::store::Commit, ferry_core::store::StoreError> {
        let mut n = self.appended.lock().expect("gate");
        for r in records.drain(..) {
            if matches!(r, ferry_core::store::Record::Enqueued { .. }) {
                locations.push(ferry_core::store::Location(0));
            }
        }
        *n += 1;
        Ok(ferry_core::store::Commit::pending(
            *n,
            Arc::clone(&self.progress),
        ))
    }

    fn recover(
        &self,
        _visit: &mut dyn FnMut(ferry_core::store::Record, Option<ferry_core::store::Location>),
    ) -> Result<(), ferry_core::store::StoreError> {
        Ok(())
    }

    fn barrier(&self) -> ferry_core::store::Commit {
        ferry_core::store::Commit::pending(self.last(), Arc::clone(&self.progress))
    }
}

/// Whether `fut` is still waiting after a moment (a reply that must wait
/// for the journal has not come early).
async fn still_waiting<F: std::future::Future + Unpin>(fut: &mut F) -> bool {
    tokio::time::timeout(Duration::from_millis(300), fut)
        .await
        .is_err()
}

#[tokio::test]
async fn durable_declarations_are_answered_once_the_journal_has_them() {
    let store = Arc::new(GatedStore::default());
    let broker = Broker::open(
        Arc::new(ferry_core::clock::SystemClock::new()),
        Arc::new(ferry_core::ids::RandomIds::new()),
        Arc::clone(&store) as Arc<dyn ferry_core::store::Store>,
    )
    .expect("broker");
    let f = ferry_on(broker, AmqpConfig::default(), AuthConfig::default()).await;
    store.release();
    let (_c, ch) = f.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };

    // declare-ok waits for the queue's record; so does what comes after it
    // on the connection (replies keep the order of the methods).
    let mut declared = Box::pin(ch.queue_declare(s("kept"), durable, FieldTable::default()));
    assert!(
        still_waiting(&mut declared).await,
        "declare-ok before the journal had the queue"
    );
    let mut bound = Box::pin(ch.queue_bind(
        s("kept"),
        s("amq.direct"),
        s("k"),
        QueueBindOptions::default(),
        FieldTable::default(),
    ));
    assert!(still_waiting(&mut bound).await);
    store.release();
    tokio::time::timeout(WAIT, declared)
        .await
        .expect("declare-ok once durable")
        .expect("declared");
    // The bind's own record was appended only once the connection read it.
    assert!(
        still_waiting(&mut bound).await,
        "bind-ok before the journal had the binding"
    );
    store.release();
    tokio::time::timeout(WAIT, bound)
        .await
        .expect("bind-ok once durable")
        .expect("bound");

    // A transient queue journals nothing and is answered at once, and a
    // redeclaration of a durable one waits only for what is pending.
    let (c2, ch2) = f.channel().await;
    tokio::time::timeout(
        WAIT,
        ch2.queue_declare(
            s("transient"),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("transient declare-ok at once")
    .expect("declared");
    tokio::time::timeout(
        WAIT,
        ch2.queue_declare(s("kept"), durable, FieldTable::default()),
    )
    .await
    .expect("redeclare-ok once nothing is pending")
    .expect("redeclared");

    // A declaration the journal cannot keep fails its channel with 541,
    // and the connection goes on.
    let mut failed = Box::pin(ch2.exchange_declare(
        s("lost"),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ));
    assert!(still_waiting(&mut failed).await);
    store.fail();
    let e = tokio::time::timeout(WAIT, failed)
        .await
        .expect("an answer once the commit failed")
        .expect_err("exchange.declare whose record failed");
    assert_eq!(code(&e), 541);
    let ch3 = c2.create_channel().await.expect("the connection lives");
    store.release();

    // purge-ok waits for the removals of persistent messages.
    publish(
        &ch3,
        "",
        "kept",
        b"to purge",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await;
    until(|| {
        f.broker
            .queue("/", "kept")
            .is_ok_and(|q| q.stats().ready == 1)
    })
    .await;
    store.release();
    let mut purged = Box::pin(ch3.queue_purge(s("kept"), QueuePurgeOptions::default()));
    assert!(
        still_waiting(&mut purged).await,
        "purge-ok before the removal was durable"
    );
    store.release();
    assert_eq!(
        tokio::time::timeout(WAIT, purged)
            .await
            .expect("purge-ok once durable")
            .expect("purged"),
        1
    );
    tokio::time::timeout(
        WAIT,
        ch3.queue_declare(
            s("kept"),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("passive declare")
    .expect("the queue is there");
}

/// Advances `clock` a step at a time until `done` (bounded): the broker's
/// timers see the new time once their tasks run.
async fn advance_until(
    clock: &ferry_core::clock::FakeClock,
    step: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    for _ in 0..50 {
        clock.advance(step);
        for _ in 0..10 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    done()
}

#[tokio::test]
async fn handshake_timeouts_and_heartbeats_run_on_the_brokers_clock() {
    let clock = ferry_core::clock::FakeClock::default();
    let broker = Broker::open(
        Arc::new(clock.clone()),
        Arc::new(ferry_core::ids::RandomIds::new()),
        Arc::new(ferry_core::store::MemoryStore::new()),
    )
    .expect("broker");
    let f = ferry_on(broker, AmqpConfig::default(), AuthConfig::default()).await;

    // A client that says nothing is closed once the broker's clock passes
    // the handshake timeout, and not before: real time does not count.
    let mut silent = TcpStream::connect(f.addr).await.expect("connect");
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), silent.read(&mut buf))
            .await
            .is_err(),
        "closed before the broker's clock moved"
    );
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let closed = Arc::clone(&closed);
        tokio::spawn(async move {
            let n = silent.read(&mut buf).await.unwrap_or(0);
            closed.store(n == 0, std::sync::atomic::Ordering::SeqCst);
        })
    };
    assert!(
        advance_until(&clock, Duration::from_secs(5), || closed
            .load(std::sync::atomic::Ordering::SeqCst))
        .await,
        "the handshake never timed out"
    );
    watcher.await.expect("watcher");

    // An open connection whose client sends nothing for two heartbeat
    // intervals of the broker's clock is closed.
    let c = f.connect().await;
    let _ch = c.create_channel().await.expect("channel");
    assert!(c.status().connected());
    assert!(
        advance_until(&clock, Duration::from_secs(30), || !c.status().connected()).await,
        "missed heartbeats never noticed"
    );
}
