//! Crash tests on the real binary: publishers send durable messages over
//! SQS and record which were confirmed; ferry is killed with SIGKILL at a
//! random moment, restarted on the same data directory, and then every
//! confirmed message must be there, no message whose delete was confirmed
//! may come back, none may appear twice, and the broker must start every
//! time. Bounded: a fixed number of cycles, each with a time limit.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Ferry;
use serde_json::{Value, json};

const CYCLES: usize = 50;
const PUBLISHERS: usize = 4;

mod common;

fn start(data: &Path) -> Ferry {
    // Small segments and a small memory budget: rolls, deletions,
    // compaction and reading evicted messages back happen too.
    Ferry::start(
        data,
        &["aws"],
        &["--segment-size", "65536", "--memory-budget", "4096"],
    )
}

/// One SQS JSON call; `None` if the connection failed (ferry was killed).
fn call(addr: SocketAddr, action: &str, input: &Value) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = input.to_string();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Amz-Target: AmazonSQS.{action}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn queue_url(addr: SocketAddr) -> String {
    format!("http://{addr}/000000000000/crash")
}

/// Receives everything visible (leasing it), by body.
fn drain(addr: SocketAddr) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let (status, v) = call(
            addr,
            "ReceiveMessage",
            &json!({"QueueUrl": queue_url(addr), "MaxNumberOfMessages": 10, "VisibilityTimeout": 600}),
        )
        .expect("ferry answers");
        assert_eq!(status, 200, "{v}");
        let Some(messages) = v["Messages"].as_array().filter(|m| !m.is_empty()) else {
            return out;
        };
        for m in messages {
            out.push((
                m["Body"].as_str().expect("body").to_owned(),
                m["ReceiptHandle"].as_str().expect("handle").to_owned(),
            ));
        }
    }
    panic!("drain did not end");
}

#[test]
fn confirmed_messages_survive_fifty_kill_9s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let confirmed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut rng = common::Rand::new(0x9e37_79b9_7f4a_7c15);
    let mut rand = move |n: u64| rng.below(n);
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let ferry = start(dir.path());
        let addr = ferry.addr("aws");
        let (status, v) =
            call(addr, "CreateQueue", &json!({"QueueName": "crash"})).expect("ferry answers");
        assert_eq!(status, 200, "{v}");

        // Everything confirmed and not deleted is here, once; nothing deleted is.
        let found = drain(addr);
        let confirmed_now = confirmed.lock().expect("lock").clone();
        common::check_after_restart(
            cycle,
            found.iter().map(|(b, _)| b.as_str()),
            &confirmed_now,
            &deleted,
        );

        // Delete some of what is there; a confirmed delete must stick.
        for (body, handle) in &found {
            if rand(3) == 0 {
                let r = call(
                    addr,
                    "DeleteMessage",
                    &json!({"QueueUrl": queue_url(addr), "ReceiptHandle": handle}),
                );
                if matches!(r, Some((200, _))) {
                    deleted.insert(body.clone());
                }
            }
        }

        // Publish until killed at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (confirmed, stop) = (Arc::clone(&confirmed), Arc::clone(&stop));
                std::thread::spawn(move || {
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let body = format!("c{cycle}-p{p}-m{i}");
                        let input = json!({"QueueUrl": queue_url(addr), "MessageBody": body});
                        match call(addr, "SendMessage", &input) {
                            Some((200, _)) => {
                                confirmed.lock().expect("lock").insert(body);
                            }
                            Some((status, v)) => panic!("send refused: {status} {v}"),
                            None => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rand(200)));
        ferry.kill();
        stop.store(true, Ordering::Relaxed);
        for p in publishers {
            p.join().expect("publisher");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the crash test is bounded in time"
        );
    }
    let total = confirmed.lock().expect("lock").len();
    assert!(total > CYCLES, "publishers got confirms: {total}");
}
