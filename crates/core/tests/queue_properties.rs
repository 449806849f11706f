//! Property tests of one queue under random interleavings of send, receive,
//! ack, nack, visibility changes and the passing of time: no message is
//! lost; none is delivered while another lease on it is live; delivery
//! counts are exact; dead-letter moves happen exactly at the limit; FIFO
//! order holds within each group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::clock::Timestamp;
use ferry_core::message::{DeathReason, Message, MessageId};
use ferry_core::queue::{
    DeadLetterPolicy, DeadLetterTarget, Delivery, Effects, QueueConfig, QueueCore, ReceiveMode,
};
use ferry_core::store::QueueId;
use proptest::prelude::*;

const MAX_DELIVERIES: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Send { group: u8 },
    Receive { max: u8, visibility: u8 },
    Ack { pick: usize },
    Nack { pick: usize, requeue: bool },
    Release { pick: usize },
    Extend { pick: usize, visibility: u8 },
    Advance { secs: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(|group| Op::Send { group }),
        3 => (1u8..4, 1u8..6).prop_map(|(max, visibility)| Op::Receive { max, visibility }),
        2 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, requeue)| Op::Nack { pick, requeue }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (any::<usize>(), 1u8..6).prop_map(|(pick, visibility)| Op::Extend { pick, visibility }),
        2 => (0u8..7).prop_map(|secs| Op::Advance { secs }),
    ]
}

#[derive(Debug, Default)]
struct Model {
    group: u8,
    deliveries: u32,
    /// The live lease's delivery number and deadline.
    lease: Option<(u32, Timestamp)>,
    acked: bool,
    dead: bool,
}

struct Harness {
    q: QueueCore,
    now: Timestamp,
    fx: Effects,
    fifo: bool,
    msgs: BTreeMap<u64, Model>,
    held: Vec<Delivery>,
    next: u64,
}

fn number(d: &Message) -> u64 {
    u64::from_le_bytes(d.body[..8].try_into().expect("8-byte body"))
}

impl Harness {
    fn new(fifo: bool) -> Self {
        let base = if fifo {
            QueueConfig::fifo()
        } else {
            QueueConfig::default()
        };
        let config = QueueConfig {
            dedup: None,
            dead_letter: Some(DeadLetterPolicy {
                max_deliveries: Some(MAX_DELIVERIES),
                ..DeadLetterPolicy::all_reasons(DeadLetterTarget::Queue("dlq".into()))
            }),
            ..base
        };
        let now = Timestamp(1_000_000);
        Harness {
            q: QueueCore::new(QueueId(1), "q", config, now, 1),
            now,
            fx: Effects::default(),
            fifo,
            msgs: BTreeMap::new(),
            held: Vec::new(),
            next: 0,
        }
    }

    fn live(&self, m: &Model) -> bool {
        m.lease.is_some_and(|(_, deadline)| deadline > self.now)
    }

    fn pick(&self, pick: usize) -> Option<Delivery> {
        (!self.held.is_empty()).then(|| self.held[pick % self.held.len()].clone())
    }

