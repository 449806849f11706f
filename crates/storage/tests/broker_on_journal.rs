//! The broker on the journal: what a restart brings back, through the
//! broker's own API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;
use ferry_core::clock::FakeClock;
use ferry_core::ids::SequentialIds;
use ferry_core::message::{DeathReason, Message};
use ferry_core::queue::{DeadLetterPolicy, DeadLetterTarget, QueueConfig, ReceiveMode};
use ferry_core::router::{Binding, Destination, RouterConfig, RouterKind};
use ferry_core::store::Store;
use ferry_storage::{Journal, JournalConfig};

const NS: &str = "ns";
const LEASE: ReceiveMode = ReceiveMode::Lease(Duration::from_secs(30));

fn open(dir: &Path, clock: &FakeClock, segment_size: u64) -> (Arc<Broker>, Arc<Journal>) {
    let config = JournalConfig {
        segment_size,
        ..JournalConfig::default()
    };
    open_with(dir, clock, config)
}

fn open_with(dir: &Path, clock: &FakeClock, config: JournalConfig) -> (Arc<Broker>, Arc<Journal>) {
    let journal = Arc::new(Journal::open(dir, config).expect("journal"));
    let broker = Broker::open(
        Arc::new(clock.clone()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&journal) as Arc<dyn Store>,
    )
    .expect("broker");
    (broker, journal)
}

/// Waits (bounded) until the journal's writer has deleted what is dead:
/// it does so just after completing the commits that made it dead.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

async fn send(b: &Broker, q: &Arc<ferry_core::broker::QueueHandle>, body: &str) {
    let (_, commit) = b
        .send(q, Message::new(body.to_owned()).persistent())
        .expect("send");
    commit.wait().await.expect("durable");
}

fn bodies(ds: &[ferry_core::queue::Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
        .collect()
}

#[tokio::test]
async fn a_restart_brings_back_unacked_messages_topology_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    {
        let (b, j) = open(dir.path(), &clock, 64 << 20);
        let _ = b.create_namespace(NS).expect("namespace");
        let _ = b
            .declare_queue(NS, "dlq", QueueConfig::default())
            .expect("dlq");
        let q = b
            .declare_queue(
                NS,
                "work",
                QueueConfig {
                    dead_letter: Some(DeadLetterPolicy::after_deliveries(
                        DeadLetterTarget::Queue("dlq".into()),
                        2,
                    )),
                    ..QueueConfig::default()
                },
            )
            .expect("work")
            .0
            .queue;
        let _ = b
            .declare_router(NS, "events", RouterConfig::new(RouterKind::Topic))
            .expect("router");
        let _ = b
            .bind(
                NS,
                Binding::new("events", Destination::queue("work"), "order.*"),
            )
            .expect("bind");
        for body in ["acked", "held", "poison", "waiting"] {
            send(&b, &q, body).await;
        }
        let _ = b.send(&q, Message::new("transient")).expect("send");
        let got = b.receive(&q, 3, LEASE);
        assert_eq!(bodies(&got), ["acked", "held", "poison"]);
        b.ack(&q, got[0].lease).expect("ack");
        b.nack(&q, got[2].lease, true).expect("nack poison once");
        let again = b.receive(&q, 1, LEASE);
        assert_eq!(bodies(&again), ["poison"]);
        b.nack(&q, again[0].lease, true)
            .expect("nack poison twice: dead-lettered");
        j.close();
    }
    let (b, _j) = open(dir.path(), &clock, 64 << 20);
    assert_eq!(b.queue_names(NS).expect("names"), ["dlq", "work"]);
    let q = b.queue(NS, "work").expect("work");
    let got = b.receive(&q, 10, LEASE);
    assert_eq!(
        bodies(&got),
        ["held", "waiting"],
        "acked, dead-lettered and transient are gone"
    );
    assert_eq!(got[0].delivery_count, 2, "the delivery was journaled");
    let dlq = b.queue(NS, "dlq").expect("dlq");
    let dead = b.receive(&dlq, 10, LEASE);
    assert_eq!(bodies(&dead), ["poison"]);
    assert_eq!(dead[0].message.deaths[0].reason, DeathReason::DeliveryLimit);
    let routed = b
        .publish(
            NS,
            "events",
            Message::new("o").with_routing_key("order.new"),
        )
        .expect("publish");
    assert_eq!(routed.queues, 1, "router and binding came back");
}

