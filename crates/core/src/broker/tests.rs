//! Broker tests: routing, dead letters across queues, long polling, timers,
//! move tasks, recovery — with a fake clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::clock::FakeClock;
use crate::ids::SequentialIds;
use crate::message::{DeathReason, Headers, Message};
use crate::queue::{
    ConsumerSpec, DeadLetterPolicy, DeadLetterTarget, Enqueued, QueueConfig, ReceiveMode,
};
use crate::router::{Binding, DEFAULT_ROUTER, Destination, RouterConfig, RouterKind};
use crate::store::MemoryStore;

const NS: &str = "ns";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Env {
    broker: Arc<Broker>,
    clock: FakeClock,
    store: Arc<MemoryStore>,
}

impl Env {
    fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = FakeClock::default();
        let broker = open(&clock, &store);
        let _ = broker.create_namespace(NS).expect("namespace");
        Env {
            broker,
            clock,
            store,
        }
    }

    /// The same store, opened again: a restart.
    fn reopen(&self) -> Arc<Broker> {
        open(&self.clock, &self.store)
    }

    fn queue(&self, name: &str, config: QueueConfig) -> Arc<QueueHandle> {
        self.broker
            .declare_queue(NS, name, config)
            .expect("declare")
            .0
            .queue
    }

    fn send(&self, q: &Arc<QueueHandle>, body: &str) {
        let _ = self
            .broker
            .send(q, Message::new(body.to_owned()))
            .expect("send");
    }

    fn bodies(&self, q: &Arc<QueueHandle>) -> Vec<String> {
        self.broker
            .receive(q, 100, ReceiveMode::AutoAck)
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
            .collect()
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
        self.broker.fire_timers();
    }
}

fn open(clock: &FakeClock, store: &Arc<MemoryStore>) -> Arc<Broker> {
    Broker::open(
        Arc::new(clock.clone()),
        Arc::new(SequentialIds::default()),
        Arc::clone(store) as Arc<dyn crate::store::Store>,
    )
    .expect("open")
}

fn bind(env: &Env, router: &str, queue: &str, key: &str) {
    let _ = env
        .broker
        .bind(NS, Binding::new(router, Destination::queue(queue), key))
        .expect("bind");
}

#[test]
fn publish_routes_through_each_kind_of_router() {
    let env = Env::new();
    let b = &env.broker;
    for (name, kind) in [
        ("direct", RouterKind::Direct),
        ("fanout", RouterKind::Fanout),
        ("topic", RouterKind::Topic),
        ("headers", RouterKind::Headers),
    ] {
        assert!(
            b.declare_router(NS, name, RouterConfig::new(kind))
                .expect("declare")
                .0
        );
    }
    let q1 = env.queue("q1", QueueConfig::default());
    let q2 = env.queue("q2", QueueConfig::default());
    bind(&env, "direct", "q1", "k");
    bind(&env, "fanout", "q1", "");
    bind(&env, "fanout", "q2", "");
    bind(&env, "topic", "q2", "stock.*.nyse");
    let args: Headers = [("x-match", "all"), ("type", "report")]
        .into_iter()
        .collect();
    let _ = b
        .bind(
            NS,
            Binding::new("headers", Destination::queue("q1"), "").with_args(args),
        )
        .expect("bind headers");

    let p = b
        .publish(NS, "direct", Message::new("d").with_routing_key("k"))
        .expect("publish");
    assert_eq!(p.queues, 1);
    assert_eq!(
        b.publish(NS, "fanout", Message::new("f"))
            .expect("publish")
            .queues,
        2
    );
    let t = Message::new("t").with_routing_key("stock.ibm.nyse");
    assert_eq!(b.publish(NS, "topic", t).expect("publish").queues, 1);
    let h = Message::new("h").with_header("type", "report");
    assert_eq!(b.publish(NS, "headers", h).expect("publish").queues, 1);
    let lost = Message::new("x").with_routing_key("nobody");
    assert_eq!(
        b.publish(NS, "direct", lost).expect("publish").queues,
        0,
        "unroutable"
    );

    assert_eq!(env.bodies(&q1), ["d", "f", "h"]);
    assert_eq!(env.bodies(&q2), ["f", "t"]);
    assert!(matches!(
        b.publish(NS, "missing", Message::new("x")),
        Err(CoreError::RouterNotFound(_))
    ));
}

#[test]
fn router_to_router_bindings_and_alternates() {
    let env = Env::new();
    let b = &env.broker;
    let mut main = RouterConfig::new(RouterKind::Direct);
    main.alternate = Some("ae".into());
    let _ = b.declare_router(NS, "main", main).expect("main");
    let _ = b
        .declare_router(NS, "ae", RouterConfig::new(RouterKind::Fanout))
        .expect("ae");
    let _ = b
        .declare_router(NS, "inner", RouterConfig::new(RouterKind::Topic))
        .expect("inner");
    let routed = env.queue("routed", QueueConfig::default());
    let unrouted = env.queue("unrouted", QueueConfig::default());
    let _ = b
        .bind(NS, Binding::new("main", Destination::router("inner"), "k"))
        .expect("e2e");
    // A cycle back to main must not loop.
    let _ = b
        .bind(NS, Binding::new("inner", Destination::router("main"), "#"))
        .expect("cycle");
    bind(&env, "inner", "routed", "k");
    bind(&env, "ae", "unrouted", "");

    assert_eq!(
        b.publish(NS, "main", Message::new("a").with_routing_key("k"))
            .expect("p")
            .queues,
        1
    );
    assert_eq!(
        b.publish(NS, "main", Message::new("b").with_routing_key("z"))
            .expect("p")
            .queues,
        1
    );
    assert_eq!(env.bodies(&routed), ["a"]);
    assert_eq!(env.bodies(&unrouted), ["b"]);

    let mut internal = RouterConfig::new(RouterKind::Fanout);
    internal.internal = true;
    let _ = b.declare_router(NS, "int", internal).expect("internal");
    assert!(b.publish(NS, "int", Message::new("x")).is_err());
}

#[test]
fn deleting_a_queue_or_router_removes_its_bindings() {
    let env = Env::new();
    let b = &env.broker;
    let _ = b
        .declare_router(NS, "x", RouterConfig::new(RouterKind::Fanout))
        .expect("x");
    env.queue("q", QueueConfig::default());
    bind(&env, "x", "q", "");
    assert_eq!(b.bindings(NS, "x").expect("list").len(), 1);
    assert_eq!(b.delete_queue(NS, "q", false, false).expect("delete").0, 0);
    assert!(b.bindings(NS, "x").expect("list").is_empty());
    assert!(matches!(b.queue(NS, "q"), Err(CoreError::QueueNotFound(_))));
    let _ = b.delete_router(NS, "x", false).expect("delete router");
    assert!(b.router_names(NS).expect("names").is_empty());
}

