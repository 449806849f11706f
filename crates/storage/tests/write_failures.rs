//! The journal when the disk refuses writes: commits that cannot be made
//! durable fail (no confirm), the broker keeps serving receives and acks,
//! and durable publishes work again once writes do.
//!
//! The refusal is real: this test binary (one test, so nothing else runs in
//! the process) lowers its own RLIMIT_FSIZE, so writes past it fail with
//! EFBIG, then raises it again, like space coming back.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;
use ferry_core::clock::FakeClock;
use ferry_core::ids::SequentialIds;
use ferry_core::message::Message;
use ferry_core::queue::{QueueConfig, ReceiveMode};
use ferry_core::store::{DurableState, Store};
use ferry_storage::{Journal, JournalConfig};

mod support;
use support::set_file_size_limit;

#[tokio::test]
async fn refused_writes_fail_their_commits_and_publishing_resumes_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Arc::new(
        Journal::open(
            dir.path(),
            JournalConfig {
                segment_size: 64 * 1024,
                ..JournalConfig::default()
            },
        )
        .expect("journal"),
    );
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&journal) as Arc<dyn Store>,
    )
    .expect("broker");
    let _ = broker.create_namespace("ns").expect("namespace");
    let q = broker
        .declare_queue("ns", "q", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    let (_, c) = broker
        .send(&q, Message::new("before").persistent())
        .expect("send");
    c.wait().await.expect("durable before the limit");

    // Segments may not grow past 8 KiB now.
    set_file_size_limit(8 * 1024);
    let body = "f".repeat(1000);
    let mut confirmed = 0;
    let mut refused = 0;
    for _ in 0..20 {
        let (_, c) = broker
            .send(&q, Message::new(body.clone()).persistent())
            .expect("accepted in memory");
        match c.wait().await {
            Ok(()) => confirmed += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "some publishes were refused a confirm");
    assert!(confirmed < 20);

    // Receives and acks go on.
    let got = broker.receive(&q, 100, ReceiveMode::Lease(Duration::from_secs(30)));
    assert_eq!(got.len(), 21);
    broker.ack(&q, got[0].lease).expect("ack while writes fail");

    // Space comes back: durable publishes confirm again.
    set_file_size_limit(libc::RLIM_INFINITY);
    let (_, c) = broker
        .send(&q, Message::new("after").persistent())
        .expect("send");
    c.wait().await.expect("durable again");
    drop(broker);
    journal.close();

    // What was confirmed is on disk; "before" was acked.
    let reopened = Journal::open(dir.path(), JournalConfig::default()).expect("reopen");
    let mut state = DurableState::default();
    reopened
        .recover(&mut |r, loc| state.apply(r, loc))
        .expect("recover");
    let bodies: Vec<String> = state
        .queues
        .values()
        .flat_map(|q| q.messages.values())
        .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
        .collect();
    assert!(bodies.contains(&"after".to_owned()));
    assert!(
        !bodies.contains(&"before".to_owned()),
        "its ack was journaled"
    );
    let big = bodies.iter().filter(|b| b.len() == 1000).count();
    assert!(
        big >= confirmed,
        "every confirmed message is there ({big} >= {confirmed})"
    );
}