#[tokio::test]
async fn acked_messages_let_their_segments_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    let (b, j) = open(dir.path(), &clock, 8192);
    let _ = b.create_namespace(NS).expect("namespace");
    let q = b
        .declare_queue(NS, "q", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    let body = "p".repeat(400);
    for _ in 0..200 {
        send(&b, &q, &body).await;
        let got = b.receive(&q, 1, LEASE);
        b.ack(&q, got[0].lease).expect("ack");
    }
    // One more durable write moves the writer past the last dead segment.
    send(&b, &q, "last").await;
    wait_until("dead segments deleted", || j.segments().len() <= 3);
    let segments = j.segments();
    assert_eq!(segments.iter().map(|(_, live)| live).sum::<u64>(), 1);
    drop(b);
    j.close();
    let (b, _j) = open(dir.path(), &clock, 8192);
    let q = b.queue(NS, "q").expect("queue survives its first segment");
    assert_eq!(bodies(&b.receive(&q, 10, LEASE)), ["last"]);
}

#[tokio::test]
async fn a_message_enqueued_and_dead_lettered_at_once_still_settles_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    let (b, j) = open(dir.path(), &clock, 64 << 20);
    let _ = b.create_namespace(NS).expect("namespace");
    let dlq = b
        .declare_queue(NS, "dlq", QueueConfig::default())
        .expect("dlq")
        .0
        .queue;
    let q = b
        .declare_queue(
            NS,
            "small",
            QueueConfig {
                max_length: Some(1),
                dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
                    "dlq".into(),
                ))),
                ..QueueConfig::default()
            },
        )
        .expect("small")
        .0
        .queue;
    // m1 is pushed out by m2 within the same operation, before m1 had a
    // location; its removal is journaled after its dead letter lands.
    let (_, commit) = b
        .send_batch(
            &q,
            vec![
                Message::new("m1").persistent(),
                Message::new("m2").persistent(),
            ],
        )
        .expect("batch");
    commit.wait().await.expect("durable");
    for queue in [&q, &dlq] {
        for d in b.receive(queue, 10, LEASE) {
            b.ack(queue, d.lease).expect("ack");
        }
    }
    let live: u64 = j.segments().iter().map(|(_, n)| n).sum();
    assert_eq!(live, 0, "every message settled: {:?}", j.segments());
}

#[tokio::test]
async fn compaction_copies_a_lingering_message_forward_and_frees_the_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    let (b, j) = open(dir.path(), &clock, 8192);
    let _ = b.create_namespace(NS).expect("namespace");
    let q = b
        .declare_queue(NS, "q", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    send(&b, &q, "lingering").await;
    let held = b.receive(&q, 1, LEASE);
    assert_eq!(bodies(&held), ["lingering"]);
    let body = "c".repeat(400);
    for _ in 0..100 {
        send(&b, &q, &body).await;
        let got = b.receive(&q, 1, LEASE);
        b.ack(&q, got[0].lease).expect("ack");
    }
    send(&b, &q, "tail").await;
    let before = j.segments();
    assert!(
        before.len() > 5,
        "the lingering message pins everything: {before:?}"
    );
    let oldest = j.sparse_oldest().expect("the first segment is sparse");
    assert_eq!(oldest, before[0].0);
    let moved = b.relocate(&|loc| ferry_storage::segment_of(loc) == oldest);
    assert_eq!(moved, 1);
    send(&b, &q, "after").await;
    wait_until("old segments deleted", || j.segments().len() <= 3);
    let after = j.segments();
    assert!(after.iter().all(|(id, _)| *id > oldest));
    drop(b);
    j.close();

    let (b, _j) = open(dir.path(), &clock, 8192);
    let q = b.queue(NS, "q").expect("queue");
    let got = b.receive(&q, 10, LEASE);
    assert_eq!(bodies(&got), ["lingering", "tail", "after"], "each once");
    assert_eq!(got[0].delivery_count, 2, "its delivery count moved with it");
}