    /// A lease is current if the message is still here and not delivered since.
    fn current(&self, d: &Delivery) -> bool {
        let m = &self.msgs[&number(&d.message)];
        !m.acked && !m.dead && m.deliveries == d.lease.delivery
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Send { group } => {
                let n = self.next;
                self.next += 1;
                let mut msg = Message::new(Bytes::copy_from_slice(&n.to_le_bytes()));
                msg.id = MessageId(u128::from(n));
                msg = msg.with_group(format!("g{group}"));
                self.q
                    .enqueue(Arc::new(msg), self.now, &mut self.fx)
                    .expect("no limits set");
                self.msgs.insert(
                    n,
                    Model {
                        group,
                        ..Model::default()
                    },
                );
            }
            Op::Receive { max, visibility } => {
                // Time-driven changes first, so the model sees the same "before".
                self.q.advance(self.now, &mut self.fx);
                self.check_dead_letters(None);
                let blocked: Vec<u8> = self
                    .msgs
                    .values()
                    .filter(|m| self.live(m))
                    .map(|m| m.group)
                    .collect();
                let mut out = Vec::new();
                self.q.receive(
                    self.now,
                    usize::from(max),
                    ReceiveMode::Lease(Duration::from_secs(u64::from(visibility))),
                    &mut self.fx,
                    &mut out,
                );
                assert!(out.len() <= usize::from(max));
                if self.fifo {
                    self.check_fifo(&out, &blocked);
                }
                for d in out {
                    let now = self.now;
                    let live = self.live(&self.msgs[&number(&d.message)]);
                    let m = self
                        .msgs
                        .get_mut(&number(&d.message))
                        .expect("known message");
                    assert!(!m.acked && !m.dead, "delivered after it was settled");
                    assert!(!live, "delivered while another lease is live");
                    assert_eq!(d.delivery_count, m.deliveries + 1, "exact delivery count");
                    assert!(d.delivery_count <= MAX_DELIVERIES);
                    m.deliveries = d.delivery_count;
                    m.lease = d.deadline.map(|t| (d.lease.delivery, t));
                    assert!(d.deadline.is_some_and(|t| t > now));
                    self.held.push(d);
                }
            }
            Op::Ack { pick } => {
                let Some(d) = self.pick(pick) else { return };
                self.q.advance(self.now, &mut self.fx);
                self.check_dead_letters(None);
                let expect_ok = self.current(&d);
                let r = self.q.ack(d.lease, self.now, &mut self.fx);
                assert_eq!(r.is_ok(), expect_ok, "ack of {:?}: {r:?}", d.lease);
                if r.is_ok() {
                    let m = self.msgs.get_mut(&number(&d.message)).expect("known");
                    m.acked = true;
                    m.lease = None;
                }
            }
            Op::Nack { pick, requeue } => {
                let Some(d) = self.pick(pick) else { return };
                self.settle(&d, |h, lease| {
                    h.q.nack(lease, requeue, h.now, &mut h.fx).map(|_| ())
                });
                if !requeue {
                    self.check_dead_letters(Some(number(&d.message)));
                }
            }
            Op::Release { pick } => {
                let Some(d) = self.pick(pick) else { return };
                self.settle(&d, |h, lease| {
                    h.q.set_visibility(lease, Duration::ZERO, h.now, &mut h.fx)
                        .map(|_| ())
                });
            }
            Op::Extend { pick, visibility } => {
                let Some(d) = self.pick(pick) else { return };
                self.q.advance(self.now, &mut self.fx);
                self.check_dead_letters(None);
                let n = number(&d.message);
                let expect_ok = self.current(&d) && self.live(&self.msgs[&n]);
                let timeout = Duration::from_secs(u64::from(visibility));
                let r = self
                    .q
                    .set_visibility(d.lease, timeout, self.now, &mut self.fx);
                assert_eq!(r.is_ok(), expect_ok, "extend: {r:?}");
                if let Ok(deadline) = r {
                    let m = self.msgs.get_mut(&n).expect("known");
                    m.lease = Some((d.lease.delivery, deadline));
                }
            }
            Op::Advance { secs } => {
                self.now = self.now.plus(Duration::from_secs(u64::from(secs)));
                self.q.tick(self.now, &mut self.fx);
            }
        }
        self.check_dead_letters(None);
        self.held.retain(|d| {
            let m = &self.msgs[&number(&d.message)];
            !m.acked && !m.dead
        });
    }

    /// Nack-with-requeue or release: allowed only on a live, current lease.
    fn settle(
        &mut self,
        d: &Delivery,
        f: impl FnOnce(&mut Self, ferry_core::queue::Lease) -> Result<(), ferry_core::CoreError>,
    ) {
        self.q.advance(self.now, &mut self.fx);
        self.check_dead_letters(None);
        let n = number(&d.message);
        let expect_ok = self.current(d) && self.live(&self.msgs[&n]);
        let r = f(self, d.lease);
        assert_eq!(r.is_ok(), expect_ok, "settle: {r:?}");
        if r.is_ok() {
            self.msgs.get_mut(&n).expect("known").lease = None;
        }
    }

    /// Dead letters are exactly: rejected messages (`rejected`), and
    /// messages whose delivery count reached the limit.
    fn check_dead_letters(&mut self, rejected: Option<u64>) {
        for dl in self.fx.dead_letters.drain(..) {
            let msg = dl.message.marked().expect("nothing is evicted here");
            let n = number(msg);
            let m = self.msgs.get_mut(&n).expect("known");
            assert!(!m.acked && !m.dead, "dead-lettered twice or after ack");
            let reason = msg.deaths[0].reason;
            match reason {
                DeathReason::DeliveryLimit => assert_eq!(m.deliveries, MAX_DELIVERIES),
                DeathReason::Rejected => assert_eq!(Some(n), rejected),
                other => panic!("unexpected death reason {other:?}"),
            }
            m.dead = true;
            m.lease = None;
        }
        self.fx.records.clear();
    }

    /// In one receive, each group's messages are its oldest unsettled ones,
    /// in order, and no group with a live lease gave any.
    fn check_fifo(&self, out: &[Delivery], blocked: &[u8]) {
        let mut by_group: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
        for d in out {
            let n = number(&d.message);
            by_group.entry(self.msgs[&n].group).or_default().push(n);
        }
        for (g, got) in by_group {
            assert!(!blocked.contains(&g), "group {g} delivered while blocked");
            let pending: Vec<u64> = self
                .msgs
                .iter()
                .filter(|(_, m)| m.group == g && !m.acked && !m.dead)
                .map(|(n, _)| *n)
                .take(got.len())
                .collect();
            assert_eq!(got, pending, "group {g} out of order");
        }
    }

    /// Lets every lease lapse and acks everything left; then each message
    /// must be acked or dead-lettered, exactly once.
    fn drain(&mut self) {
        for _ in 0..(self.msgs.len() * 4 + 10) {
            self.run(Op::Advance { secs: 10 });
            self.held.clear();
            self.run(Op::Receive {
                max: 10,
                visibility: 5,
            });
            let held = std::mem::take(&mut self.held);
            for d in held {
                let r = self.q.ack(d.lease, self.now, &mut self.fx);
                assert!(r.is_ok(), "fresh lease acks: {r:?}");
                self.msgs.get_mut(&number(&d.message)).expect("known").acked = true;
            }
            if self.q.is_empty() {
                break;
            }
        }
        assert!(self.q.is_empty(), "queue drained");
        for (n, m) in &self.msgs {
            assert!(m.acked ^ m.dead, "message {n} lost or settled twice: {m:?}");
        }
        let s = self.q.stats();
        assert_eq!((s.ready, s.leased, s.delayed, s.bytes), (0, 0, 0, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn standard_queue_loses_nothing_and_counts_exactly(ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::new(false);
        for op in ops {
            h.run(op);
        }
        h.drain();
    }

    #[test]
    fn fifo_queue_keeps_group_order(ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::new(true);
        for op in ops {
            h.run(op);
        }
        h.drain();
    }
}
