//! Limits on a real ferry: queues per namespace, connections in all and
//! per user, AMQP frame size, channels and message size, the messages a
//! queue may hold, and the disk free-space alarm. Each refusal is the protocol's
//! own, and the broker goes on serving.

mod common;

use std::time::Duration;

use common::{Ferry, http};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

async fn connect(ferry: &Ferry) -> Result<lapin::Connection, String> {
    let url = format!("amqp://guest:guest@{}/%2f", ferry.addr("amqp"));
    let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test]
async fn queues_per_namespace_are_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["admin", "amqp"],
        &["--max-queues", "2"],
    );
    let admin = ferry.addr("admin");
    for q in ["a", "b"] {
        let path = format!("/api/queues/%2F/{q}");
        let status = tokio::task::spawn_blocking(move || http(admin, "PUT", &path, GUEST, None).0)
            .await
            .expect("call");
        assert_eq!(status, 201);
    }
    let (status, _, body) =
        tokio::task::spawn_blocking(move || http(admin, "PUT", "/api/queues/%2F/c", GUEST, None))
            .await
            .expect("call");
    assert_eq!(status, 409, "{body}");
    let conn = connect(&ferry).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let err = ch
        .queue_declare(
            "d".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("over the limit");
    assert!(err.to_string().contains("queue limit"), "{err}");
    // Redeclaring one that exists is no new queue.
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare("a".into(), passive, FieldTable::default())
        .await
        .expect("an existing queue");
}

/// Waits (bounded) until a connection gets in again.
async fn reconnects(ferry: &Ferry) -> bool {
    for _ in 0..50 {
        if connect(ferry).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn connections_are_limited_in_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["amqp"],
        &["--max-connections", "1"],
    );
    let first = connect(&ferry).await.expect("first");
    assert!(connect(&ferry).await.is_err(), "closed unanswered");
    first.close(200, "bye".into()).await.expect("close");
    assert!(reconnects(&ferry).await, "a place again after a close");
}

#[tokio::test]
async fn connections_are_limited_per_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["amqp"],
        &["--max-connections-per-user", "1"],
    );
    let first = connect(&ferry).await.expect("first");
    let err = connect(&ferry).await.expect_err("a second for guest");
    assert!(err.contains("limit of 1 connections"), "{err}");
    first.close(200, "bye".into()).await.expect("close");
    assert!(reconnects(&ferry).await, "a place again after a close");
}

#[tokio::test]
async fn too_little_disk_raises_the_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = (1u64 << 60).to_string();
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["admin"],
        &["--disk-free-limit", &huge],
    );
    let admin = ferry.addr("admin");
    let mut alarm = Value::Null;
    for _ in 0..100 {
        let (_, _, body) =
            tokio::task::spawn_blocking(move || http(admin, "GET", "/api/overview", GUEST, None))
                .await
                .expect("call");
        alarm = serde_json::from_str::<Value>(&body).expect("json")["alarm"].clone();
        if alarm.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        alarm.as_str().is_some_and(|a| a.starts_with("disk")),
        "{alarm}"
    );
}

#[tokio::test]
async fn amqp_sizes_and_queue_length_are_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["amqp"],
        &[
            "--amqp-frame-max",
            "8192",
            "--amqp-channel-max",
            "4",
            "--amqp-max-message-size",
            "1000",
            "--max-queue-length",
            "3",
        ],
    );
    let conn = connect(&ferry).await.expect("connect");
    // What connection.tune offered is what the client settled on.
    assert_eq!(conn.configuration().frame_max(), 8192);
    assert_eq!(conn.configuration().channel_max(), 4);

    let ch = common::confirmed_channel(&conn, "capped", true).await;
    let mut acked = Vec::new();
    for i in 0..5u8 {
        acked.push(common::publish_persistent(&ch, "capped", &[i]).await);
    }
    assert_eq!(
        acked,
        [true, true, true, false, false],
        "past the cap, publishes are nacked"
    );

    // A body over the size limit closes the channel with 406.
    let err = ch
        .basic_publish(
            "".into(),
            "other".into(),
            BasicPublishOptions::default(),
            &[0u8; 1001],
            BasicProperties::default(),
        )
        .await
        .expect("sent")
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("PRECONDITION_FAILED") || err.to_string().contains("406"),
        "{err}"
    );
    // The connection lives on.
    let ch = conn.create_channel().await.expect("another channel");
    let q = ch
        .queue_declare(
            "capped".into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(q.message_count(), 3);
}