#[tokio::test]
async fn live_counts_after_a_restart_come_from_what_survived() {
    use ferry_core::store::{Location, QueueId, Record};
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    let (b, j) = open(dir.path(), &clock, 64 << 20);
    let _ = b.create_namespace(NS).expect("namespace");
    let q = b
        .declare_queue(NS, "q", QueueConfig::default())
        .expect("q")
        .0
        .queue;
    send(&b, &q, "alive").await;
    let segment = j
        .segments()
        .iter()
        .find(|(_, live)| *live > 0)
        .map(|(id, _)| *id)
        .expect("live");
    // What a failed write leaves behind: a durable removal naming, in that
    // segment, a message that never reached the disk.
    let ghost = Location((segment << 32) | 999_999);
    let mut records = vec![Record::Removed {
        queue: QueueId(q.id().0),
        seq: 424_242,
        loc: Some(ghost),
    }];
    j.append(&mut records, &mut Vec::new())
        .expect("append")
        .wait()
        .await
        .expect("durable");
    drop(b);
    j.close();
    let (b, j) = open(dir.path(), &clock, 64 << 20);
    let live: u64 = j.segments().iter().map(|(_, n)| n).sum();
    assert_eq!(
        live, 1,
        "the ghost removal does not discount the live message"
    );
    let q = b.queue(NS, "q").expect("queue");
    assert_eq!(bodies(&b.receive(&q, 10, LEASE)), ["alive"]);
}

#[tokio::test]
async fn messages_beyond_the_budget_live_in_the_journal_and_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    let (b, j) = open(dir.path(), &clock, 64 << 20);
    let _ = b.create_namespace(NS).expect("namespace");
    let _ = b
        .declare_queue(NS, "dlq", QueueConfig::default())
        .expect("dlq");
    let q = b
        .declare_queue(
            NS,
            "deep",
            QueueConfig {
                dead_letter: Some(DeadLetterPolicy::after_deliveries(
                    DeadLetterTarget::Queue("dlq".into()),
                    1,
                )),
                ..QueueConfig::default()
            },
        )
        .expect("deep")
        .0
        .queue;
    for i in 0..300 {
        send(&b, &q, &format!("{i:04}{}", "k".repeat(1020))).await;
    }
    let _ = b.send(&q, Message::new("transient stays")).expect("send");
    assert!(b.resident_bytes() >= 300 * 1024);
    let freed = b.evict_to(8 * 1024);
    assert!(freed >= 290 * 1024, "freed {freed}");
    assert!(b.resident_bytes() <= 8 * 1024 + 1024);
    assert_eq!(q.stats().ready, 301, "still queued, only not in memory");

    // Compaction reads evicted messages back to copy them.
    let seg = j.segments()[0].0;
    assert!(b.relocate(&|loc| ferry_storage::segment_of(loc) == seg) > 0);

    // Delivery reads them back; so does dead-lettering.
    let first = b.receive(&q, 1, LEASE);
    assert!(first[0].message.body.starts_with(b"0000"));
    assert_eq!(first[0].message.body.len(), 1024);
    b.nack(&q, first[0].lease, true).expect("nack: to the DLQ");
    let dlq = b.queue(NS, "dlq").expect("dlq");
    let dead = b.receive(&dlq, 10, LEASE);
    assert!(
        dead[0].message.body.starts_with(b"0000"),
        "dead-lettered whole"
    );
    let mut n = 0;
    loop {
        let got = b.receive(&q, 10, LEASE);
        if got.is_empty() {
            break;
        }
        for d in &got {
            assert!(d.message.body.len() == 1024 || &d.message.body[..] == b"transient stays");
            b.ack(&q, d.lease).expect("ack");
            n += 1;
        }
    }
    assert_eq!(n, 300, "299 evicted ones and the transient one");
}

#[tokio::test]
async fn a_restart_under_a_budget_leaves_bodies_on_disk_until_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    {
        let (b, j) = open(dir.path(), &clock, 64 << 20);
        let _ = b.create_namespace(NS).expect("namespace");
        let q = b
            .declare_queue(
                NS,
                "deep",
                QueueConfig {
                    max_priority: 5,
                    ..QueueConfig::default()
                },
            )
            .expect("deep")
            .0
            .queue;
        for i in 0..200 {
            send(&b, &q, &format!("{i:04}{}", "r".repeat(1020))).await;
        }
        let (_, c) = b
            .send(
                &q,
                Message::new("later")
                    .persistent()
                    .with_delay(Duration::from_secs(60)),
            )
            .expect("send");
        c.wait().await.expect("durable");
        let (_, c) = b
            .send(&q, Message::new("urgent").persistent().with_priority(5))
            .expect("send");
        c.wait().await.expect("durable");
        drop(b);
        j.close();
    }
    let journal = Arc::new(Journal::open(dir.path(), JournalConfig::default()).expect("journal"));
    let b = Broker::open_with_budget(
        Arc::new(clock.clone()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&journal) as Arc<dyn Store>,
        16 * 1024,
    )
    .expect("broker");
    assert!(b.resident_bytes() <= 16 * 1024, "{}", b.resident_bytes());
    let q = b.queue(NS, "deep").expect("queue");
    assert_eq!(q.stats().ready, 201, "the delayed one is still delayed");
    assert_eq!(q.stats().delayed, 1);
    let first = b.receive(&q, 1, LEASE);
    assert_eq!(
        &first[0].message.body[..],
        b"urgent",
        "its priority came back"
    );
    b.ack(&q, first[0].lease).expect("ack");
    let mut n = 0;
    loop {
        let got = b.receive(&q, 10, LEASE);
        if got.is_empty() {
            break;
        }
        for d in got {
            assert_eq!(d.message.body.len(), 1024, "read back whole");
            b.ack(&q, d.lease).expect("ack");
            n += 1;
        }
    }
    assert_eq!(n, 200);
    clock.advance(Duration::from_secs(60));
    b.fire_timers();
    assert_eq!(
        bodies(&b.receive(&q, 10, LEASE)),
        ["later"],
        "its delay came back"
    );
}