#[test]
fn redeclaring_needs_the_same_settings_and_exclusive_queues_have_one_owner() {
    let env = Env::new();
    let b = &env.broker;
    assert!(
        b.declare_queue(NS, "q", QueueConfig::default())
            .expect("first")
            .0
            .created
    );
    assert!(
        !b.declare_queue(NS, "q", QueueConfig::default())
            .expect("again")
            .0
            .created
    );
    let other = QueueConfig {
        visibility_timeout: secs(5),
        ..QueueConfig::default()
    };
    assert!(matches!(
        b.declare_queue(NS, "q", other),
        Err(CoreError::QueueExists { .. })
    ));

    let mine = QueueConfig {
        exclusive_owner: Some(7),
        ..QueueConfig::default()
    };
    let q = b
        .declare_queue(NS, "ex", mine.clone())
        .expect("exclusive")
        .0
        .queue;
    assert!(q.check_owner(Some(7)).is_ok());
    assert!(q.check_owner(Some(8)).is_err());
    let theirs = QueueConfig {
        exclusive_owner: Some(8),
        ..QueueConfig::default()
    };
    assert!(matches!(
        b.declare_queue(NS, "ex", theirs),
        Err(CoreError::ExclusiveQueue(_))
    ));
    // Its connection closed: the protocol deletes it.
    let _ = b.delete_queue(NS, "ex", false, false).expect("delete");
    assert!(b.queue(NS, "ex").is_err());
    assert!(q.is_deleted());
}

#[test]
fn dead_letters_reach_a_queue_or_a_router_with_a_new_routing_key() {
    let env = Env::new();
    let b = &env.broker;
    let dlq = env.queue("dlq", QueueConfig::default());
    let src = env.queue(
        "src",
        QueueConfig {
            dead_letter: Some(DeadLetterPolicy::after_deliveries(
                DeadLetterTarget::Queue("dlq".into()),
                1,
            )),
            ..QueueConfig::default()
        },
    );
    env.send(&src, "poison");
    let d = b.receive(&src, 1, ReceiveMode::Lease(secs(10)));
    b.nack(&src, d[0].lease, true).expect("nack");
    let dead = b.receive(&dlq, 10, ReceiveMode::AutoAck);
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].message.id, d[0].message.id,
        "SQS keeps the message id"
    );
    assert_eq!(dead[0].message.deaths[0].reason, DeathReason::DeliveryLimit);

    let _ = b
        .declare_router(NS, "dlx", RouterConfig::new(RouterKind::Direct))
        .expect("dlx");
    let parked = env.queue("parked", QueueConfig::default());
    bind(&env, "dlx", "parked", "dead");
    let amqp = env.queue(
        "amqp",
        QueueConfig {
            message_ttl: Some(secs(5)),
            dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Router {
                router: "dlx".into(),
                routing_key: Some("dead".into()),
            })),
            ..QueueConfig::default()
        },
    );
    let _ = b
        .send(&amqp, Message::new("old").with_routing_key("orig"))
        .expect("send");
    env.advance(secs(5));
    let got = b.receive(&parked, 10, ReceiveMode::AutoAck);
    assert_eq!(got.len(), 1, "expired by the timer alone and dead-lettered");
    let m = &got[0].message;
    assert_eq!(m.routing_key, "dead");
    assert_eq!(m.deaths[0].routing_key, "orig");
    assert_eq!(m.deaths[0].queue, "amqp");
}

#[test]
fn the_default_router_routes_to_the_queue_its_key_names() {
    let env = Env::new();
    let b = &env.broker;
    let q = env.queue("jobs", QueueConfig::default());
    let p = b
        .publish(
            NS,
            DEFAULT_ROUTER,
            Message::new("x").with_routing_key("jobs"),
        )
        .expect("publish");
    assert_eq!(p.queues, 1);
    let p = b
        .publish(
            NS,
            DEFAULT_ROUTER,
            Message::new("y").with_routing_key("nobody"),
        )
        .expect("publish");
    assert_eq!(p.queues, 0, "unroutable: no such queue");
    assert!(
        b.declare_router(NS, DEFAULT_ROUTER, RouterConfig::new(RouterKind::Direct))
            .is_err()
    );
    // Dead letters reach a queue through it by their new routing key.
    let src = env.queue(
        "src",
        QueueConfig {
            dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Router {
                router: DEFAULT_ROUTER.into(),
                routing_key: Some("jobs".into()),
            })),
            ..QueueConfig::default()
        },
    );
    env.send(&src, "bad");
    let d = b.receive(&src, 1, ReceiveMode::Hold);
    b.nack(&src, d[0].lease, false).expect("reject");
    let got = b.receive(&q, 10, ReceiveMode::AutoAck);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].message.deaths[0].queue, "src");
}

#[test]
fn a_discard_target_drops_messages_past_their_delivery_limit() {
    let env = Env::new();
    let b = &env.broker;
    let q = env.queue(
        "q",
        QueueConfig {
            dead_letter: Some(DeadLetterPolicy::after_deliveries(
                DeadLetterTarget::Discard,
                2,
            )),
            ..QueueConfig::default()
        },
    );
    env.send(&q, "poison");
    for _ in 0..2 {
        let d = b.receive(&q, 1, ReceiveMode::Hold);
        assert_eq!(d.len(), 1);
        b.nack(&q, d[0].lease, true).expect("requeue");
    }
    assert!(b.receive(&q, 1, ReceiveMode::Hold).is_empty());
    assert_eq!(q.stats().ready + q.stats().leased, 0);
}

