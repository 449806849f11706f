//! Unit tests of one queue, driven with explicit time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::message::{DeathReason, MessageId};

const T0: Timestamp = Timestamp(1_000_000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn msg(body: &str) -> Message {
    let mut m = Message::new(Bytes::copy_from_slice(body.as_bytes()));
    m.id = MessageId(u128::from(IDS.fetch_add(1, Ordering::Relaxed)));
    m
}

/// A queue with its own time and effects.
struct Q {
    core: QueueCore,
    now: Timestamp,
    fx: Effects,
}

impl Q {
    fn new(config: QueueConfig) -> Self {
        Q {
            core: QueueCore::new(QueueId(1), "q", config, T0, 1),
            now: T0,
            fx: Effects::default(),
        }
    }

    fn send(&mut self, m: Message) -> CoreResult<Enqueued> {
        self.core.enqueue(Arc::new(m), self.now, &mut self.fx)
    }

    fn send_all(&mut self, bodies: &[&str]) {
        for b in bodies {
            self.send(msg(b)).expect("enqueue");
        }
    }

    fn recv(&mut self, max: usize, visibility: u64) -> Vec<Delivery> {
        let mut out = Vec::new();
        self.core.receive(
            self.now,
            max,
            ReceiveMode::Lease(secs(visibility)),
            &mut self.fx,
            &mut out,
        );
        out
    }

    fn recv_bodies(&mut self, max: usize, visibility: u64) -> Vec<String> {
        bodies(&self.recv(max, visibility))
    }

    fn ack(&mut self, d: &Delivery) -> CoreResult<()> {
        self.core.ack(d.lease, self.now, &mut self.fx)
    }

    fn wait(&mut self, s: u64) {
        self.now = self.now.plus(secs(s));
        self.core.tick(self.now, &mut self.fx);
    }

    fn dead(&mut self) -> Vec<(String, DeathReason)> {
        self.fx
            .dead_letters
            .drain(..)
            .map(|d| {
                (
                    body(d.message.marked().expect("in memory")),
                    d.message.marked().expect("in memory").deaths[0].reason,
                )
            })
            .collect()
    }

    fn stats(&self) -> QueueStats {
        self.core.stats()
    }
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

/// The body of a message taken out of a queue that evicts nothing.
fn body_here(m: &crate::queue::Body) -> String {
    match m {
        crate::queue::Body::Here(m) => body(m),
        crate::queue::Body::InStore(_) => panic!("nothing is evicted here"),
    }
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| body(&d.message)).collect()
}

fn with_dlq(max: u32) -> QueueConfig {
    QueueConfig {
        dead_letter: Some(DeadLetterPolicy::after_deliveries(
            DeadLetterTarget::Queue("dlq".into()),
            max,
        )),
        ..QueueConfig::default()
    }
}

#[test]
fn enqueue_receive_ack_moves_through_the_states() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a", "b"]);
    assert_eq!((q.stats().ready, q.stats().leased), (2, 0));
    let got = q.recv(1, 30);
    assert_eq!(bodies(&got), ["a"]);
    assert_eq!(got[0].delivery_count, 1);
    assert!(!got[0].redelivered());
    assert_eq!((q.stats().ready, q.stats().leased), (1, 1));
    q.ack(&got[0]).expect("ack");
    assert_eq!((q.stats().ready, q.stats().leased), (1, 0));
    assert_eq!(q.ack(&got[0]), Err(CoreError::LeaseNotFound));
    assert_eq!(q.recv_bodies(10, 30), ["b"]);
    assert!(q.recv(10, 30).is_empty());
}

#[test]
fn an_expired_lease_returns_the_message_first_in_line_with_its_count() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a", "b"]);
    let first = q.recv(1, 10);
    q.wait(9);
    assert_eq!(q.stats().leased, 1);
    q.wait(1);
    assert_eq!(q.stats().leased, 0);
    let again = q.recv(1, 10);
    assert_eq!(bodies(&again), ["a"]);
    assert_eq!(again[0].delivery_count, 2);
    assert!(again[0].redelivered());
    assert_eq!(again[0].first_delivered_at, first[0].first_delivered_at);
    // The first lease went stale with the second receive.
    assert_eq!(q.ack(&first[0]), Err(CoreError::LeaseNotFound));
    q.ack(&again[0]).expect("current lease acks");
}