#[tokio::test]
async fn evicted_fifo_messages_keep_their_groups_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    {
        let (b, j) = open(dir.path(), &clock, 64 << 20);
        let _ = b.create_namespace(NS).expect("namespace");
        let q = b
            .declare_queue(NS, "f.fifo", QueueConfig::fifo())
            .expect("fifo")
            .0
            .queue;
        for i in 0..6 {
            for g in ["a", "b"] {
                let m = Message::new(format!("{g}{i}"))
                    .with_group(g)
                    .with_dedup_id(format!("{g}{i}"))
                    .persistent();
                let (_, c) = b.send(&q, m).expect("send");
                c.wait().await.expect("durable");
            }
        }
        assert!(b.evict_to(0) > 0, "FIFO messages are evicted too");
        let first = b.receive(&q, 3, LEASE);
        assert_eq!(
            bodies(&first),
            ["a0", "a1", "a2"],
            "read back, in group order"
        );
        let other = b.receive(&q, 10, LEASE);
        assert_eq!(
            bodies(&other),
            ["b0", "b1", "b2", "b3", "b4", "b5"],
            "group a is blocked"
        );
        for d in first.iter().chain(&other) {
            b.ack(&q, d.lease).expect("ack");
        }
        drop(b);
        j.close();
    }
    let journal = Arc::new(Journal::open(dir.path(), JournalConfig::default()).expect("journal"));
    let b = Broker::open_with_budget(
        Arc::new(clock.clone()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&journal) as Arc<dyn Store>,
        0,
    )
    .expect("broker");
    assert_eq!(b.resident_bytes(), 0, "restored without bodies");
    let q = b.queue(NS, "f.fifo").expect("queue");
    let got = b.receive(&q, 10, LEASE);
    assert_eq!(
        bodies(&got),
        ["a3", "a4", "a5"],
        "group and order survive the restart"
    );
}

/// SQS FIFO deduplication holds across a restart: a message acked before
/// it is still refused as a duplicate within its window (without
/// compaction to carry its key out, its segment is kept for that long), and
/// not once the window is over.
#[tokio::test]
async fn deduplication_outlives_a_restart_for_its_window() {
    use ferry_core::clock::{Clock, SystemClock};
    use ferry_core::queue::Enqueued;
    let dir = tempfile::tempdir().expect("tempdir");
    // The journal keeps segments by the wall clock: start there.
    let clock = FakeClock::new(SystemClock::new().now());
    let payment = |n: u32| {
        Message::new(format!("pay {n}"))
            .with_group("g")
            .with_dedup_id(format!("order-{n}"))
            .persistent()
    };
    let original = {
        let (b, j) = open(dir.path(), &clock, 4096);
        let _ = b.create_namespace(NS).expect("namespace");
        let q = b
            .declare_queue(NS, "pay.fifo", QueueConfig::fifo())
            .expect("declare")
            .0
            .queue;
        let (sent, c) = b.send(&q, payment(1)).expect("send");
        c.wait().await.expect("durable");
        // Consumed and acked, then enough traffic to roll well past its
        // segment: nothing there is live any more.
        let got = b.receive(&q, 1, LEASE);
        b.ack(&q, got[0].lease).expect("ack");
        for n in 2..200 {
            let (_, c) = b.send(&q, payment(n)).expect("send");
            c.wait().await.expect("durable");
            let got = b.receive(&q, 1, LEASE);
            b.ack(&q, got[0].lease).expect("ack");
        }
        b.barrier().wait().await.expect("acks durable");
        assert!(j.segments().len() > 3, "rolled: {:?}", j.segments());
        assert_eq!(
            j.segments().first().map(|(id, live)| (*id, *live)),
            Some((1, 0)),
            "dead, but kept for the deduplication window"
        );
        drop(b);
        j.close();
        sent.id
    };
    let again = |expect_duplicate: bool| {
        let (b, j) = open(dir.path(), &clock, 4096);
        let q = b.queue(NS, "pay.fifo").expect("queue");
        let (sent, _) = b.send(&q, payment(1)).expect("send");
        match sent.outcome {
            Enqueued::Duplicate(o) => {
                assert!(expect_duplicate, "remembered past its window");
                assert_eq!(o.id, original, "the original's id, as SQS answers");
            }
            _ => assert!(!expect_duplicate, "a duplicate enqueued after a restart"),
        }
        assert_eq!(q.stats().ready, u64::from(!expect_duplicate));
        drop(b);
        j.close();
    };
    again(true);
    clock.advance(Duration::from_secs(5 * 60 + 1));
    again(false);
}

