//! Prometheus metrics of a real ferry, after real AMQP traffic.

mod common;

use common::{Ferry, http_get};
use lapin::options::BasicGetOptions;
use prometheus_parse::{Scrape, Value};

/// The exposition text, parsed as Prometheus parses it: a format error
/// fails the test.
fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of series `name` with `labels` (a histogram: its count).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))?;
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count),
        Value::Summary(_) => None,
    }
}

#[tokio::test]
async fn metrics_show_queues_connections_and_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["admin", "amqp"], &[]);
    let conn = ferry.amqp_guest().await;
    let ch = common::confirmed_channel(&conn, "jobs", true).await;
    for i in 0..5u8 {
        assert!(common::publish_persistent(&ch, "jobs", &[i]).await);
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
    let s = scrape(&text);
    let q = [("namespace", "/"), ("queue", "jobs")];
    assert_eq!(
        value(&s, "ferry_queue_messages_ready", &q),
        Some(4.0),
        "{text}"
    );
    assert_eq!(value(&s, "ferry_queue_published_total", &q), Some(5.0));
    assert_eq!(value(&s, "ferry_queue_delivered_total", &q), Some(1.0));
    assert_eq!(
        value(&s, "ferry_connections", &[("protocol", "amqp")]),
        Some(1.0)
    );
    assert!(
        value(&s, "ferry_journal_fsync_seconds", &[]).is_some_and(|n| n >= 5.0),
        "{text}"
    );
    assert!(value(&s, "ferry_journal_bytes_written_total", &[]).is_some_and(|n| n > 0.0));
    assert!(value(&s, "ferry_uptime_seconds", &[]).is_some());
    assert!(value(&s, "ferry_memory_resident_bytes", &[]).is_some_and(|n| n > 0.0));
    assert_eq!(value(&s, "ferry_memory_alarm", &[]), Some(0.0));
}