#[test]
fn a_lapsed_lease_still_acks_until_the_message_is_received_again() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a"]);
    let d = q.recv(1, 5);
    q.wait(6);
    assert_eq!(q.stats().ready, 1);
    q.ack(&d[0]).expect("ack after lapse, before redelivery");
    assert_eq!(q.stats().ready, 0);
    assert!(q.recv(1, 5).is_empty());
}

#[test]
fn visibility_changes_extend_or_release_a_lease() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a", "b"]);
    let d = q.recv(2, 10);
    let deadline = q
        .core
        .set_visibility(d[0].lease, secs(60), q.now, &mut q.fx)
        .expect("extend");
    assert_eq!(deadline, q.now.plus(secs(60)));
    q.core
        .set_visibility(d[1].lease, Duration::ZERO, q.now, &mut q.fx)
        .expect("release");
    let b = q.recv(10, 10);
    assert_eq!(bodies(&b), ["b"]);
    q.ack(&b[0]).expect("ack b");
    q.wait(30);
    assert!(
        q.recv(10, 10).is_empty(),
        "a is still leased past its old deadline"
    );
    q.wait(31);
    assert_eq!(q.recv_bodies(10, 10), ["a"]);
    // A message that is not leased cannot change visibility.
    q.send_all(&["c"]);
    let stale = d[0].lease;
    assert_eq!(
        q.core.set_visibility(stale, secs(5), q.now, &mut q.fx),
        Err(CoreError::LeaseNotFound)
    );
}

#[test]
fn visibility_can_be_capped_from_the_lease_start() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a"]);
    let d = q.recv(1, 300);
    let cap = Some(secs(100));
    q.wait(50);
    assert!(
        q.core
            .set_visibility_within(d[0].lease, secs(50), cap, q.now, &mut q.fx)
            .is_ok()
    );
    assert!(
        q.core
            .set_visibility_within(d[0].lease, secs(51), cap, q.now, &mut q.fx)
            .is_err(),
        "past the cap counted from the receive"
    );
    assert!(q.core.lease_is_current(d[0].lease));
    q.ack(&d[0]).expect("ack");
    assert!(!q.core.lease_is_current(d[0].lease));
}

#[test]
fn nack_requeues_in_place_or_dead_letters() {
    let cfg = QueueConfig {
        dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Router {
            router: "dlx".into(),
            routing_key: None,
        })),
        ..QueueConfig::default()
    };
    let mut q = Q::new(cfg);
    q.send_all(&["a", "b", "c"]);
    let d = q.recv(2, 30);
    q.core
        .nack(d[0].lease, true, q.now, &mut q.fx)
        .expect("requeue");
    assert_eq!(
        q.recv_bodies(1, 30),
        ["a"],
        "requeued message is first again"
    );
    q.core
        .nack(d[1].lease, false, q.now, &mut q.fx)
        .expect("reject");
    assert_eq!(q.dead(), [("b".to_owned(), DeathReason::Rejected)]);
    assert_eq!(q.stats().dead_lettered, 1);

    // Without a policy for rejections, a rejected message is dropped.
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["x"]);
    let d = q.recv(1, 30);
    q.core
        .nack(d[0].lease, false, q.now, &mut q.fx)
        .expect("reject");
    assert!(q.dead().is_empty());
    assert!(q.core.is_empty());
}

#[test]
fn max_deliveries_moves_the_message_with_its_body_headers_and_history() {
    let mut q = Q::new(with_dlq(3));
    q.send(msg("poison").with_header("k", "v").with_routing_key("rk"))
        .expect("send");
    for n in 1..=3 {
        let d = q.recv(1, 5);
        assert_eq!(d[0].delivery_count, n);
        q.wait(5);
    }
    assert!(q.recv(1, 5).is_empty());
    let dl = q.fx.dead_letters.pop().expect("dead-lettered");
    assert_eq!(dl.target, DeadLetterTarget::Queue("dlq".into()));
    assert_eq!(body(dl.message.marked().expect("in memory")), "poison");
    assert_eq!(
        dl.message
            .marked()
            .expect("in memory")
            .headers
            .get("k")
            .and_then(Value::as_str),
        Some("v")
    );
    let death = &dl.message.marked().expect("in memory").deaths[0];
    assert_eq!(death.queue, "q");
    assert_eq!(death.reason, DeathReason::DeliveryLimit);
    assert_eq!(death.routing_key, "rk");
    assert_eq!(q.stats().dead_lettered, 1);
}