/// Dead segments held only by deduplication windows do not pin the
/// journal: compaction carries their keys out to a small kept-keys file and
/// they go at once; a restart still refuses the duplicates from that file,
/// sealed (the file keeps its segment's data keys) when the journal is.
#[tokio::test]
async fn segments_held_only_by_deduplication_windows_go_and_their_keys_stay() {
    for encrypted in [false, true] {
        windows_kept_out_of_reclaimed_segments(encrypted).await;
    }
}

async fn windows_kept_out_of_reclaimed_segments(encrypted: bool) {
    use ferry_core::clock::{Clock, SystemClock};
    use ferry_core::queue::Enqueued;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::new(SystemClock::new().now());
    let key = encrypted.then(|| Arc::new(ferry_storage::MasterKey::generate().expect("key")));
    let open = |clock: &FakeClock| {
        let config = JournalConfig {
            segment_size: 4096,
            encryption: key.clone(),
            ..JournalConfig::default()
        };
        open_with(dir.path(), clock, config)
    };
    let payment = |n: u32| {
        Message::new(format!("pay {n} {}", "x".repeat(200)))
            .with_group("g")
            .with_dedup_id(format!("order-{n}"))
            .persistent()
    };
    let files = |ext: &str| {
        std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == ext))
            })
            .count()
    };
    let mut originals = Vec::new();
    {
        let (b, j) = open(&clock);
        let _ = b.create_namespace(NS).expect("namespace");
        let q = b
            .declare_queue(NS, "pay.fifo", QueueConfig::fifo())
            .expect("declare")
            .0
            .queue;
        for n in 0..100 {
            let (sent, c) = b.send(&q, payment(n)).expect("send");
            c.wait().await.expect("durable");
            originals.push(sent.id);
            let got = b.receive(&q, 1, LEASE);
            b.ack(&q, got[0].lease).expect("ack");
        }
        b.barrier().wait().await.expect("acks durable");
        let rolled = j.segments().len();
        assert!(rolled > 5, "rolled: {:?}", j.segments());
        assert_eq!(files("keys"), 0);
        // Everything is dead; only the windows held the segments.
        let freed = j.carry_dedup_windows();
        assert!(freed + 2 >= rolled, "freed {freed} of {rolled}");
        // Counted off under the lock, then deleted from disk.
        wait_until("the carried segments are deleted", || files("seg") <= 2);
        assert_eq!(files("keys"), freed, "one kept-keys file per freed segment");
        drop(b);
        j.close();
    }
    let (b, j) = open(&clock);
    let q = b.queue(NS, "pay.fifo").expect("queue");
    for n in [0, 50, 99] {
        let (sent, _) = b.send(&q, payment(n)).expect("send");
        match sent.outcome {
            Enqueued::Duplicate(o) => assert_eq!(o.id, originals[n as usize]),
            _ => panic!("order-{n} enqueued again after a restart (encrypted: {encrypted})"),
        }
    }
    assert_eq!(q.stats().ready, 0);
    drop(b);
    j.close();
    // Past the window, the core lets a send through again (the files go by
    // the wall clock, once their windows are over).
    clock.advance(Duration::from_secs(5 * 60 + 1));
    let (b, j) = open(&clock);
    let q = b.queue(NS, "pay.fifo").expect("queue");
    let (sent, _) = b.send(&q, payment(0)).expect("send");
    assert!(matches!(sent.outcome, Enqueued::Accepted { .. }));
    drop(b);
    j.close();
}

