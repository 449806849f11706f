//! Streams and consumer groups in the admin API and the metrics, after
//! real Kafka traffic: partitions' offsets and sizes, a group's members,
//! commits and lag.

mod common;
mod kafka_support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use common::{Ferry, http, http_get};
use kafka_support::{config, create_topic, producer};

/// A ferry with the Kafka and admin listeners; groups rebalance at once.
fn start(dir: &std::path::Path) -> Ferry {
    Ferry::start(
        dir,
        &["kafka", "admin"],
        &["--kafka-group-initial-rebalance-delay-ms", "0"],
    )
}

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
    let ferry = start(dir.path());
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
    let lines: Vec<&str> = metrics.lines().collect();
    for line in [
        "ferry_stream_partition_high_watermark{namespace=\"/\",stream=\"orders\",partition=\"0\"} 5",
        "ferry_stream_partition_log_start_offset{namespace=\"/\",stream=\"orders\",partition=\"1\"} 0",
        "ferry_group_lag{namespace=\"/\",group=\"billing\",stream=\"orders\",partition=\"0\"} 2",
        "ferry_group_lag{namespace=\"/\",group=\"billing\",stream=\"orders\",partition=\"1\"} 0",
        "ferry_group_committed_offset{namespace=\"/\",group=\"billing\",stream=\"orders\",partition=\"0\"} 3",
    ] {
        assert!(lines.contains(&line), "{line} missing from:\n{metrics}");
    }
    assert!(lines.contains(&"ferry_streams 1"), "{metrics}");
    assert!(lines.contains(&"ferry_stream_groups 1"), "{metrics}");
}

/// `ferry streams …` and `ferry groups …` against a real ferry: a stream
/// made from the CLI takes Kafka records; a group's offsets are reset
/// while it has no members, and a consumer of that group resumes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_and_groups_commands_drive_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let url = format!("http://{}", ferry.addr("admin"));
    let run = |args: &[&str]| -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--admin-url", &url])
            .env_remove("FERRY_ADMIN_PASSWORD")
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    // `ferry groups reset-offsets audit --stream events --to <to> ...`.
    let reset = |to: &str, extra: &[&str]| {
        let mut args = vec![
            "groups",
            "reset-offsets",
            "audit",
            "--stream",
            "events",
            "--to",
            to,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (ok, out) = run(&[
        "streams",
        "create",
        "events",
        "--partitions",
        "3",
        "--config",
        "retention.ms=60000",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["streams", "create", "bad", "--config", "retention.ms=-9"]);
    assert!(!ok && out.contains("400"), "a bad config is refused: {out}");
    let (ok, out) = run(&["streams", "create", "a b"]);
    assert!(
        !ok && out.contains("400"),
        "a name Kafka cannot address: {out}"
    );
    let (ok, out) = run(&["streams", "create", "events"]);
    assert!(!ok && out.contains("409"), "exists: {out}");

    let p = producer(&ferry, "all", false);
    for i in 0..6 {
        let v = format!("e{i}");
        p.send(
            FutureRecord::<(), _>::to("events").partition(0).payload(&v),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
    let (ok, out) = run(&["streams", "describe", "events", "--json"]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["partitions"][0]["high_watermark"], 6);
    assert_eq!(v["config"]["retention.ms"], "60000");
    let (ok, out) = run(&["streams", "list"]);
    assert!(ok && out.contains("events"), "{out}");

    // A dry run answers the plan and commits nothing.
    let (ok, out) = reset("4", &["--dry-run"]);
    assert!(ok && out.contains("-> 4 (dry run"), "{out}");
    let (_, out) = run(&["groups", "describe", "audit", "--json"]);
    assert!(
        out.contains("404")
            || serde_json::from_str::<Value>(&out)
                .is_ok_and(|g| g["offsets"] == Value::Array(vec![])),
        "a dry run committed: {out}"
    );

    // The group does not exist yet: the reset makes its offsets.
    let (ok, out) = reset("4", &["--partition", "0"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["groups", "describe", "audit", "--json"]);
    assert!(ok, "{out}");
    let g: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(g["offsets"][0]["committed"], 4);
    assert_eq!(g["offsets"][0]["lag"], 2);

    // A consumer of the group starts at the reset offset.
    let c: BaseConsumer = config(&ferry)
        .set("group.id", "audit")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&["events"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = None;
    while first.is_none() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            first = Some((m.partition(), m.offset()));
        }
    }
    assert_eq!(first, Some((0, 4)));
    // With a member, a reset and a delete are refused.
    let (ok, out) = reset("earliest", &[]);
    assert!(!ok && out.contains("409"), "{out}");
    let (ok, out) = run(&["groups", "delete", "audit"]);
    assert!(!ok && out.contains("409"), "{out}");
    let (ok, out) = run(&["groups", "list"]);
    assert!(
        ok && out.contains("audit") && out.contains("Stable"),
        "{out}"
    );
    drop(c); // leaves the group

    // Without members: a reset to the end, refusals of what is not there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = reset("latest", &[]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the group never emptied: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, out) = run(&["groups", "describe", "audit", "--json"]);
    let g: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(g["offsets"][0]["committed"], 6);
    assert_eq!(g["lag"], 0);
    let (ok, out) = reset("0", &["--partition", "9"]);
    assert!(!ok && out.contains("404"), "{out}");
    let (ok, out) = reset("soon", &[]);
    assert!(!ok && out.contains("400"), "{out}");

    // Deleting the stream forgets the group's offsets on it.
    let (ok, out) = run(&["streams", "delete", "events"]);
    assert!(ok, "{out}");
    let (_, out) = run(&["streams", "list", "--json"]);
    assert_eq!(out.trim(), "[]");
    let (_, out) = run(&["groups", "describe", "audit", "--json"]);
    let forgot = out.contains("404")
        || serde_json::from_str::<Value>(&out).is_ok_and(|g| g["offsets"] == Value::Array(vec![]));
    assert!(forgot, "{out}");

    // An empty group is deleted.
    let (ok, out) = run(&[
        "groups",
        "reset-offsets",
        "audit2",
        "--stream",
        "missing",
        "--to",
        "0",
    ]);
    assert!(!ok && out.contains("404"), "{out}");
    let (ok, out) = run(&["streams", "create", "more"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "groups",
        "reset-offsets",
        "audit2",
        "--stream",
        "more",
        "--to",
        "earliest",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["groups", "delete", "audit2"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["groups", "describe", "audit2"]);
    assert!(!ok && out.contains("404"), "{out}");
}
