//! Streams and consumer groups in the admin API and the metrics, after
//! real Kafka traffic: partitions' offsets and sizes, a group's members,
//! commits and lag.

mod common;
mod kafka_support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use common::{Ferry, http, http_get};
use kafka_support::{config, create_topic, producer};

fn api(ferry: &Ferry, path: &str) -> (u16, Value) {
    let (status, _, body) = http(
        ferry.addr("admin"),
        "GET",
        path,
        Some(("guest", "guest")),
        None,
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_groups_and_lag_in_the_admin_api_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(
        dir.path(),
        &["kafka", "admin"],
        &["--kafka-group-initial-rebalance-delay-ms", "0"],
    );
    create_topic(&ferry, "orders", 2, &[("retention.ms", "3600000")]).await;
    let p = producer(&ferry, "all", true);
    for i in 0..10 {
        let v = format!("order {i}");
        p.send(
            FutureRecord::<(), _>::to("orders")
                .partition(i % 2)
                .payload(&v),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }

    // A member of group "billing" is at 3 of 5 on partition 0, 5 of 5 on 1.
    let c: BaseConsumer = config(&ferry)
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&["orders"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.assignment().map_or(0, |a| a.count()) < 2 && Instant::now() < deadline {
        let _ = c.poll(Duration::from_millis(50));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Offset(3))
        .expect("tpl");
    tpl.add_partition_offset("orders", 1, Offset::Offset(5))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");

    let (status, streams) = api(&ferry, "/api/streams");
    assert_eq!(status, 200, "{streams}");
    let orders = &streams[0];
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["namespace"], "/");
    assert_eq!(orders["records"], 10);
    assert_eq!(orders["config"]["retention.ms"], "3600000");
    let parts = orders["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["high_watermark"], 5);
    assert_eq!(parts[0]["log_start_offset"], 0);
    assert!(parts[0]["bytes"].as_u64().expect("bytes") > 0);

    let (status, one) = api(&ferry, "/api/streams/%2F/orders");
    assert_eq!(status, 200);
    assert_eq!(one["groups"][0]["group"], "billing");
    assert_eq!(one["groups"][0]["partitions"][0]["lag"], 2);

    let (status, groups) = api(&ferry, "/api/groups");
    assert_eq!(status, 200);
    assert_eq!(groups[0]["group"], "billing");
    assert_eq!(groups[0]["state"], "Stable");
    assert_eq!(groups[0]["members"], 1);
    assert_eq!(groups[0]["lag"], 2);

    let (status, g) = api(&ferry, "/api/groups/%2F/billing");
    assert_eq!(status, 200);
    assert_eq!(g["protocol_type"], "consumer");
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1));
    let offsets = g["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    assert_eq!(
        (
            &offsets[0]["committed"],
            &offsets[0]["high_watermark"],
            &offsets[0]["lag"]
        ),
        (&Value::from(3), &Value::from(5), &Value::from(2))
    );
    assert_eq!(offsets[1]["lag"], 0);

    assert_eq!(api(&ferry, "/api/groups/%2F/nobody").0, 404);
    assert_eq!(api(&ferry, "/api/streams/%2F/nothing").0, 404);

    let (status, metrics) = http_get(ferry.addr("admin"), "/metrics");
    assert_eq!(status, 200);
    for line in [
        "ferry_stream_partition_high_watermark{namespace=\"/\",stream=\"orders\",partition=\"0\"} 5",
        "ferry_stream_partition_log_start_offset{namespace=\"/\",stream=\"orders\",partition=\"1\"} 0",
        "ferry_group_lag{namespace=\"/\",group=\"billing\",stream=\"orders\",partition=\"0\"} 2",
        "ferry_group_lag{namespace=\"/\",group=\"billing\",stream=\"orders\",partition=\"1\"} 0",
        "ferry_group_committed_offset{namespace=\"/\",group=\"billing\",stream=\"orders\",partition=\"0\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(metrics.contains("ferry_streams 1"), "{metrics}");
    assert!(metrics.contains("ferry_stream_groups 1"), "{metrics}");
}