use crate::message::Value;

#[test]
fn queue_delay_and_message_delay() {
    let mut q = Q::new(QueueConfig {
        delay: secs(10),
        ..QueueConfig::default()
    });
    q.send_all(&["queue-delayed"]);
    q.send(msg("short").with_delay(secs(2))).expect("send");
    q.send(msg("none").with_delay(Duration::ZERO))
        .expect("send");
    assert_eq!(q.stats().delayed, 2);
    assert_eq!(q.recv_bodies(10, 30), ["none"]);
    q.wait(2);
    assert_eq!(q.recv_bodies(10, 30), ["short"]);
    q.wait(7);
    assert!(q.recv(10, 30).is_empty());
    q.wait(1);
    assert_eq!(q.recv_bodies(10, 30), ["queue-delayed"]);
    assert_eq!(q.stats().delayed, 0);
}

#[test]
fn ttl_and_retention_expire_messages() {
    let mut q = Q::new(QueueConfig {
        message_ttl: Some(secs(60)),
        ..QueueConfig::default()
    });
    q.send(msg("short").with_ttl(secs(5))).expect("send");
    q.send(msg("long").with_ttl(secs(600))).expect("send");
    q.send_all(&["plain"]);
    q.wait(5);
    assert_eq!(q.stats().ready, 2);
    assert_eq!(q.stats().expired, 1);
    q.wait(55);
    assert_eq!(q.stats().ready, 0, "retention caps the per-message TTL");
    assert!(
        q.dead().is_empty(),
        "no policy: expired messages are dropped"
    );

    // With a policy for expiry, they are dead-lettered; a leased message
    // expires when it comes back.
    let mut q = Q::new(QueueConfig {
        message_ttl: Some(secs(10)),
        dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
            "dlq".into(),
        ))),
        ..QueueConfig::default()
    });
    q.send_all(&["a", "b"]);
    let d = q.recv(1, 30);
    q.wait(10);
    assert_eq!(q.dead(), [("b".to_owned(), DeathReason::Expired)]);
    q.core
        .nack(d[0].lease, true, q.now, &mut q.fx)
        .expect("nack");
    assert_eq!(q.dead(), [("a".to_owned(), DeathReason::Expired)]);
}

#[test]
fn overflow_drop_head_drops_or_dead_letters_the_oldest() {
    let mut q = Q::new(QueueConfig {
        max_length: Some(2),
        dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
            "dlq".into(),
        ))),
        ..QueueConfig::default()
    });
    q.send_all(&["a", "b", "c"]);
    assert_eq!(q.dead(), [("a".to_owned(), DeathReason::MaxLength)]);
    assert_eq!(q.recv_bodies(10, 30), ["b", "c"]);

    let mut q = Q::new(QueueConfig {
        max_bytes: Some(5),
        ..QueueConfig::default()
    });
    q.send_all(&["12", "34", "56"]);
    assert_eq!(q.stats().ready_bytes, 4);
    assert_eq!(q.stats().dropped, 1);
    assert_eq!(q.send(msg("too-large")), Ok(Enqueued::Dropped));
    assert_eq!(
        q.stats().ready,
        2,
        "a message too large on its own does not empty the queue"
    );
}

#[test]
fn unblocking_a_fifo_group_wakes_waiters() {
    let mut q = Q::new(fifo());
    for b in ["1", "2"] {
        q.send(msg(b).with_group("g")).expect("send");
    }
    let d = q.recv(1, 30);
    q.fx.became_ready = 0;
    q.ack(&d[0]).expect("ack");
    assert!(q.fx.became_ready > 0, "message 2 became receivable");
}

#[test]
fn dead_letters_leave_their_ttl_and_delay_behind() {
    let mut q = Q::new(QueueConfig {
        dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
            "dlq".into(),
        ))),
        ..QueueConfig::default()
    });
    q.send(msg("m").with_ttl(secs(5)).with_delay(Duration::ZERO))
        .expect("send");
    q.wait(5);
    let dl = q.fx.dead_letters.pop().expect("expired into the DLQ");
    assert_eq!(dl.message.marked().expect("in memory").properties.ttl, None);
    assert_eq!(
        dl.message.marked().expect("in memory").properties.delay,
        None
    );
}

