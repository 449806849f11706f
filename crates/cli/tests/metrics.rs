//! Prometheus metrics of a real ferry, after real AMQP traffic.

mod common;

use common::{Ferry, http_get};
use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;

/// The value of the first series whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_show_queues_connections_and_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["admin", "amqp"], &[]);
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for i in 0..5u8 {
        ch.basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let m = ch
        .basic_get("jobs".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert!(m.is_some());

    let admin = ferry.addr("admin");
    let text = tokio::task::spawn_blocking(move || {
        let (status, body) = http_get(admin, "/metrics");
        assert_eq!(status, 200);
        body
    })
    .await
    .expect("scrape");
    let q = r#"{namespace="/",queue="jobs"}"#;
    assert_eq!(
        value(&text, &format!("ferry_queue_messages_ready{q}")),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!("ferry_queue_published_total{q}")),
        Some(5.0)
    );
    assert_eq!(
        value(&text, &format!("ferry_queue_delivered_total{q}")),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"ferry_connections{protocol="amqp"}"#),
        Some(1.0)
    );
    assert!(
        value(&text, "ferry_journal_fsync_seconds_count").is_some_and(|n| n >= 5.0),
        "{text}"
    );
    assert!(value(&text, "ferry_journal_bytes_written_total").is_some_and(|n| n > 0.0));
    assert!(value(&text, "ferry_uptime_seconds").is_some());
    assert!(value(&text, "ferry_memory_resident_bytes").is_some_and(|n| n > 0.0));
    assert_eq!(value(&text, "ferry_memory_alarm"), Some(0.0));
}