#[test]
fn a_dead_letter_cycle_is_cut() {
    let env = Env::new();
    let q = env.queue(
        "loop",
        QueueConfig {
            message_ttl: Some(secs(1)),
            dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
                "loop".into(),
            ))),
            ..QueueConfig::default()
        },
    );
    env.send(&q, "x");
    env.advance(secs(1));
    assert_eq!(q.stats().ready, 0);
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let env = Env::new();
    let q = env.queue("q", QueueConfig::default());
    let broker = Arc::clone(&env.broker);
    let q2 = Arc::clone(&q);
    let waiter = tokio::spawn(async move {
        broker
            .receive_wait(&q2, 10, ReceiveMode::Lease(secs(30)), secs(20))
            .await
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    env.send(&q, "hello");
    let got = waiter.await.expect("join");
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn long_poll_gives_up_after_its_wait_and_wakes_for_delayed_messages() {
    let env = Env::new();
    let q = env.queue("q", QueueConfig::default());
    let timers = tokio::spawn(Arc::clone(&env.broker).run_timers());
    let (broker, q2) = (Arc::clone(&env.broker), Arc::clone(&q));
    let waiter = tokio::spawn(async move {
        broker
            .receive_wait(&q2, 10, ReceiveMode::Lease(secs(30)), secs(5))
            .await
    });
    tokio::task::yield_now().await;
    env.clock.advance(secs(5));
    assert!(waiter.await.expect("join").is_empty());

    let _ = env
        .broker
        .send(&q, Message::new("later").with_delay(secs(3)))
        .expect("send");
    let (broker, q2) = (Arc::clone(&env.broker), Arc::clone(&q));
    let waiter = tokio::spawn(async move {
        broker
            .receive_wait(&q2, 10, ReceiveMode::Lease(secs(30)), secs(20))
            .await
    });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    env.clock.advance(secs(3));
    let got = waiter.await.expect("join");
    assert_eq!(got.len(), 1, "the timer made the delayed message visible");
    timers.abort();
}

#[test]
fn push_consumers_see_expired_leases_come_back() {
    let env = Env::new();
    let q = env.queue("q", QueueConfig::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut spec = ConsumerSpec::new(tx).prefetch(1);
    spec.lease_timeout = Some(secs(10));
    let id = env.broker.consume(&q, spec).expect("consume");
    env.send(&q, "a");
    let first = rx.try_recv().expect("delivered");
    assert_eq!(first.delivery_count, 1);
    env.advance(secs(10));
    let again = rx.try_recv().expect("redelivered after the lease ran out");
    assert_eq!(again.delivery_count, 2);
    env.broker.ack(&q, again.lease).expect("ack");
    env.broker.cancel(&q, id).expect("cancel");
    assert_eq!(q.stats().consumers, 0);
}

#[test]
fn deleting_a_queue_ends_its_consumers_and_auto_delete_queues_go_with_theirs() {
    let env = Env::new();
    let q = env.queue("q", QueueConfig::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    env.broker
        .consume(&q, ConsumerSpec::new(tx))
        .expect("consume");
    let _ = env
        .broker
        .delete_queue(NS, "q", false, false)
        .expect("delete");
    assert!(rx.try_recv().is_err());
    assert!(rx.is_closed(), "the consumer's sink was dropped");

    let auto = env.queue(
        "auto",
        QueueConfig {
            auto_delete: true,
            ..QueueConfig::default()
        },
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let id = env
        .broker
        .consume(&auto, ConsumerSpec::new(tx))
        .expect("consume");
    env.broker.cancel(&auto, id).expect("cancel");
    assert!(env.broker.queue(NS, "auto").is_err());

    env.queue(
        "ttl",
        QueueConfig {
            expires: Some(secs(60)),
            ..QueueConfig::default()
        },
    );
    env.advance(secs(60));
    assert!(env.broker.queue(NS, "ttl").is_err(), "unused queue expired");
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_to_their_source_at_a_rate() {
    let env = Env::new();
    let b = &env.broker;
    let dlq = env.queue("dlq", QueueConfig::default());
    let src = env.queue(
        "src",
        QueueConfig {
            dead_letter: Some(DeadLetterPolicy::after_deliveries(
                DeadLetterTarget::Queue("dlq".into()),
                1,
            )),
            ..QueueConfig::default()
        },
    );
    for i in 0..6 {
        env.send(&src, &format!("m{i}"));
    }
    for d in b.receive(&src, 10, ReceiveMode::Lease(secs(1))) {
        b.nack(&src, d.lease, true).expect("nack");
    }
    assert_eq!(dlq.stats().ready, 6);

    let id = b.start_move_task(NS, "dlq", None, Some(2)).expect("start");
    assert!(matches!(
        b.start_move_task(NS, "dlq", None, None),
        Err(CoreError::TaskRunning(_))
    ));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        src.stats().ready,
        2,
        "two per second, and no time has passed"
    );
    env.clock.advance(secs(1));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(src.stats().ready, 4);
    let info = b.cancel_move_task(&id).expect("cancel");
    assert_eq!(info.status, MoveStatus::Cancelling);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let tasks = b.move_tasks(NS, Some("dlq"));
    assert_eq!(tasks[0].status, MoveStatus::Cancelled);
    assert_eq!(tasks[0].moved, 4);
    assert_eq!(tasks[0].to_move, 6);
    assert_eq!(dlq.stats().ready, 2);

    // Everything, to a chosen queue, unthrottled.
    let other = env.queue("other", QueueConfig::default());
    b.start_move_task(NS, "dlq", Some("other"), None)
        .expect("start");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(other.stats().ready, 2);
    assert_eq!(b.move_tasks(NS, None)[0].status, MoveStatus::Completed);
}

#[test]
fn durable_state_survives_a_reopen_and_transient_state_does_not() {
    let env = Env::new();
    let b = &env.broker;
    let _ = b
        .declare_router(NS, "x", RouterConfig::new(RouterKind::Topic))
        .expect("router");
    let q = env.queue("durable", QueueConfig::default());
    let t = env.queue(
        "transient-queue",
        QueueConfig {
            durable: false,
            ..QueueConfig::default()
        },
    );
    bind(&env, "x", "durable", "a.#");
    let _ = b.send(&q, Message::new("keep").persistent()).expect("send");
    let _ = b
        .send(&q, Message::new("acked").persistent())
        .expect("send");
    let _ = b.send(&q, Message::new("transient-msg")).expect("send");
    let _ = b.send(&t, Message::new("gone").persistent()).expect("send");
    let d = b.receive(&q, 2, ReceiveMode::Lease(secs(30)));
    b.ack(&q, d[1].lease).expect("ack");

    let b2 = env.reopen();
    assert_eq!(b2.queue_names(NS).expect("names"), ["durable"]);
    let q2 = b2.queue(NS, "durable").expect("queue");
    let got = b2.receive(&q2, 10, ReceiveMode::Lease(secs(30)));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].message.body[..], b"keep");
    assert_eq!(got[0].delivery_count, 2, "the delivery count was journaled");
    assert_eq!(got[0].message.id, d[0].message.id);
    let routed = b2
        .publish(
            NS,
            "x",
            Message::new("r").with_routing_key("a.b").persistent(),
        )
        .expect("publish");
    assert_eq!(routed.queues, 1, "the binding came back");
    // A new queue after recovery gets a fresh id.
    let n = b2
        .declare_queue(NS, "new", QueueConfig::default())
        .expect("new")
        .0
        .queue;
    assert_ne!(n.id(), q2.id());
}

#[test]
fn batches_share_one_lock_and_report_per_message() {
    let env = Env::new();
    let q = env.queue(
        "f.fifo",
        QueueConfig {
            max_length: Some(2),
            overflow: crate::queue::Overflow::RejectPublish,
            ..QueueConfig::fifo()
        },
    );
    let msgs = vec![
        Message::new("a").with_group("g").with_dedup_id("1"),
        Message::new("a").with_group("g").with_dedup_id("1"),
        Message::new("b").with_group("g").with_dedup_id("2"),
        Message::new("c").with_group("g").with_dedup_id("3"),
    ];
    let (results, commit) = env.broker.send_batch(&q, msgs).expect("batch");
    assert!(commit.is_done());
    assert!(matches!(
        results[0],
        Ok(Sent {
            outcome: Enqueued::Accepted { .. },
            ..
        })
    ));
    assert!(matches!(
        results[1],
        Ok(Sent {
            outcome: Enqueued::Duplicate(_),
            ..
        })
    ));
    assert!(matches!(
        results[2],
        Ok(Sent {
            outcome: Enqueued::Accepted { .. },
            ..
        })
    ));
    assert!(matches!(results[3], Err(CoreError::QueueFull(_))));
}

#[test]
fn the_broker_caps_every_queue_whatever_its_own_overflow() {
    let env = Env::new();
    let b = &env.broker;
    let before = env.queue("before", QueueConfig::default());
    b.set_max_queue_length(Some(2));
    let after = env.queue("after", QueueConfig::default());
    for q in [&before, &after] {
        let _ = b.send(q, Message::new("1")).expect("first");
        let leased = b.receive(q, 1, ReceiveMode::Lease(secs(30)));
        assert_eq!(leased.len(), 1);
        let _ = b.send(q, Message::new("2")).expect("second");
        // A leased message is held too: drop-head would make room by
        // dropping the ready one; the cap refuses instead.
        assert!(matches!(
            b.send(q, Message::new("3")),
            Err(CoreError::QueueFull(_))
        ));
        assert_eq!(q.stats().ready + q.stats().leased, 2);
    }
    // A duplicate adds nothing: it is answered as one, full queue or not.
    let fifo = env.queue("f.fifo", QueueConfig::fifo());
    let m = || Message::new("x").with_group("g").with_dedup_id("d");
    let _ = b.send(&fifo, m()).expect("first");
    let _ = b
        .send(&fifo, Message::new("y").with_group("g").with_dedup_id("e"))
        .expect("second: full now");
    let (dup, _) = b.send(&fifo, m()).expect("a duplicate of the first");
    assert!(matches!(dup.outcome, Enqueued::Duplicate(_)));
    b.set_max_queue_length(None);
    let _ = b.send(&after, Message::new("3")).expect("no cap");

    // A dead letter moves a message the broker holds already: a full
    // dead-letter queue still takes it (dropping it would lose it).
    b.set_max_queue_length(Some(1));
    let dlq = env.queue("dlq", QueueConfig::default());
    let src = env.queue("src", dlq_policy("dlq", 1));
    let _ = b
        .send(&dlq, Message::new("already dead"))
        .expect("fills the dlq");
    let _ = b.send(&src, Message::new("poison")).expect("send");
    let d = b.receive(&src, 1, ReceiveMode::Lease(secs(10)));
    b.nack(&src, d[0].lease, true).expect("nack");
    assert_eq!(dlq.stats().ready, 2, "the dead letter is kept");
    assert_eq!(src.stats().ready + src.stats().leased, 0);
}

#[test]
fn namespaces_isolate_and_delete_with_their_contents() {
    let env = Env::new();
    let b = &env.broker;
    let _ = b.create_namespace("other").expect("namespace");
    let _ = b
        .declare_queue("other", "q", QueueConfig::default())
        .expect("declare");
    let mine = env.queue("q", QueueConfig::default());
    env.send(&mine, "mine");
    assert_eq!(b.namespace_names(), ["ns", "other"]);
    let theirs = b.queue("other", "q").expect("queue");
    assert_eq!(theirs.stats().ready, 0, "same name, different namespace");
    let _ = b.delete_namespace("other").expect("delete");
    assert!(theirs.is_deleted());
    assert!(matches!(
        b.queue("other", "q"),
        Err(CoreError::NamespaceNotFound(_))
    ));
    assert_eq!(b.namespace_names(), ["ns"]);
    assert!(
        env.reopen().namespace("other").is_err(),
        "deletion was journaled"
    );
    assert_eq!(mine.stats().ready, 1);
}

fn dlq_policy(target: &str, max: u32) -> QueueConfig {
    QueueConfig {
        dead_letter: Some(DeadLetterPolicy::after_deliveries(
            DeadLetterTarget::Queue(target.into()),
            max,
        )),
        ..QueueConfig::default()
    }
}

async fn settle_tasks() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_failed_move_puts_back_what_it_took() {
    let env = Env::new();
    let b = &env.broker;
    let dlq = env.queue("dlq", QueueConfig::default());
    let q1 = env.queue("q1", dlq_policy("dlq", 1));
    let q2 = env.queue("q2", dlq_policy("dlq", 1));
    env.send(&q1, "from-q1");
    env.send(&q2, "from-q2");
    env.send(&q1, "from-q1-again");
    for q in [&q1, &q2] {
        for d in b.receive(q, 10, ReceiveMode::Lease(secs(1))) {
            b.nack(q, d.lease, true).expect("nack");
        }
    }
    assert_eq!(dlq.stats().ready, 3);
    let _ = b.delete_queue(NS, "q2", false, false).expect("delete q2");
    b.start_move_task(NS, "dlq", None, None).expect("start");
    settle_tasks().await;
    let info = &b.move_tasks(NS, Some("dlq"))[0];
    assert!(matches!(info.status, MoveStatus::Failed(_)), "{info:?}");
    let total = dlq.stats().ready + q1.stats().ready;
    assert_eq!(
        total, 3,
        "nothing lost: every message is in the DLQ or back in q1"
    );
}

#[tokio::test]
async fn moves_and_dead_letters_skip_deduplication() {
    let env = Env::new();
    let b = &env.broker;
    env.queue("dlq.fifo", QueueConfig::fifo());
    let src = env.queue(
        "src.fifo",
        QueueConfig {
            dead_letter: Some(DeadLetterPolicy::after_deliveries(
                DeadLetterTarget::Queue("dlq.fifo".into()),
                1,
            )),
            ..QueueConfig::fifo()
        },
    );
    let _ = b
        .send(&src, Message::new("x").with_group("g").with_dedup_id("x"))
        .expect("send");
    let d = b.receive(&src, 1, ReceiveMode::Lease(secs(1)));
    b.nack(&src, d[0].lease, true).expect("nack: dead-lettered");
    b.start_move_task(NS, "dlq.fifo", None, None)
        .expect("start");
    settle_tasks().await;
    assert_eq!(
        src.stats().ready,
        1,
        "back in its source although its dedup id is still in the window"
    );
}

#[test]
fn dead_letter_loops_through_two_queues_are_cut() {
    let env = Env::new();
    let ttl_to = |target: &str| QueueConfig {
        message_ttl: Some(secs(1)),
        dead_letter: Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue(
            target.into(),
        ))),
        ..QueueConfig::default()
    };
    let a = env.queue("a", ttl_to("b"));
    let b = env.queue("b", ttl_to("a"));
    env.send(&a, "looper");
    env.advance(secs(1));
    assert_eq!(b.stats().ready, 1, "first hop happens");
    env.advance(secs(1));
    env.advance(secs(1));
    assert_eq!(a.stats().ready + b.stats().ready, 0, "the loop is cut");
}

#[test]
fn a_router_reached_twice_still_routes_and_no_alternate_fires() {
    let env = Env::new();
    let b = &env.broker;
    let _ = b
        .declare_router(NS, "f", RouterConfig::new(RouterKind::Fanout))
        .expect("f");
    let _ = b
        .declare_router(NS, "a", RouterConfig::new(RouterKind::Fanout))
        .expect("a");
    let mut with_alt = RouterConfig::new(RouterKind::Fanout);
    with_alt.alternate = Some("ae".into());
    let _ = b.declare_router(NS, "b", with_alt).expect("b");
    let _ = b
        .declare_router(NS, "y", RouterConfig::new(RouterKind::Fanout))
        .expect("y");
    let _ = b
        .declare_router(NS, "ae", RouterConfig::new(RouterKind::Fanout))
        .expect("ae");
    let q = env.queue("q", QueueConfig::default());
    let alt = env.queue("alt", QueueConfig::default());
    for (from, to) in [("f", "a"), ("f", "b"), ("a", "y"), ("b", "y")] {
        let _ = b
            .bind(NS, Binding::new(from, Destination::router(to), ""))
            .expect("bind");
    }
    bind(&env, "y", "q", "");
    bind(&env, "ae", "alt", "");
    let p = b.publish(NS, "f", Message::new("m")).expect("publish");
    assert_eq!(p.queues, 1, "q once");
    assert_eq!(q.stats().ready, 1);
    assert_eq!(alt.stats().ready, 0, "b did route (through y)");
}

/// A store whose writer is the test: appends are durable when it says so.
struct ManualStore {
    last: std::sync::Mutex<u64>,
    progress: Arc<crate::store::Tracker>,
}

impl crate::store::Store for ManualStore {
    fn append(
        &self,
        records: &mut Vec<crate::store::Record>,
        locations: &mut Vec<crate::store::Location>,
    ) -> Result<crate::store::Commit, crate::store::StoreError> {
        let mut last = self.last.lock().expect("lock");
        for r in records.drain(..) {
            if matches!(r, crate::store::Record::Enqueued { .. }) {
                locations.push(crate::store::Location(0));
            }
        }
        *last += 1;
        Ok(crate::store::Commit::pending(
            *last,
            Arc::clone(&self.progress),
        ))
    }

    fn recover(
        &self,
        _: &mut dyn FnMut(crate::store::Record, Option<crate::store::Location>),
    ) -> Result<(), crate::store::StoreError> {
        Ok(())
    }

    fn barrier(&self) -> crate::store::Commit {
        let last = *self.last.lock().expect("lock");
        crate::store::Commit::pending(last, Arc::clone(&self.progress))
    }
}

#[tokio::test]
async fn a_duplicate_is_confirmed_only_once_its_original_is_durable() {
    let store = Arc::new(ManualStore {
        last: std::sync::Mutex::new(0),
        progress: crate::store::Tracker::new(),
    });
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&store) as Arc<dyn crate::store::Store>,
    )
    .expect("open");
    let _ = broker.create_namespace(NS).expect("namespace");
    let q = broker
        .declare_queue(NS, "f.fifo", QueueConfig::fifo())
        .expect("declare")
        .0
        .queue;
    let msg = || {
        Message::new("m")
            .with_group("g")
            .with_dedup_id("d")
            .persistent()
    };
    let (_, original) = broker.send(&q, msg()).expect("send");
    let (sent, duplicate) = broker.send(&q, msg()).expect("send again");
    assert!(matches!(sent.outcome, Enqueued::Duplicate(_)));
    let waiter = tokio::spawn(duplicate.wait());
    tokio::task::yield_now().await;
    assert!(
        !waiter.is_finished(),
        "not confirmed while the original is pending"
    );
    let last = *store.last.lock().expect("lock");
    store.progress.update(|p| p.done = last);
    assert_eq!(waiter.await.expect("join"), Ok(()));
    assert_eq!(original.wait().await, Ok(()));
}

