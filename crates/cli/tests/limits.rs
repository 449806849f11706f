//! Limits on a real ferry: queues per namespace, connections in all and
//! per user, and the disk free-space alarm. Each refusal is the protocol's
//! own, and the broker goes on serving.

mod common;

use std::time::Duration;

use common::{Ferry, http};
use lapin::options::QueueDeclareOptions;
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