#[test]
fn leases_from_another_incarnation_never_match() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a"]);
    let mut d = q.recv(1, 30);
    d[0].lease.epoch += 1;
    assert_eq!(q.ack(&d[0]), Err(CoreError::LeaseNotFound));
}

#[test]
fn durability_and_ownership_cannot_be_reconfigured() {
    let mut q = Q::new(QueueConfig::default());
    let transient = QueueConfig {
        durable: false,
        ..QueueConfig::default()
    };
    assert!(q.core.reconfigure(transient).is_err());
    let owned = QueueConfig {
        exclusive_owner: Some(1),
        ..QueueConfig::default()
    };
    assert!(q.core.reconfigure(owned).is_err());
}

#[test]
fn fifo_queues_ignore_per_message_delays() {
    let mut q = Q::new(fifo());
    q.send(msg("1").with_group("g").with_delay(secs(10)))
        .expect("send");
    q.send(msg("2").with_group("g")).expect("send");
    assert_eq!(q.recv_bodies(10, 30), ["1", "2"], "group order holds");
}

#[test]
fn take_for_move_passes_over_newer_messages_in_front() {
    let mut q = Q::new(QueueConfig {
        max_priority: 9,
        ..QueueConfig::default()
    });
    q.send_all(&["old"]);
    let below = q.core.next_seq();
    for _ in 0..5 {
        q.send(msg("new-urgent").with_priority(9)).expect("send");
    }
    let mut out = Vec::new();
    q.core.take_for_move(q.now, 2, below, &mut q.fx, &mut out);
    let moved: Vec<String> = out.iter().map(|(m, _)| body_here(m)).collect();
    assert_eq!(moved, ["old"]);
    assert_eq!(q.recv_bodies(10, 30).len(), 5, "the newer ones are back");

    // FIFO: a group with a newer message in front of an older group's.
    let mut q = Q::new(fifo());
    q.send(msg("a1").with_group("a")).expect("send");
    q.send(msg("b1").with_group("b")).expect("send");
    q.send(msg("b2").with_group("b")).expect("send");
    let below = q.core.next_seq();
    q.send(msg("c1").with_group("c")).expect("send");
    let mut moved = Vec::new();
    for _ in 0..5 {
        let mut out = Vec::new();
        q.core.take_for_move(q.now, 1, below, &mut q.fx, &mut out);
        moved.extend(out.iter().map(|(m, _)| body_here(m)));
    }
    moved.sort();
    assert_eq!(moved, ["a1", "b1", "b2"]);
    assert_eq!(q.recv_bodies(10, 30), ["c1"]);
}

#[test]
fn overflow_reject_publish_refuses_new_messages() {
    let mut q = Q::new(QueueConfig {
        max_length: Some(1),
        overflow: Overflow::RejectPublish,
        ..QueueConfig::default()
    });
    q.send_all(&["a"]);
    assert_eq!(q.send(msg("b")), Err(CoreError::QueueFull("q".into())));
    let d = q.recv(1, 30);
    q.send(msg("c")).expect("a leased message does not count");
    q.ack(&d[0]).expect("ack");

    let mut q = Q::new(QueueConfig {
        max_length: Some(1),
        overflow: Overflow::RejectPublishDeadLetter,
        dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
            "dlq".into(),
        ))),
        ..QueueConfig::default()
    });
    q.send_all(&["a"]);
    assert!(q.send(msg("b")).is_err());
    assert_eq!(q.dead(), [("b".to_owned(), DeathReason::MaxLength)]);
    assert_eq!(q.recv_bodies(10, 30), ["a"]);
}

#[test]
fn higher_priorities_first_then_oldest_first() {
    let mut q = Q::new(QueueConfig {
        max_priority: 5,
        ..QueueConfig::default()
    });
    q.send(msg("low1").with_priority(1)).expect("send");
    q.send(msg("none")).expect("send");
    q.send(msg("high").with_priority(200)).expect("send");
    q.send(msg("low2").with_priority(1)).expect("send");
    q.send(msg("mid").with_priority(3)).expect("send");
    assert_eq!(
        q.recv_bodies(10, 30),
        ["high", "mid", "low1", "low2", "none"]
    );
}