/// A store that keeps each append's records together, to check what is
/// written in one go.
#[derive(Default)]
struct RecordingStore {
    appends: std::sync::Mutex<Vec<Vec<crate::store::Record>>>,
}

impl crate::store::Store for RecordingStore {
    fn append(
        &self,
        records: &mut Vec<crate::store::Record>,
        locations: &mut Vec<crate::store::Location>,
    ) -> Result<crate::store::Commit, crate::store::StoreError> {
        let batch = std::mem::take(records);
        for r in &batch {
            if matches!(r, crate::store::Record::Enqueued { .. }) {
                locations.push(crate::store::Location(7));
            }
        }
        self.appends.lock().expect("lock").push(batch);
        Ok(crate::store::Commit::done())
    }

    fn recover(
        &self,
        _: &mut dyn FnMut(crate::store::Record, Option<crate::store::Location>),
    ) -> Result<(), crate::store::StoreError> {
        Ok(())
    }
}

#[test]
fn a_dead_letters_removal_is_written_with_its_new_copy() {
    use crate::store::{Record, Store};
    let store = Arc::new(RecordingStore::default());
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&store) as Arc<dyn Store>,
    )
    .expect("open");
    let _ = broker.create_namespace(NS).expect("namespace");
    let dlq = broker
        .declare_queue(NS, "dlq", QueueConfig::default())
        .expect("dlq")
        .0
        .queue;
    let q = broker
        .declare_queue(NS, "q", dlq_policy("dlq", 1))
        .expect("q")
        .0
        .queue;
    let _ = broker
        .send(&q, Message::new("m").persistent())
        .expect("send");
    let d = broker.receive(&q, 1, ReceiveMode::Lease(secs(5)));
    broker
        .nack(&q, d[0].lease, true)
        .expect("nack: dead-lettered");
    let appends = store.appends.lock().expect("lock");
    let together = appends.iter().any(|batch| {
        let enq = batch
            .iter()
            .position(|r| matches!(r, Record::Enqueued { queue, .. } if *queue == dlq.id()));
        let rem = batch
            .iter()
            .position(|r| matches!(r, Record::Removed { queue, .. } if *queue == q.id()));
        matches!((enq, rem), (Some(e), Some(r)) if e < r)
    });
    assert!(together, "one append, the new copy first: {appends:?}");
}

