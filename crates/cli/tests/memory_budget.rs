//! Messages past the memory budget live only in the journal and still
//! reach consumers whole: a real ferry with a tiny `--memory-budget`, lapin
//! publishing and consuming over loopback. Push deliveries of evicted
//! messages go through the reload task (read back off the queue's lock).

mod common;

use std::time::Duration;

use common::{Ferry, http};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));
const MESSAGES: usize = 200;

fn body(i: usize) -> Vec<u8> {
    format!("{i:04}{}", "b".repeat(1020)).into_bytes()
}

fn queue_stats(ferry: &Ferry) -> serde_json::Value {
    let (status, _, body) = http(
        ferry.addr("admin"),
        "GET",
        "/api/queues/%2F/deep",
        GUEST,
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["messages"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_messages_reach_a_push_consumer_whole_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["admin", "amqp"],
        &["--memory-budget", "4096"],
    );
    let conn = ferry.amqp_guest().await;
    let ch = common::confirmed_channel(&conn, "deep", true).await;
    for i in 0..MESSAGES {
        assert!(common::publish_persistent(&ch, "deep", &body(i)).await);
    }
    // The memory task evicts every 200 ms: wait until most bodies are
    // only in the journal (else this test would prove nothing).
    let mut evicted = false;
    for _ in 0..200 {
        let m = queue_stats(&ferry);
        let (bytes, resident) = (m["bytes"].as_u64(), m["resident_bytes"].as_u64());
        if let (Some(b), Some(r)) = (bytes, resident)
            && b >= (MESSAGES * 1024) as u64
            && r <= 8192
        {
            evicted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        evicted,
        "the bodies were never evicted: {}",
        queue_stats(&ferry)
    );

    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch
        .basic_qos(50, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consumer_ch
        .basic_consume(
            "deep".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..MESSAGES {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} never came"))
            .expect("stream open")
            .expect("delivery");
        assert_eq!(d.data, body(i), "message {i} whole and in order");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let m = queue_stats(&ferry);
    assert_eq!(m["ready"].as_u64(), Some(0), "{m}");
}
