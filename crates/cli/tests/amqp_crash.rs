//! Crash tests over AMQP on the real binary: publishers send persistent
//! messages with publisher confirms and record which were confirmed; a
//! consumer acks some inside transactions (commit-ok: the acks are
//! durable); ferry is killed with SIGKILL at a random moment and
//! restarted on the same data directory. Every confirmed message must be
//! there, once; no message whose ack was committed may come back; the
//! broker must start every time. Bounded in cycles and time.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Ferry;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const CYCLES: usize = 20;
const PUBLISHERS: usize = 4;
/// Publishes in flight per publisher before it waits for their confirms.
const WINDOW: usize = 8;

async fn connect(ferry: &Ferry) -> (Connection, Channel) {
    let url = format!("amqp://guest:guest@{}/%2f", ferry.addr("amqp"));
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "crash".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    (conn, ch)
}

/// Takes everything in the queue (unacked): (delivery tag, body).
async fn drain(ch: &Channel) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get("crash".into(), BasicGetOptions::default())
        .await
        .expect("get")
    {
        let body = String::from_utf8(m.delivery.data.clone()).expect("utf-8");
        out.push((m.delivery.delivery_tag, body));
        assert!(out.len() < 1_000_000, "drain did not end");
    }
    out
}

/// Publishes with confirms until the connection dies; records what was confirmed.
async fn publish(ch: Channel, prefix: String, confirmed: Arc<Mutex<HashSet<String>>>) {
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for batch in 0.. {
        let mut pending = Vec::with_capacity(WINDOW);
        for i in 0..WINDOW {
            let body = format!("{prefix}-m{}", batch * WINDOW + i);
            let sent = ch
                .basic_publish(
                    "".into(),
                    "crash".into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    persistent.clone(),
                )
                .await;
            match sent {
                Ok(confirm) => pending.push((body, confirm)),
                Err(_) => return,
            }
        }
        for (body, confirm) in pending {
            match confirm.await {
                Ok(c) if c.is_ack() => {
                    confirmed.lock().expect("lock").insert(body);
                }
                Ok(c) => panic!("publish nacked: {c:?}"),
                Err(_) => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kill_9_and_committed_acks_stick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let confirmed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut acked: HashSet<String> = HashSet::new();
    let mut rng = common::Rand::new(0x2545_f491_4f6c_dd1d);
    let mut rand = move |n: u64| rng.below(n);
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let ferry = Ferry::start(
            dir.path(),
            &["amqp"],
            &["--segment-size", "65536", "--memory-budget", "4096"],
        );
        let (conn, ch) = connect(&ferry).await;

        let found = drain(&ch).await;
        let confirmed_now = confirmed.lock().expect("lock").clone();
        common::check_after_restart(
            cycle,
            found.iter().map(|(_, b)| b.as_str()),
            &confirmed_now,
            &acked,
        );

        // Ack a third of what is there, committed: those must never return.
        ch.tx_select().await.expect("tx");
        let mut acking = Vec::new();
        for (tag, body) in &found {
            if rand(3) == 0 {
                ch.basic_ack(*tag, BasicAckOptions::default())
                    .await
                    .expect("ack");
                acking.push(body.clone());
            }
        }
        ch.tx_commit().await.expect("commit");
        acked.extend(acking);

        let mut publishers = Vec::new();
        for p in 0..PUBLISHERS {
            let ch = conn.create_channel().await.expect("channel");
            let confirmed = Arc::clone(&confirmed);
            publishers.push(tokio::spawn(publish(
                ch,
                format!("c{cycle}-p{p}"),
                confirmed,
            )));
        }
        tokio::time::sleep(Duration::from_millis(20 + rand(200))).await;
        ferry.kill();
        // A publisher that panicked (a nack, a lock) fails the test; one
        // still running 30 s after the kill is a hang.
        for p in publishers {
            tokio::time::timeout(Duration::from_secs(30), p)
                .await
                .expect("a publisher outlived the broker by 30 s")
                .expect("a publisher panicked");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the crash test is bounded in time"
        );
    }
    let total = confirmed.lock().expect("lock").len();
    assert!(total > CYCLES, "publishers got confirms: {total}");
}