/// A store that says it can read messages back, then cannot (and counts
/// how often it was asked).
#[derive(Default)]
struct UnreadableStore {
    loads: std::sync::atomic::AtomicUsize,
}

impl crate::store::Store for UnreadableStore {
    fn append(
        &self,
        records: &mut Vec<crate::store::Record>,
        locations: &mut Vec<crate::store::Location>,
    ) -> Result<crate::store::Commit, crate::store::StoreError> {
        for r in records.drain(..) {
            if matches!(r, crate::store::Record::Enqueued { .. }) {
                locations.push(crate::store::Location(1));
            }
        }
        Ok(crate::store::Commit::done())
    }

    fn recover(
        &self,
        _: &mut dyn FnMut(crate::store::Record, Option<crate::store::Location>),
    ) -> Result<(), crate::store::StoreError> {
        Ok(())
    }

    fn loadable(&self, _: crate::store::Location) -> bool {
        true
    }

    fn load(&self, _: crate::store::Location) -> Result<Arc<Message>, crate::store::StoreError> {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(crate::store::StoreError::Io("unreadable".into()))
    }
}

#[test]
fn a_message_that_cannot_be_read_back_stays_queued() {
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::new(UnreadableStore::default()) as Arc<dyn crate::store::Store>,
    )
    .expect("open");
    let _ = broker.create_namespace(NS).expect("namespace");
    let q = broker
        .declare_queue(NS, "q", QueueConfig::default())
        .expect("q")
        .0
        .queue;
    let _ = broker
        .send(&q, Message::new("kept").persistent())
        .expect("send");
    assert_eq!(broker.evict_to(0), 4);
    let _ = broker
        .send(&q, Message::new("behind").persistent())
        .expect("send");
    // The unreadable one steps out of line for a while; the one behind it
    // is delivered.
    let got = broker.receive(&q, 10, ReceiveMode::Lease(secs(5)));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].message.body[..], b"behind");
    let s = q.stats();
    assert_eq!((s.ready, s.delayed), (0, 1), "still queued, not dropped");
    let (tx, _rx) = mpsc::unbounded_channel();
    broker
        .consume(&q, ConsumerSpec::new(tx))
        .expect("consume: no spin");
    assert_eq!(q.stats().delayed, 1);
}

