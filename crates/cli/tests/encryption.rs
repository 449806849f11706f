//! Encryption at rest on a real ferry: a message published through the
//! admin API, or a record produced over Kafka, is nowhere in the data
//! directory; a restart without the key or with another fails with a clear
//! message; with it, the message is there; `ferry encryption rotate` moves
//! the data (the journal's and every stream partition's) to a new key.

mod common;
mod kafka_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ferry, http};

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));
const SECRET: &str = "iban DE89 3704 0044 0532 0130 00";

fn new_key(path: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["encryption", "new-key"])
        .output()
        .expect("new-key");
    std::fs::write(path, &out.stdout).expect("write key");
}

/// Starts ferry expecting it to fail; returns what it said (bounded).
fn refused(data: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--aws-listen",
            "off",
            "--kafka-listen",
            "off",
            "--amqp-listen",
            "off",
        ])
        .args(extra)
        .env_remove("FERRY_ENCRYPTION_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "it must not start");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry started anyway");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    err
}

/// `ferry encryption rotate` from key file `from` to `to`.
fn rotate(data: &Path, from: &Path, to: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["encryption", "rotate", "--data-dir"])
        .arg(data)
        .arg("--key-file")
        .arg(from)
        .arg("--new-key-file")
        .arg(to)
        .output()
        .expect("rotate")
}

/// Rotates from `from` to `to`, which must succeed; after it the old key
/// no longer opens the data.
fn rotate_and_refuse_the_old_key(data: &Path, from: &Path, to: &Path) {
    let out = rotate(data, from, to);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = refused(
        data,
        &["--encryption-key-file", from.to_str().expect("path")],
    );
    assert!(err.contains("does not open"), "{err}");
}

/// The values and first headers of every record in partition 0 of
/// `topic`, read from its start with rdkafka.
fn consume_all(ferry: &Ferry, topic: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let c: BaseConsumer = kafka_support::config(ferry)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .expect("consumer");
    let (lo, hi) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(lo))
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < hi - lo {
        assert!(
            Instant::now() < deadline,
            "read {} of {}",
            out.len(),
            hi - lo
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let header = m
                    .headers()
                    .and_then(|h| h.iter().next())
                    .and_then(|h| h.value)
                    .unwrap_or_default()
                    .to_vec();
                out.push((m.payload().unwrap_or_default().to_vec(), header));
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    out
}

fn grep(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn message_bodies_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = dir.path().join("key");
    new_key(&key);
    let key_flag = ["--encryption-key-file", key.to_str().expect("path")];
    {
        let ferry = Ferry::start(&data, &["admin"], &key_flag);
        let admin = ferry.addr("admin");
        assert_eq!(
            http(admin, "PUT", "/api/queues/%2F/payments", GUEST, None).0,
            201
        );
        let body = format!(r#"{{"body": "{SECRET}", "headers": {{"owner": "Grace Hopper"}}}}"#);
        let (status, _, text) = http(
            admin,
            "POST",
            "/api/queues/%2F/payments/messages",
            GUEST,
            Some(&body),
        );
        assert_eq!(status, 201, "{text}");
        // Not while the broker runs: it would undo the rotation.
        let other = dir.path().join("early");
        new_key(&other);
        let out = rotate(&data, &key, &other);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
        ferry.kill();
    }
    assert!(
        !grep(&data, SECRET.as_bytes()),
        "the body is not in the clear"
    );
    assert!(!grep(&data, b"Grace Hopper"), "nor its headers");

    let err = refused(&data, &[]);
    assert!(err.contains("encrypted"), "{err}");
    let other = dir.path().join("other");
    new_key(&other);
    let err = refused(
        &data,
        &["--encryption-key-file", other.to_str().expect("path")],
    );
    assert!(err.contains("does not open"), "{err}");

    // Rotation, offline: the new key opens the data, the old one no longer.
    rotate_and_refuse_the_old_key(&data, &key, &other);
    let ferry = Ferry::start(
        &data,
        &["admin"],
        &["--encryption-key-file", other.to_str().expect("path")],
    );
    let (_, _, text) = http(
        ferry.addr("admin"),
        "GET",
        "/api/queues/%2F/payments/messages",
        GUEST,
        None,
    );
    assert!(text.contains(SECRET), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_are_encrypted_at_rest() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = dir.path().join("key");
    new_key(&key);
    let key_flag = ["--encryption-key-file", key.to_str().expect("path")];
    {
        let ferry = kafka_support::start(&data, &key_flag);
        kafka_support::create_topic(&ferry, "ledger", 1, &[]).await;
        let producer = kafka_support::producer(&ferry, "all", true);
        for i in 0..50 {
            let value = format!("{SECRET} #{i}");
            producer
                .send(
                    FutureRecord::to("ledger")
                        .key("account-7")
                        .payload(&value)
                        .headers(OwnedHeaders::new().insert(Header {
                            key: "owner",
                            value: Some("Grace Hopper"),
                        })),
                    Duration::from_secs(10),
                )
                .await
                .expect("acknowledged");
        }
        let got = consume_all(&ferry, "ledger");
        assert_eq!(got.len(), 50);
        ferry.kill();
    }
    assert!(!grep(&data, SECRET.as_bytes()), "a value is in the clear");
    assert!(!grep(&data, b"Grace Hopper"), "a header is in the clear");
    assert!(!grep(&data, b"account-7"), "a key is in the clear");

    let err = refused(&data, &[]);
    assert!(err.contains("encrypted"), "{err}");

    let other = dir.path().join("other");
    new_key(&other);
    rotate_and_refuse_the_old_key(&data, &key, &other);
    let ferry = kafka_support::start(
        &data,
        &["--encryption-key-file", other.to_str().expect("path")],
    );
    let got = consume_all(&ferry, "ledger");
    assert_eq!(got.len(), 50, "every record is there after the rotation");
    for (i, (value, owner)) in got.iter().enumerate() {
        assert_eq!(value, format!("{SECRET} #{i}").as_bytes());
        assert_eq!(owner, b"Grace Hopper");
    }
}