#[test]
fn purge_removes_ready_and_optionally_leased() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a", "b", "c"]);
    let d = q.recv(1, 30);
    assert_eq!(q.core.purge(false, q.now, &mut q.fx), 2);
    assert_eq!(q.stats().leased, 1);
    q.ack(&d[0])
        .expect("leased message survives an AMQP-style purge");
    q.send_all(&["d", "e"]);
    let _ = q.recv(1, 30);
    assert_eq!(q.core.purge(true, q.now, &mut q.fx), 2);
    assert!(q.core.is_empty());
    assert_eq!(
        q.stats(),
        QueueStats {
            published: 5,
            delivered: 2,
            acked: 1,
            ..QueueStats::default()
        }
    );
}

fn fifo() -> QueueConfig {
    QueueConfig::fifo()
}

#[test]
fn fifo_keeps_group_order_and_blocks_a_group_while_leased() {
    let mut q = Q::new(fifo());
    for (g, b) in [
        ("g1", "1a"),
        ("g2", "2a"),
        ("g1", "1b"),
        ("g2", "2b"),
        ("g1", "1c"),
    ] {
        q.send(msg(b).with_group(g)).expect("send");
    }
    // As many as possible from one group per receive, in order.
    let first = q.recv(2, 30);
    assert_eq!(bodies(&first), ["1a", "1b"]);
    // g1 is blocked; g2 serves.
    let second = q.recv(10, 30);
    assert_eq!(bodies(&second), ["2a", "2b"]);
    assert!(q.recv(10, 30).is_empty());
    q.ack(&first[0]).expect("ack");
    assert!(q.recv(10, 30).is_empty(), "1b is still in flight");
    q.ack(&first[1]).expect("ack");
    assert_eq!(q.recv_bodies(10, 30), ["1c"]);
}

#[test]
fn fifo_order_survives_expiry_and_nack() {
    let mut q = Q::new(fifo());
    for b in ["a", "b", "c"] {
        q.send(msg(b).with_group("g")).expect("send");
    }
    let d = q.recv(2, 10);
    q.ack(&d[0]).expect("ack a");
    q.wait(10); // b's lease runs out
    assert_eq!(q.recv_bodies(1, 10), ["b"]);
    q.wait(10);
    let d = q.recv(3, 10);
    assert_eq!(bodies(&d), ["b", "c"]);
    q.core
        .nack(d[1].lease, true, q.now, &mut q.fx)
        .expect("nack c");
    assert!(q.recv(3, 10).is_empty(), "b still in flight blocks c");
    q.ack(&d[0]).expect("ack b");
    assert_eq!(q.recv_bodies(3, 10), ["c"]);
}

#[test]
fn dedup_by_id_and_by_content_within_the_window() {
    let mut q = Q::new(fifo());
    let first = q
        .send(msg("a").with_group("g").with_dedup_id("id-1"))
        .expect("send");
    let Enqueued::Accepted { seq } = first else {
        panic!("first send accepted: {first:?}")
    };
    let dup = q
        .send(msg("other").with_group("g").with_dedup_id("id-1"))
        .expect("send");
    assert!(matches!(dup, Enqueued::Duplicate(o) if o.seq == seq));
    assert_eq!(q.stats().ready, 1);
    q.wait(299);
    assert!(matches!(
        q.send(msg("a").with_group("g").with_dedup_id("id-1")),
        Ok(Enqueued::Duplicate(_))
    ));
    q.wait(1);
    assert!(matches!(
        q.send(msg("a").with_group("g").with_dedup_id("id-1")),
        Ok(Enqueued::Accepted { .. })
    ));

    let mut q = Q::new(QueueConfig {
        dedup: Some(DedupConfig {
            content_based: true,
            ..DedupConfig::default()
        }),
        ..fifo()
    });
    q.send(msg("same").with_group("g")).expect("send");
    assert!(matches!(
        q.send(msg("same").with_group("h")),
        Ok(Enqueued::Duplicate(_))
    ));
    assert!(matches!(
        q.send(msg("diff").with_group("g")),
        Ok(Enqueued::Accepted { .. })
    ));
    assert_eq!(q.core.dedup_len(), 2);
}