#[test]
fn peek_leaves_messages_where_they_are() {
    let env = Env::new();
    let q = env.queue("peeked", QueueConfig::default());
    for b in ["a", "b", "c"] {
        env.send(&q, b);
    }
    let seen: Vec<_> = env
        .broker
        .peek(&q, 2)
        .iter()
        .map(|p| (p.message.body.to_vec(), p.deliveries))
        .collect();
    assert_eq!(seen, vec![(b"a".to_vec(), 0), (b"b".to_vec(), 0)]);
    assert_eq!(q.stats().ready, 3);
    let got = env.broker.receive(&q, 10, ReceiveMode::Lease(secs(30)));
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|d| d.delivery_count == 1));
    assert!(
        env.broker.peek(&q, 10).is_empty(),
        "leased messages are not ready"
    );
}

/// Records as a journal may hold them after files were dropped and
/// compacted: a message before its queue's declaration, a copy of an old
/// message after younger ones, a delivery count and a removal later on.
#[test]
fn recovery_puts_messages_back_in_sequence_order_whatever_the_record_order() {
    use crate::store::{QueueId, Record, Store};
    let store = Arc::new(MemoryStore::new());
    let q = QueueId(7);
    let enq = |seq: u64| Record::Enqueued {
        queue: q,
        seq,
        at: Timestamp(1),
        deliveries: 0,
        message: Arc::new({
            let mut m = Message::new(format!("m{seq}")).persistent();
            m.group_id = Some("g".into());
            m
        }),
        replaces: None,
        forwarded: false,
    };
    let mut records = vec![
        Record::NamespaceCreated { name: NS.into() },
        enq(1),
        Record::QueueDeclared {
            id: q,
            namespace: NS.into(),
            name: "fifo".into(),
            config: QueueConfig::fifo(),
        },
        enq(5),
        enq(6),
        enq(3),
        Record::Delivered {
            queue: q,
            seq: 5,
            count: 2,
        },
        Record::Removed {
            queue: q,
            seq: 6,
            loc: None,
        },
    ];
    let _ = store.append(&mut records, &mut Vec::new()).expect("append");
    let broker = open(&FakeClock::default(), &store);
    let queue = broker.queue(NS, "fifo").expect("recovered");
    let got: Vec<(String, u32)> = broker
        .receive(&queue, 10, ReceiveMode::Lease(secs(30)))
        .iter()
        .map(|d| {
            (
                String::from_utf8_lossy(&d.message.body).into_owned(),
                d.delivery_count,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("m1".into(), 1), ("m3".into(), 1), ("m5".into(), 3)]
    );
    // New messages continue the sequence after the highest recovered one.
    let _ = broker
        .send(&queue, Message::new("m7").persistent())
        .expect("send");
    assert_eq!(queue.stats().ready + queue.stats().leased, 4);
}

/// Queues and namespaces deleted part-way through the records take their
/// parked messages (and orphans) with them.
#[test]
fn recovery_drops_what_later_records_delete() {
    use crate::store::{QueueId, Record, Store};
    let store = Arc::new(MemoryStore::new());
    let enq = |q: u64, seq: u64| Record::Enqueued {
        queue: QueueId(q),
        seq,
        at: Timestamp(1),
        deliveries: 0,
        message: Arc::new(Message::new(format!("q{q}m{seq}")).persistent()),
        replaces: None,
        forwarded: false,
    };
    let declare = |id: u64, ns: &str, name: &str| Record::QueueDeclared {
        id: QueueId(id),
        namespace: ns.into(),
        name: name.into(),
        config: QueueConfig::default(),
    };
    let mut records = vec![
        Record::NamespaceCreated { name: NS.into() },
        Record::NamespaceCreated {
            name: "doomed".into(),
        },
        declare(1, NS, "deleted"),
        enq(1, 1),
        declare(2, NS, "kept"),
        enq(2, 1),
        enq(3, 1), // an orphan whose queue is deleted before declared again
        declare(4, "doomed", "in-doomed"),
        enq(4, 1),
        Record::QueueDeleted { id: QueueId(1) },
        Record::QueueDeleted { id: QueueId(3) },
        Record::NamespaceDeleted {
            name: "doomed".into(),
        },
        enq(2, 2),
    ];
    let _ = store.append(&mut records, &mut Vec::new()).expect("append");
    let broker = open(&FakeClock::default(), &store);
    assert!(broker.queue(NS, "deleted").is_err());
    assert!(broker.namespace("doomed").is_err());
    let kept = broker.queue(NS, "kept").expect("kept");
    let s = kept.stats();
    assert_eq!((s.ready, s.bytes, s.resident_bytes), (2, 8, 8));
    assert_eq!(broker.resident_bytes(), 8, "nothing of the deleted ones");
}

// ---- unreadable evicted messages and forgotten outcomes ----

fn fifo_env() -> (Arc<Broker>, Arc<UnreadableStore>, Arc<QueueHandle>) {
    let store = Arc::new(UnreadableStore::default());
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&store) as Arc<dyn crate::store::Store>,
    )
    .expect("open");
    let _ = broker.create_namespace(NS).expect("namespace");
    let q = broker
        .declare_queue(NS, "f.fifo", QueueConfig::fifo())
        .expect("q")
        .0
        .queue;
    let _ = broker
        .send(
            &q,
            Message::new("a1")
                .persistent()
                .with_group("a")
                .with_dedup_id("a1"),
        )
        .expect("send");
    assert!(broker.evict_to(0) > 0);
    let _ = broker
        .send(
            &q,
            Message::new("b1")
                .persistent()
                .with_group("b")
                .with_dedup_id("b1"),
        )
        .expect("send");
    (broker, store, q)
}