/// A dead letter is moved, not sent: after a restart, its id opens no
/// deduplication window in the dead-letter queue (a send there with that
/// id is a new message, as it was before the restart).
#[tokio::test]
async fn a_dead_letter_opens_no_window_on_recovery() {
    use ferry_core::clock::{Clock, SystemClock};
    use ferry_core::queue::Enqueued;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::new(SystemClock::new().now());
    let msg = || {
        Message::new("poison")
            .with_group("g")
            .with_dedup_id("order-9")
            .persistent()
    };
    {
        let (b, j) = open(dir.path(), &clock, 64 << 20);
        let _ = b.create_namespace(NS).expect("namespace");
        let _ = b
            .declare_queue(NS, "dlq.fifo", QueueConfig::fifo())
            .expect("dlq");
        let src = b
            .declare_queue(
                NS,
                "src.fifo",
                QueueConfig {
                    dead_letter: Some(DeadLetterPolicy::after_deliveries(
                        DeadLetterTarget::Queue("dlq.fifo".into()),
                        1,
                    )),
                    ..QueueConfig::fifo()
                },
            )
            .expect("src")
            .0
            .queue;
        let (_, c) = b.send(&src, msg()).expect("send");
        c.wait().await.expect("durable");
        let got = b.receive(&src, 1, LEASE);
        b.nack(&src, got[0].lease, true)
            .expect("nack: dead-lettered");
        b.barrier().wait().await.expect("durable");
        assert_eq!(b.queue(NS, "dlq.fifo").expect("dlq").stats().ready, 1);
        drop(b);
        j.close();
    }
    let (b, j) = open(dir.path(), &clock, 64 << 20);
    let dlq = b.queue(NS, "dlq.fifo").expect("dlq");
    let (sent, _) = b.send(&dlq, msg()).expect("send");
    assert!(
        matches!(sent.outcome, Enqueued::Accepted { .. }),
        "a new message"
    );
    // The send itself is remembered, of course.
    let src = b.queue(NS, "src.fifo").expect("src");
    let (again, _) = b.send(&src, msg()).expect("send");
    assert!(
        matches!(again.outcome, Enqueued::Duplicate(_)),
        "the original send's window is still open"
    );
    drop(b);
    j.close();
}

/// Evicted messages are never read back under their queue's lock: a push
/// consumer waits for the reload (the server's reload task; here the test
/// does it), and a dying one is read back by the dead-lettering.
#[tokio::test]
async fn evicted_messages_reach_push_consumers_after_a_reload_and_die_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::default();
    let (b, _j) = open(dir.path(), &clock, 64 << 20);
    let _ = b.create_namespace(NS).expect("namespace");
    let pushed = b
        .declare_queue(NS, "pushed", QueueConfig::default())
        .expect("pushed")
        .0
        .queue;
    let _ = b
        .declare_queue(NS, "dead", QueueConfig::default())
        .expect("dead");
    let dying = b
        .declare_queue(
            NS,
            "dying",
            QueueConfig {
                message_ttl: Some(Duration::from_secs(1)),
                dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
                    "dead".into(),
                ))),
                ..QueueConfig::default()
            },
        )
        .expect("dying")
        .0
        .queue;
    for i in 0..5 {
        send(&b, &pushed, &format!("push-{i}")).await;
        send(&b, &dying, &format!("die-{i}")).await;
    }
    assert!(b.evict_to(0) > 0);
    assert_eq!(pushed.stats().resident_bytes, 0);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    b.consume(&pushed, ferry_core::queue::ConsumerSpec::new(tx))
        .expect("consume");
    assert!(rx.try_recv().is_err(), "nothing read under the lock");
    assert_eq!(b.reload_requested(), 5);
    let mut got = Vec::new();
    while let Ok(d) = rx.try_recv() {
        got.push(String::from_utf8_lossy(&d.message.body).into_owned());
    }
    assert_eq!(got, ["push-0", "push-1", "push-2", "push-3", "push-4"]);

    clock.advance(Duration::from_secs(2));
    b.fire_timers();
    let dead = b.queue(NS, "dead").expect("dead");
    let out = b.receive(&dead, 10, LEASE);
    assert_eq!(bodies(&out), ["die-0", "die-1", "die-2", "die-3", "die-4"]);
    assert!(
        out.iter()
            .all(|d| d.message.deaths[0].reason == DeathReason::Expired)
    );
}