#[test]
fn dedup_scope_per_group() {
    let mut q = Q::new(QueueConfig {
        dedup: Some(DedupConfig {
            scope: DedupScope::Group,
            ..DedupConfig::default()
        }),
        ..fifo()
    });
    q.send(msg("a").with_group("g1").with_dedup_id("x"))
        .expect("send");
    assert!(matches!(
        q.send(msg("b").with_group("g2").with_dedup_id("x")),
        Ok(Enqueued::Accepted { .. })
    ));
    assert!(matches!(
        q.send(msg("c").with_group("g1").with_dedup_id("x")),
        Ok(Enqueued::Duplicate(_))
    ));
}

fn consumer(prefetch: Option<u32>) -> (ConsumerSpec, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut spec = ConsumerSpec::new(tx);
    spec.prefetch = prefetch;
    (spec, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Vec<Delivery> {
    let mut v = Vec::new();
    while let Ok(d) = rx.try_recv() {
        v.push(d);
    }
    v
}

#[test]
fn push_consumers_get_messages_within_their_credit() {
    let mut q = Q::new(QueueConfig::default());
    let (spec, mut rx) = consumer(Some(2));
    q.core
        .add_consumer(ConsumerId(1), spec, q.now, &mut q.fx)
        .expect("consume");
    q.send_all(&["a", "b", "c"]);
    let got = drain(&mut rx);
    assert_eq!(bodies(&got), ["a", "b"]);
    assert_eq!(got[0].consumer, Some(ConsumerId(1)));
    assert_eq!(q.stats().ready, 1);
    q.ack(&got[0]).expect("ack");
    assert_eq!(bodies(&drain(&mut rx)), ["c"], "an ack frees credit");
    q.core
        .set_prefetch(ConsumerId(1), None, q.now, &mut q.fx)
        .expect("qos");
    q.send_all(&["d", "e", "f"]);
    assert_eq!(drain(&mut rx).len(), 3);
}

#[test]
fn consumers_take_turns_and_higher_priority_goes_first() {
    let mut q = Q::new(QueueConfig::default());
    let (a, mut ra) = consumer(None);
    let (b, mut rb) = consumer(None);
    q.core
        .add_consumer(ConsumerId(1), a, q.now, &mut q.fx)
        .expect("a");
    q.core
        .add_consumer(ConsumerId(2), b, q.now, &mut q.fx)
        .expect("b");
    q.send_all(&["1", "2", "3", "4"]);
    assert_eq!(drain(&mut ra).len(), 2);
    assert_eq!(drain(&mut rb).len(), 2);

    let (hi, mut rhi) = consumer(Some(1));
    q.core
        .add_consumer(ConsumerId(3), hi.priority(10), q.now, &mut q.fx)
        .expect("hi");
    q.send_all(&["5", "6"]);
    assert_eq!(bodies(&drain(&mut rhi)), ["5"]);
    let rest = drain(&mut ra).len() + drain(&mut rb).len();
    assert_eq!(
        rest, 1,
        "lower priority gets what the full higher one cannot take"
    );
}

#[test]
fn single_active_consumer_hands_over_on_cancel() {
    let mut q = Q::new(QueueConfig {
        single_active_consumer: true,
        ..QueueConfig::default()
    });
    let (a, mut ra) = consumer(None);
    let (b, mut rb) = consumer(None);
    q.core
        .add_consumer(ConsumerId(1), a, q.now, &mut q.fx)
        .expect("a");
    q.core
        .add_consumer(ConsumerId(2), b, q.now, &mut q.fx)
        .expect("b");
    q.send_all(&["1", "2"]);
    assert_eq!(drain(&mut ra).len(), 2);
    assert!(drain(&mut rb).is_empty());
    q.core
        .cancel_consumer(ConsumerId(1), q.now, &mut q.fx)
        .expect("cancel");
    q.send_all(&["3"]);
    assert_eq!(bodies(&drain(&mut rb)), ["3"]);
}

#[test]
fn exclusive_consumer_excludes_others() {
    let mut q = Q::new(QueueConfig::default());
    let (a, _ra) = consumer(None);
    let (b, _rb) = consumer(None);
    q.core
        .add_consumer(ConsumerId(1), a.exclusive(), q.now, &mut q.fx)
        .expect("exclusive");
    assert_eq!(
        q.core.add_consumer(ConsumerId(2), b, q.now, &mut q.fx),
        Err(CoreError::ExclusiveConsumer("q".into()))
    );
}

#[test]
fn auto_ack_consumers_remove_on_delivery_and_gone_consumers_give_back() {
    let mut q = Q::new(QueueConfig::default());
    let (a, mut ra) = consumer(None);
    q.core
        .add_consumer(ConsumerId(1), a.auto_ack(), q.now, &mut q.fx)
        .expect("consume");
    q.send_all(&["a"]);
    let got = drain(&mut ra);
    assert!(got[0].auto_acked);
    assert!(q.core.is_empty());

    let (b, rb) = consumer(None);
    q.core
        .add_consumer(ConsumerId(2), b, q.now, &mut q.fx)
        .expect("b");
    q.core
        .cancel_consumer(ConsumerId(1), q.now, &mut q.fx)
        .expect("cancel a");
    drop(rb);
    q.send_all(&["b"]);
    assert_eq!(q.stats().ready, 1, "undeliverable message stays");
    assert_eq!(q.stats().consumers, 0, "the gone consumer was removed");
}

#[test]
fn auto_delete_and_queue_ttl_ask_for_deletion() {
    let mut q = Q::new(QueueConfig {
        auto_delete: true,
        ..QueueConfig::default()
    });
    let (a, _ra) = consumer(None);
    q.core
        .add_consumer(ConsumerId(1), a, q.now, &mut q.fx)
        .expect("a");
    assert!(!q.fx.delete_queue);
    q.core
        .cancel_consumer(ConsumerId(1), q.now, &mut q.fx)
        .expect("cancel");
    assert!(q.fx.delete_queue);

    let mut q = Q::new(QueueConfig {
        expires: Some(secs(30)),
        ..QueueConfig::default()
    });
    assert_eq!(q.core.next_deadline(), Some(T0.plus(secs(30))));
    q.wait(20);
    let _ = q.recv(1, 1); // a receive counts as use
    q.wait(20);
    assert!(!q.fx.delete_queue);
    q.wait(10);
    assert!(q.fx.delete_queue);
}

#[test]
fn only_persistent_messages_of_durable_queues_are_journaled() {
    let mut q = Q::new(QueueConfig::default());
    q.send(msg("transient")).expect("send");
    assert!(q.fx.records.is_empty());
    q.send(msg("persistent").persistent()).expect("send");
    let d = q.recv(2, 30);
    q.ack(&d[1]).expect("ack");
    let kinds: Vec<&str> =
        q.fx.records
            .iter()
            .map(|r| match r {
                Record::Enqueued { .. } => "enqueued",
                Record::Delivered { .. } => "delivered",
                Record::Removed { .. } => "removed",
                _ => "other",
            })
            .collect();
    assert_eq!(kinds, ["enqueued", "delivered", "removed"]);

    let mut q = Q::new(QueueConfig {
        durable: false,
        ..QueueConfig::default()
    });
    q.send(msg("persistent").persistent()).expect("send");
    assert!(q.fx.records.is_empty());
}

#[test]
fn take_for_move_takes_only_older_messages() {
    let mut q = Q::new(QueueConfig::default());
    q.send_all(&["a", "b"]);
    let below = q.core.next_seq();
    q.send_all(&["c"]);
    let mut out = Vec::new();
    q.core.take_for_move(q.now, 10, below, &mut q.fx, &mut out);
    let moved: Vec<String> = out.iter().map(|(m, _)| body_here(m)).collect();
    assert_eq!(moved, ["a", "b"]);
    assert_eq!(q.recv_bodies(10, 30), ["c"]);
}

#[test]
fn reconfigure_changes_live_settings_only() {
    let mut q = Q::new(QueueConfig::default());
    let cfg = QueueConfig {
        visibility_timeout: secs(5),
        ..QueueConfig::default()
    };
    q.core.reconfigure(cfg).expect("reconfigure");
    assert_eq!(q.core.config().visibility_timeout, secs(5));
    assert!(q.core.reconfigure(QueueConfig::fifo()).is_err());
}