#[test]
fn an_unreadable_fifo_head_holds_only_its_group() {
    let (broker, _store, q) = fifo_env();
    let got = broker.receive(&q, 10, ReceiveMode::Lease(secs(5)));
    let bodies: Vec<_> = got.iter().map(|d| d.message.body.to_vec()).collect();
    assert_eq!(
        bodies,
        vec![b"b1".to_vec()],
        "group b should not wait for group a"
    );
}

#[test]
fn an_unreadable_fifo_head_is_not_read_again_and_again_for_push_consumers() {
    let (broker, store, q) = fifo_env();
    let (tx, mut rx) = mpsc::unbounded_channel();
    broker.consume(&q, ConsumerSpec::new(tx)).expect("consume");
    for _ in 0..5 {
        broker.reload_requested();
    }
    let loads = store.loads.load(std::sync::atomic::Ordering::Relaxed);
    let pending = lock(&broker.reloads.queues).len();
    let mut got = Vec::new();
    while let Ok(d) = rx.try_recv() {
        got.push(d.message.body.to_vec());
    }
    assert!(
        pending == 0 && loads <= 1 && got == vec![b"b1".to_vec()],
        "loads {loads}, still requested {pending}, delivered {got:?}"
    );
}

#[tokio::test]
async fn a_long_poll_over_an_unreadable_head_does_not_spin() {
    let (broker, store, q) = fifo_env();
    let r = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        broker.receive_wait(&q, 10, ReceiveMode::Lease(secs(5)), secs(20)),
    )
    .await;
    let loads = store.loads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        loads < 10,
        "receive_wait read the store {loads} times in 300 ms (result {:?})",
        r.map(|v| v.len())
    );
}

/// A store whose commits settle only when the test says.
#[derive(Default)]
struct Tracked {
    tracker: Arc<crate::store::Tracker>,
    next: std::sync::atomic::AtomicU64,
}

impl Tracked {
    fn last(&self) -> u64 {
        self.next.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything appended so far is durable.
    fn settle(&self) {
        let last = self.last();
        self.tracker.update(|p| p.done = last);
    }

    /// The last append failed.
    fn fail_last(&self) {
        let last = self.last();
        self.tracker
            .update(|p| p.fail(last, last, crate::store::StoreError::Full));
    }
}

impl crate::store::Store for Tracked {
    fn append(
        &self,
        records: &mut Vec<crate::store::Record>,
        locations: &mut Vec<crate::store::Location>,
    ) -> Result<crate::store::Commit, crate::store::StoreError> {
        for r in records.drain(..) {
            if matches!(r, crate::store::Record::Enqueued { .. }) {
                locations.push(crate::store::Location(1));
            }
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Ok(crate::store::Commit::pending(n, Arc::clone(&self.tracker)))
    }
    fn recover(
        &self,
        _: &mut dyn FnMut(crate::store::Record, Option<crate::store::Location>),
    ) -> Result<(), crate::store::StoreError> {
        Ok(())
    }
}

/// The send of `pay-1` that the [`tracked_fifo`] tests retry.
fn pay() -> Message {
    Message::new("pay")
        .persistent()
        .with_group("g")
        .with_dedup_id("pay-1")
}

/// A durable FIFO queue on a [`Tracked`] store.
fn tracked_fifo() -> (Arc<Broker>, Arc<Tracked>, Arc<QueueHandle>) {
    let store = Arc::new(Tracked::default());
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&store) as Arc<dyn crate::store::Store>,
    )
    .expect("open");
    let _ = broker.create_namespace(NS).expect("namespace");
    let q = broker
        .declare_queue(
            NS,
            "p.fifo",
            QueueConfig {
                durable: true,
                ..QueueConfig::fifo()
            },
        )
        .expect("q")
        .0
        .queue;
    store.settle();
    (broker, store, q)
}

