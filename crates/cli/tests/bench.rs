//! `ferry bench` against a real ferry: short runs whose reports must
//! count every message sent as received, none lost, none twice. No
//! timing is asserted: speed belongs in docs/benchmarks.md.

mod common;

use std::process::Command;

use common::Ferry;
use serde_json::Value;

fn bench(args: &[&str], json: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("bench")
        .args(args)
        .args(["--quiet", "--json"])
        .arg(json)
        .output()
        .expect("run ferry bench");
    assert!(
        out.status.success(),
        "ferry bench failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("passed"), "{table}");
    serde_json::from_slice(&std::fs::read(json).expect("json report")).expect("valid json")
}

fn assert_complete(r: &Value) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(n("sent") > 0, "{r}");
    assert_eq!(n("sent"), n("received"), "{r}");
    assert_eq!((n("lost"), n("duplicated"), n("errors")), (0, 0, 0), "{r}");
    assert_eq!(r["passed"], Value::Bool(true));
    assert!(
        r["latency_us"]["p50"].as_u64().is_some_and(|p| p > 0),
        "{r}"
    );
    assert!(r["series"].as_array().is_some_and(|s| !s.is_empty()), "{r}");
}

#[test]
fn amqp_and_sqs_runs_count_every_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["aws", "amqp"], &[]);
    let amqp = format!("amqp://guest:guest@{}/%2f", ferry.addr("amqp"));
    let aws = format!("http://{}", ferry.addr("aws"));
    let pid = ferry.child.id().to_string();
    let json = dir.path().join("report.json");

    let r = bench(
        &[
            "amqp",
            "--url",
            &amqp,
            "--duration",
            "2",
            "--broker-pid",
            &pid,
        ],
        &json,
    );
    assert_complete(&r);
    assert!(r["cpu"]["broker_s"].as_f64().is_some(), "{r}");

    let svg = dir.path().join("run.svg");
    let r = bench(
        &[
            "amqp",
            "--url",
            &amqp,
            "--count",
            "3000",
            "--persistent",
            "--confirm",
            "50",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--queues",
            "2",
            "--size",
            "1024",
            "--svg",
            svg.to_str().expect("path"),
        ],
        &json,
    );
    assert_complete(&r);
    assert_eq!(r["sent"], 3000);
    assert_eq!(r["confirmed"], 3000);
    let picture = std::fs::read_to_string(&svg).expect("svg");
    assert!(picture.starts_with("<svg") && picture.contains("polyline"));

    let r = bench(
        &[
            "sqs",
            "--url",
            &aws,
            "--duration",
            "2",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--size",
            "64",
        ],
        &json,
    );
    assert_complete(&r);
    let r = bench(
        &[
            "sqs", "--url", &aws, "--count", "50", "--batch", "1", "--size", "64",
        ],
        &json,
    );
    assert_complete(&r);
    ferry.kill();
}

#[test]
fn kafka_runs_count_every_record_with_each_acks_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["kafka"], &[]);
    let url = ferry.addr("kafka").to_string();
    let json = dir.path().join("report.json");
    for acks in ["all", "1", "0"] {
        let r = bench(
            &[
                "kafka",
                "--url",
                &url,
                "--count",
                "4000",
                "--acks",
                acks,
                "--batch",
                "50",
                "--partitions",
                "4",
                "--producers",
                "2",
                "--consumers",
                "3",
                "--queues",
                "2",
                "--size",
                "256",
            ],
            &json,
        );
        assert_complete(&r);
        assert_eq!(r["sent"], 4000, "acks={acks}");
        assert_eq!(r["confirmed"], 4000, "acks={acks}");
    }
    // At a fixed rate the producer waits for answers with a timeout: the
    // connection must keep its place through them.
    let r = bench(
        &[
            "kafka",
            "--url",
            &url,
            "--count",
            "1500",
            "--rate",
            "3000",
            "--batch",
            "5",
            "--confirm",
            "2",
            "--size",
            "64",
        ],
        &json,
    );
    assert_complete(&r);
    assert_eq!(r["confirmed"], 1500);
    assert!(r["confirm_latency_us"]["p50"].as_u64().is_some(), "{r}");
    // A replay: consumers start after the producers and read it all back.
    let r = bench(
        &[
            "kafka",
            "--url",
            &url,
            "--count",
            "3000",
            "--batch",
            "50",
            "--partitions",
            "3",
            "--consumers",
            "2",
            "--size",
            "128",
            "--replay",
        ],
        &json,
    );
    assert_complete(&r);
    assert_eq!(r["received"], 3000);
    assert!(
        r["received_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "the rate is over the consuming time: {r}"
    );
    ferry.kill();
}

#[test]
fn bad_options_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "bench",
            "amqp",
            "--size",
            "4",
            "--url",
            "amqp://127.0.0.1:1/%2f",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
}
