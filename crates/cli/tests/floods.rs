//! Careless and hostile clients against a real ferry, bounded in count and
//! time: thousands of connections opened and dropped, and a consumer that
//! never reads while a producer pushes up to 1 GiB. The broker must keep
//! its memory under the watermark by holding the producer back, answer
//! health checks throughout, and let the producer go once memory is back.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;
use common::{Ferry, http, http_get};
use ferry_amqp::codec::{Incoming, Output, decode};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

async fn healthy(admin: SocketAddr) -> bool {
    tokio::task::spawn_blocking(move || http_get(admin, "/api/health/live").0 == 200)
        .await
        .unwrap_or(false)
}

/// The broker's resident memory, from its own metrics.
async fn resident(admin: SocketAddr) -> f64 {
    let (_, text) = tokio::task::spawn_blocking(move || http_get(admin, "/metrics"))
        .await
        .expect("scrape");
    text.lines()
        .find_map(|l| l.strip_prefix("ferry_memory_resident_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ferry_memory_resident_bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_connections_opened_and_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["admin", "amqp"], &[]);
    let (admin, amqp) = (ferry.addr("admin"), ferry.addr("amqp"));
    let started = Instant::now();
    for _ in 0..20 {
        let batch: Vec<_> = (0..250)
            .map(|i| {
                tokio::spawn(async move {
                    let Ok(mut s) = TcpStream::connect(amqp).await else {
                        return;
                    };
                    // Half say hello and leave mid-handshake; half just leave.
                    if i % 2 == 0 {
                        let _ = s.write_all(b"AMQP\x00\x00\x09\x01").await;
                        let mut buf = [0u8; 64];
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
                    }
                })
            })
            .collect();
        for t in batch {
            let _ = t.await;
        }
        assert!(healthy(admin).await, "health answers during the flood");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "bounded in time"
        );
    }
    // Still serving, and nothing was left behind.
    let conn = ferry.amqp_guest().await;
    conn.close(200, "bye".into()).await.expect("close");
    let mut open = usize::MAX;
    for _ in 0..100 {
        let (_, _, body) = tokio::task::spawn_blocking(move || {
            http(admin, "GET", "/api/connections", GUEST, None)
        })
        .await
        .expect("call");
        open = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(usize::MAX);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "every connection is gone");
}

/// A consumer that logs in, starts consuming with acks, and then never
/// reads its socket again (written with the broker's own codec).
async fn stalled_consumer(amqp: SocketAddr, queue: &str) -> TcpStream {
    let mut s = TcpStream::connect(amqp).await.expect("connect");
    s.write_all(b"AMQP\x00\x00\x09\x01").await.expect("header");
    let mut inbuf = BytesMut::new();
    let next = async |s: &mut TcpStream, inbuf: &mut BytesMut| loop {
        if let Some(Incoming::Method(_, m)) = decode(inbuf, 131_072).expect("frame") {
            return *m;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_buf(inbuf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed");
    };
    let send = async |s: &mut TcpStream, ch: u16, m: AMQPClass| {
        let mut out = Output::default();
        out.method(ch, m);
        s.write_all(out.pending()).await.expect("write");
    };
    next(&mut s, &mut inbuf).await; // start
    send(
        &mut s,
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "PLAIN".into(),
            response: "\0guest\0guest".into(),
            locale: "en_US".into(),
        })),
    )
    .await;
    next(&mut s, &mut inbuf).await; // tune
    send(
        &mut s,
        0,
        AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: 16,
            frame_max: 131_072,
            heartbeat: 0,
        })),
    )
    .await;
    send(
        &mut s,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "/".into(),
        })),
    )
    .await;
    next(&mut s, &mut inbuf).await; // open-ok
    send(
        &mut s,
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    next(&mut s, &mut inbuf).await; // channel open-ok
    send(
        &mut s,
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.into(),
            consumer_tag: "stalled".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    next(&mut s, &mut inbuf).await; // consume-ok
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_cannot_grow_the_broker_past_its_watermark() {
    const WATERMARK: f64 = 256.0 * 1024.0 * 1024.0;
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["admin", "amqp"],
        &["--memory-high-watermark", &(WATERMARK as u64).to_string()],
    );
    let (admin, amqp) = (ferry.addr("admin"), ferry.addr("amqp"));
    let conn = ferry.amqp_guest().await;
    let ch = common::confirmed_channel(&conn, "flood", false).await;
    let _stalled = stalled_consumer(amqp, "flood").await;

    // Publish 64 KiB transient messages, up to 1 GiB, until the broker
    // stops confirming: it has blocked the publisher.
    let body = vec![7u8; 64 * 1024];
    let mut published = 0u64;
    let mut blocked = false;
    let started = Instant::now();
    while published < 1 << 30 && started.elapsed() < Duration::from_secs(120) {
        let confirm = ch
            .basic_publish(
                "".into(),
                "flood".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        if tokio::time::timeout(Duration::from_secs(3), confirm)
            .await
            .is_err()
        {
            blocked = true;
            break;
        }
        published += body.len() as u64;
        if published.is_multiple_of(64 << 20) {
            assert!(
                healthy(admin).await,
                "health answers while the flood goes on"
            );
        }
    }
    assert!(
        blocked,
        "the publisher was held back ({} MiB in)",
        published >> 20
    );
    assert!(published < 1 << 30, "before 1 GiB went in");
    assert!(
        healthy(admin).await,
        "health answers while publishers are blocked"
    );
    let rss = resident(admin).await;
    assert!(
        rss < WATERMARK * 1.5,
        "memory stays near the watermark: {} MiB",
        rss as u64 >> 20
    );

    // Free the memory: the producer goes on.
    let (status, _, _) = tokio::task::spawn_blocking(move || {
        http(admin, "DELETE", "/api/queues/%2F/flood", GUEST, None)
    })
    .await
    .expect("call");
    assert_eq!(status, 200);
    let mut released = false;
    for _ in 0..60 {
        let (_, _, body) =
            tokio::task::spawn_blocking(move || http(admin, "GET", "/api/overview", GUEST, None))
                .await
                .expect("call");
        if serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["alarm"].is_null()) {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        released,
        "the alarm clears once memory is freed (now {} MiB, published {} MiB)",
        resident(admin).await as u64 >> 20,
        published >> 20
    );
}