#[tokio::test]
async fn a_durable_original_is_not_forgotten_after_many_unrelated_failures() {
    let (broker, store, q) = tracked_fifo();
    let (sent, c) = broker.send(&q, pay()).expect("send");
    assert!(matches!(sent.outcome, Enqueued::Accepted { .. }));
    store.settle();
    c.wait()
        .await
        .expect("durable: the client is told it is sent");
    // 65 unrelated failed commits (a disk-full spell).
    let other = broker
        .declare_queue(
            NS,
            "other",
            QueueConfig {
                durable: true,
                ..QueueConfig::default()
            },
        )
        .expect("o")
        .0
        .queue;
    for _ in 0..65 {
        let _ = broker
            .send(&other, Message::new("x").persistent())
            .expect("send");
        store.fail_last();
    }
    let (again, _c) = broker.send(&q, pay()).expect("resend");
    assert!(
        matches!(again.outcome, Enqueued::Duplicate(_)),
        "a resend of a durable original was enqueued again: {:?}",
        again.outcome
    );
}

// ---- older leases of a message (SQS receipt handles of standard queues) ----

#[test]
fn a_message_hidden_by_an_older_lease_comes_back_once() {
    use crate::queue::LeaseMatch::AnyOfMessage;
    let env = Env::new();
    let b = &env.broker;
    let q = env.queue("q", QueueConfig::default());
    env.send(&q, "once");
    let first = b.receive(&q, 1, ReceiveMode::Lease(secs(1)));
    env.clock.advance(secs(2));
    // Its visibility ran out: the older lease hides it, then shows it.
    b.set_visibility_matching(&q, first[0].lease, AnyOfMessage, secs(30), None)
        .expect("hidden again");
    assert_eq!(b.peek(&q, 10).len(), 0);
    b.set_visibility_matching(&q, first[0].lease, AnyOfMessage, secs(0), None)
        .expect("shown");
    assert_eq!(b.peek(&q, 10).len(), 1, "shown once");
    let got = b.receive(&q, 10, ReceiveMode::Lease(secs(30)));
    assert_eq!(got.len(), 1, "received once, not once per reference");
    let s = q.stats();
    assert_eq!((s.ready, s.leased), (0, 1));
    // And after another round trip, a move takes it once too.
    b.set_visibility_matching(&q, got[0].lease, AnyOfMessage, secs(0), None)
        .expect("shown");
    let seen = b.receive(&q, 10, ReceiveMode::AutoAck);
    assert_eq!(seen.len(), 1);
    assert_eq!(q.stats().ready, 0);
}

#[test]
fn an_older_lease_does_not_move_a_push_consumers_delivery() {
    use crate::queue::LeaseMatch::AnyOfMessage;
    let env = Env::new();
    let b = &env.broker;
    let q = env.queue("q", QueueConfig::default());
    env.send(&q, "held");
    let pulled = b.receive(&q, 1, ReceiveMode::Lease(secs(1)));
    env.clock.advance(secs(2));
    let (tx, mut rx) = mpsc::unbounded_channel();
    b.consume(&q, ConsumerSpec::new(tx)).expect("consume");
    b.fire_timers();
    let pushed = rx.try_recv().expect("delivered to the push consumer");
    assert_eq!(pushed.delivery_count, 2);
    let old = pulled[0].lease;
    assert!(matches!(
        b.set_visibility_matching(&q, old, AnyOfMessage, secs(0), None),
        Err(CoreError::LeaseNotFound)
    ));
    assert!(matches!(
        b.ack_matching(&q, old, AnyOfMessage),
        Err(CoreError::LeaseNotFound)
    ));
    assert_eq!(q.stats().leased, 1, "still the push consumer's");
    b.ack(&q, pushed.lease).expect("its own ack settles it");
}

#[tokio::test]
async fn a_retry_after_a_failed_original_journals_it_again_and_is_its_duplicate() {
    let (broker, store, q) = tracked_fifo();
    let (_, c) = broker.send(&q, pay()).expect("send");
    store.fail_last();
    assert!(c.wait().await.is_err(), "sender told it failed");
    let (again, c2) = broker.send(&q, pay()).expect("resend");
    assert!(
        matches!(again.outcome, Enqueued::Duplicate(_)),
        "still queued: the retry is its duplicate"
    );
    store.settle();
    c2.wait().await.expect("retry durable");
    let mut bodies = Vec::new();
    for _ in 0..3 {
        for d in broker.receive(&q, 10, ReceiveMode::AutoAck) {
            bodies.push(d.message.body.to_vec());
        }
    }
    assert_eq!(
        bodies.len(),
        1,
        "copies delivered of one dedup id: {}",
        bodies.len()
    );
}

#[test]
fn routers_deliver_into_streams_by_name_beside_queues() {
    let env = Env::new();
    let b = &env.broker;
    let streams = crate::stream::Streams::in_memory();
    b.attach_streams(Arc::clone(&streams));
    let log = streams
        .create(NS, "events", 1, crate::stream::StreamConfig::default())
        .expect("stream");
    let _ = b
        .declare_queue(NS, "copies", QueueConfig::default())
        .expect("queue");
    let _ = b
        .declare_router(NS, "fan", RouterConfig::new(RouterKind::Fanout))
        .expect("router");
    for dest in ["events", "copies"] {
        let _ = b
            .bind(NS, Binding::new("fan", Destination::queue(dest), ""))
            .expect("bind");
    }
    // Binding to a name that is neither is still refused.
    assert!(matches!(
        b.bind(NS, Binding::new("fan", Destination::queue("nowhere"), "")),
        Err(CoreError::QueueNotFound(_))
    ));
    let p = b
        .publish(NS, "fan", Message::new(&b"one"[..]).with_routing_key("k"))
        .expect("publish");
    assert_eq!((p.queues, p.refused), (2, 0));
    let p = b
        .publish(
            NS,
            DEFAULT_ROUTER,
            Message::new(&b"two"[..]).with_routing_key("events"),
        )
        .expect("publish");
    assert_eq!(p.queues, 1);
    let part = log.partition(0).expect("partition");
    assert_eq!(part.high_watermark(), 2);
    let fetched = part.read(0, 1 << 20).expect("read");
    let mut bodies = Vec::new();
    for (at, h) in crate::stream::batch::headers(&fetched.records) {
        let raw = fetched.records.slice(at..at + h.size);
        for r in crate::stream::batch::records(&raw).expect("records") {
            let m = crate::stream::message::message_of(&r);
            bodies.push((m.body.to_vec(), m.router.clone(), m.routing_key.clone()));
        }
    }
    assert_eq!(
        bodies,
        vec![
            (b"one".to_vec(), Some("fan".to_owned()), "k".to_owned()),
            (b"two".to_vec(), None, "events".to_owned()),
        ]
    );
    assert_eq!(b.queue(NS, "copies").expect("queue").stats().ready, 1);
}
