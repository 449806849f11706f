//! Runs one seed: a broker on the faulty store, random operations applied
//! to it and to the model side by side, each result checked against the
//! model as it comes, and each operation's journal records attributed to
//! the changes the model expects. Crashes end a life of the broker;
//! `recovery.rs` checks what the next one brings back.
//!
//! Each life runs on its own current-thread tokio runtime (move tasks are
//! spawned on it), dropped at the crash with everything the broker had
//! spawned. Time is a `FakeClock` moved only here; message ids come from
//! one `SequentialIds` shared by all lives, so they never repeat.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_core::Broker;
use ferry_core::broker::{MoveStatus, QueueHandle};
use ferry_core::clock::{Clock, FakeClock};
use ferry_core::error::{CoreError, CoreResult};
use ferry_core::ids::SequentialIds;
use ferry_core::message::Message;
use ferry_core::queue::{Enqueued, Lease, ReceiveMode};
use ferry_core::store::{QueueId, Store};

use super::Check;
use super::attribution::{attribute, token_of};
use super::model::{Death, Ev, Model, Msg, State, Why};
use super::ops::{self, Mode, MsgSpec, Op};
use super::queues::{DLQ, NAMESPACE, SPECS};
use super::rng::Rng;
use super::store::{Disk, FaultyStore, Keep, Status, lock};
use super::waiters::{Outcome, Waiters};

/// Percent of `append` calls the store refuses.
const REFUSE_PERCENT: u64 = 1;
/// Leases kept for later settling (older ones are forgotten).
const MAX_HELD: usize = 48;

/// A delivery the simulated consumer still holds.
#[derive(Clone, Debug)]
pub struct Held {
    pub queue: usize,
    pub inst: usize,
    pub lease: Lease,
    pub deadline: Option<u64>,
    pub life: u32,
}

/// What a pending commit confirms.
#[derive(Clone, Debug, Default)]
pub struct Confirm {
    /// Instances the sends created.
    pub created: Vec<usize>,
    /// Originals that duplicate sends were answered with.
    pub dup_of: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct Totals {
    pub ops: usize,
    pub crashes: usize,
    pub confirmed: usize,
    pub duplicates_confirmed: usize,
    pub deliveries: usize,
    pub moved: usize,
    pub torn_kept: usize,
    pub torn_lost: usize,
    /// Sends whose key's original the store refused or failed.
    pub resent_after_failure: usize,
    /// Messages a restart found at their delivery limit.
    pub at_limit_after_restart: usize,
}

pub struct Sim {
    pub seed: u64,
    pub rng: Rng,
    pub clock: FakeClock,
    pub ids: Arc<SequentialIds>,
    pub disk: Arc<Mutex<Disk>>,
    pub store: Arc<FaultyStore>,
    pub broker: Option<Arc<Broker>>,
    pub handles: Vec<Arc<QueueHandle>>,
    pub qids: Vec<QueueId>,
    pub model: Model,
    pub waiters: Waiters<Confirm>,
    pub held: Vec<Held>,
    pub life: u32,
    pub next_token: u64,
    pub trace: Vec<String>,
    /// Records logged before the operation under way.
    pub mark: usize,
    pub totals: Totals,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Sim {
    /// A broker on an empty store with the simulated queues declared, their
    /// declarations durable (the simulation tests messages, not topology).
    pub fn new(seed: u64) -> Check<Sim> {
        let mut rng = Rng::new(seed);
        let clock = FakeClock::default();
        let disk = Disk::new(rng.next_u64());
        let store = FaultyStore::open(&disk);
        let ids = Arc::new(SequentialIds::default());
        let broker = Broker::open(
            Arc::new(clock.clone()),
            Arc::clone(&ids) as Arc<dyn ferry_core::ids::IdGenerator>,
            Arc::clone(&store) as Arc<dyn Store>,
        )
        .map_err(|e| format!("open: {e}"))?;
        let _ = broker.create_namespace(NAMESPACE);
        let mut handles = Vec::new();
        for spec in &SPECS {
            let d = broker
                .declare_queue(NAMESPACE, spec.name, spec.config())
                .map_err(|e| format!("declare {}: {e}", spec.name))?;
            handles.push(d.0.queue);
        }
        store.sync(0);
        store.publish();
        let qids = handles.iter().map(|h| h.id()).collect();
        let mark = {
            let mut d = lock(&disk);
            d.set_refusals(REFUSE_PERCENT);
            d.records.len()
        };
        let now = clock.now().0;
        Ok(Sim {
            seed,
            rng,
            clock,
            ids,
            disk,
            store,
            broker: Some(broker),
            handles,
            qids,
            model: Model::new(now),
            waiters: Waiters::new(),
            held: Vec::new(),
            life: 0,
            next_token: 1,
            trace: Vec::new(),
            mark,
            totals: Totals::default(),
        })
    }

    pub fn broker(&self) -> Arc<Broker> {
        Arc::clone(self.broker.as_ref().expect("a broker is running"))
    }

    fn status_of(&self) -> impl Fn(u64) -> String + '_ {
        move |r| format!("{:?}", lock(&self.disk).records[r as usize].status)
    }

    pub fn describe(&self, i: usize) -> String {
        self.model.describe(i, &self.status_of())
    }

    /// Runs operations until a crash (returned with how much of the
    /// pending records it keeps) or until `ops_left` runs out (then a final
    /// crash).
    pub async fn run_life(&mut self, ops_left: &mut usize) -> Check<Keep> {
        while *ops_left > 0 {
            *ops_left -= 1;
            self.totals.ops += 1;
            let op = ops::generate(&mut self.rng);
            self.trace.push(format!(
                "seed {} life {} t+{} {:?}",
                self.seed,
                self.life,
                self.model.now - FakeClock::default().now().0,
                op
            ));
            match op {
                Op::Crash { keep } => return Ok(keep),
                Op::Redrive => self.redrive().await?,
                other => self.step(&other)?,
            }
        }
        Ok(ops::keep(&mut self.rng))
    }

    pub fn step(&mut self, op: &Op) -> Check {
        match op {
            Op::Send { queue, msgs, batch } => self.send(*queue, msgs, *batch),
            Op::Receive { queue, max, mode } => self.receive(*queue, *max, *mode),
            Op::Ack { pick } => self.ack(*pick, false),
            Op::Delete { pick } => self.ack(*pick, true),
            Op::Nack { pick, requeue } => self.nack(*pick, *requeue),
            Op::Visibility { pick, ms } => self.visibility(*pick, *ms),
            Op::Purge {
                queue,
                include_leased,
            } => self.purge(*queue, *include_leased),
            Op::Peek { queue } => self.peek(*queue),
            Op::Evict => {
                self.begin();
                self.broker().evict_to(0);
                self.finish()
            }
            Op::FireTimers => {
                self.begin();
                // Every queue with something due is ticked: the model
                // brings them all up to now.
                self.model.advance_all();
                self.broker().fire_timers();
                self.finish()
            }
            Op::Advance { ms: n } => {
                self.clock.advance(ms(*n));
                self.model.now = self.clock.now().0;
                Ok(())
            }
            Op::Sync { commits } => {
                self.store.sync(*commits);
                self.settle()
            }
            Op::Publish => {
                self.store.publish();
                self.settle()
            }
            Op::Fail { commits } => {
                self.store.fail(*commits);
                self.settle()
            }
            Op::Redrive | Op::Crash { .. } => unreachable!("handled by run_life"),
        }
    }

    /// Starts a queue operation: time moves on a millisecond (so no message
    /// enters a queue twice at the same instant), the log is marked.
    pub fn begin(&mut self) {
        self.clock.advance(ms(1));
        self.model.now = self.clock.now().0;
        self.mark = lock(&self.disk).records.len();
        debug_assert!(self.model.events.is_empty());
    }

    /// Ends a queue operation: its records against the model's changes.
    pub fn finish(&mut self) -> Check {
        let disk = lock(&self.disk);
        attribute(&mut self.model, &disk, self.mark, &self.qids)
    }

    /// Waiters the store woke, in a random order; then no one may be
    /// asleep whose commit is settled.
    fn settle(&mut self) -> Check {
        for (what, outcome) in self.waiters.poll_woken(&mut self.rng) {
            self.confirmed(&what, outcome)?;
        }
        self.waiters.check_no_lost_wakeups()
    }

    /// A publisher hears its outcome. A confirm is a promise: what it
    /// confirms must be durable by now.
    fn confirmed(&mut self, what: &Confirm, outcome: Outcome) -> Check {
        if outcome.is_err() {
            return Ok(());
        }
        let disk = lock(&self.disk);
        for &i in &what.created {
            let rec = self.model.inst[i].created.expect("attributed");
            let status = disk.records[rec as usize].status;
            ensure!(
                status == Status::Synced,
                "confirmed a send whose record is {status:?}: m{}",
                self.model.inst[i].token
            );
            if let Some(m) = self.model.msgs.get_mut(&self.model.inst[i].token) {
                m.confirmed = true;
            }
            self.totals.confirmed += 1;
        }
        for &o in &what.dup_of {
            let rec = self.model.inst[o].created.expect("attributed");
            let status = disk.records[rec as usize].status;
            ensure!(
                status.durable(),
                "confirmed a duplicate send while its original m{} is not durable ({status:?})",
                self.model.inst[o].token
            );
            self.totals.duplicates_confirmed += 1;
        }
        Ok(())
    }

    pub fn send(&mut self, q: usize, specs: &[MsgSpec], batch: bool) -> Check {
        self.begin();
        self.model.advance(q);
        let spec = &SPECS[q];
        let mut msgs = Vec::new();
        let mut tokens = Vec::new();
        for s in specs {
            let token = self.next_token;
            self.next_token += 1;
            let mut m = Message::new(Bytes::copy_from_slice(&token.to_le_bytes())).persistent();
            if spec.fifo {
                m = m.with_group(format!("g{}", s.group));
                if let Some(k) = s.key {
                    m = m.with_dedup_id(format!("k{k}"));
                }
            }
            if let Some(d) = s.delay_ms {
                m = m.with_delay(ms(d));
            }
            if let Some(t) = s.ttl_ms {
                m = m.with_ttl(ms(t));
            }
            tokens.push(token);
            msgs.push(m);
        }
        let broker = self.broker();
        let h = &self.handles[q];
        let (results, commit) = if batch {
            broker
                .send_batch(h, msgs)
                .map_err(|e| format!("send_batch to {}: {e}", spec.name))?
        } else {
            let (sent, commit) = broker
                .send(h, msgs.remove(0))
                .map_err(|e| format!("send to {}: {e}", spec.name))?;
            (vec![Ok(sent)], commit)
        };
        let mut confirm = Confirm::default();
        let mut expect_seq = Vec::new();
        let mut expect_dup = Vec::new();
        for ((s, &token), r) in specs.iter().zip(&tokens).zip(results) {
            let sent = r.map_err(|e| format!("send of m{token} to {}: {e}", spec.name))?;
            let key = s
                .key
                .filter(|_| spec.dedup_window_ms.is_some())
                .map(|k| format!("k{k}"));
            let seen = key.as_deref().and_then(|k| self.model.dedup_original(q, k));
            // An original the store refused or failed: still queued, it is
            // journaled again and this send is its duplicate; gone, this
            // is a new send.
            let failed = seen.filter(|&o| self.never_durable(o));
            let original = seen.filter(|&o| !self.never_durable(o) || self.model.inst[o].live);
            if let Some(o) = failed {
                self.totals.resent_after_failure += 1;
                if self.model.inst[o].live {
                    self.model.events.push(Ev::Rejournal(o));
                }
            }
            match (original, sent.outcome) {
                (Some(o), Enqueued::Duplicate(orig)) => {
                    // Checked once attributed: the original may be in this batch.
                    expect_dup.push((token, o, orig));
                    confirm.dup_of.push(o);
                }
                (None, Enqueued::Accepted { seq }) => {
                    let group = spec.fifo.then(|| format!("g{}", s.group));
                    let i = self
                        .model
                        .create(q, token, group, s.ttl_ms, s.delay_ms, None, false);
                    if let Some(k) = key {
                        self.model.remember(q, k, i);
                    }
                    self.model.msgs.insert(
                        token,
                        Msg {
                            id: sent.id,
                            queue: q,
                            first: i,
                            confirmed: false,
                        },
                    );
                    expect_seq.push((i, seq));
                    confirm.created.push(i);
                }
                (original, outcome) => {
                    return Err(format!(
                        "send of m{token} to {} with key {key:?}: the model expected {}, the broker says {outcome:?}",
                        spec.name,
                        match original {
                            Some(o) => format!("a duplicate of m{}", self.model.inst[o].token),
                            None => "a new message".into(),
                        }
                    ));
                }
            }
        }
        self.finish()?;
        let mut last_seq = 0;
        for (i, seq) in expect_seq {
            ensure!(
                self.model.inst[i].seq == Some(seq),
                "m{} was accepted as seq {seq}, journaled as {:?}",
                self.model.inst[i].token,
                self.model.inst[i].seq
            );
            // A batch enters in its order (FIFO order is send order).
            ensure!(
                seq > last_seq,
                "a batch to {} entered out of order: seq {seq} after {last_seq}",
                spec.name
            );
            last_seq = seq;
        }
        for (token, o, orig) in expect_dup {
            let oi = &self.model.inst[o];
            let id = self.model.msgs[&oi.token].id;
            ensure!(
                Some(orig.seq) == oi.seq && orig.id == id,
                "m{token} duplicates m{} (seq {:?}, id {id}), the broker says seq {} id {}",
                oi.token,
                oi.seq,
                orig.seq,
                orig.id
            );
        }
        if let Some((what, outcome)) = self.waiters.add(commit, confirm) {
            self.confirmed(&what, outcome)?;
        }
        Ok(())
    }

    fn receive(&mut self, q: usize, max: usize, mode: Mode) -> Check {
        self.begin();
        self.model.advance(q);
        let eligible = self.model.eligible(q);
        let broker_mode = match mode {
            Mode::Lease(n) => ReceiveMode::Lease(ms(n)),
            Mode::Hold => ReceiveMode::Hold,
            Mode::AutoAck => ReceiveMode::AutoAck,
        };
        let got = self.broker().receive(&self.handles[q], max, broker_mode);
        let name = SPECS[q].name;
        ensure!(
            got.len() == max.min(eligible.len()),
            "receive (max {max}) from {name} got {} messages; the model has {} to give: {:?}",
            got.len(),
            eligible.len(),
            eligible
                .iter()
                .map(|&i| self.describe(i))
                .collect::<Vec<_>>()
        );
        let now = self.model.now;
        let deadline = match mode {
            Mode::Lease(n) => Some(now + n),
            _ => None,
        };
        let mut taken: Vec<usize> = Vec::new();
        for d in &got {
            let token = token_of(&d.message);
            let Some(i) = eligible
                .iter()
                .copied()
                .find(|&i| self.model.inst[i].seq == Some(d.lease.seq))
            else {
                return Err(format!(
                    "receive from {name} handed out m{token} (seq {}), which the model does not have ready",
                    d.lease.seq
                ));
            };
            let e = &self.model.inst[i];
            ensure!(
                e.token == token && e.at == d.enqueued_at.0 && !taken.contains(&i),
                "receive from {name}: seq {} is m{token} entered at {}, the model's is {}",
                d.lease.seq,
                d.enqueued_at.0,
                self.describe(i)
            );
            ensure!(
                d.delivery_count == e.deliveries + 1 && d.lease.delivery == d.delivery_count,
                "m{token} delivered as delivery {} (lease {}), the model counts {} before",
                d.delivery_count,
                d.lease.delivery,
                e.deliveries
            );
            // The dead-letter policy's promise: delivered at most this often.
            if let Some(limit) = SPECS[q].max_deliveries {
                ensure!(
                    d.delivery_count <= limit,
                    "m{token} delivered {} times from {name}, whose delivery limit is {limit}",
                    d.delivery_count
                );
            }
            ensure!(
                d.deadline.map(|t| t.0) == deadline && d.auto_acked == (mode == Mode::AutoAck),
                "m{token}: deadline {:?} auto-acked {}, expected {deadline:?} {:?}",
                d.deadline,
                d.auto_acked,
                mode
            );
            if q == DLQ {
                let from = e.origin.map(|o| SPECS[o].name);
                ensure!(
                    d.message.last_death_queue() == from,
                    "m{token} in the dead-letter queue names {:?} as where it died, the model {from:?}",
                    d.message.last_death_queue()
                );
            }
            taken.push(i);
        }
        if SPECS[q].fifo {
            // Strict order per group: what a group gave is its oldest ready
            // messages, in order.
            let mut groups: Vec<&str> = taken.iter().map(|&i| self.model.group_of(i)).collect();
            groups.dedup();
            for g in groups {
                let gave: Vec<usize> = taken
                    .iter()
                    .copied()
                    .filter(|&i| self.model.group_of(i) == g)
                    .collect();
                let mut oldest: Vec<usize> = eligible
                    .iter()
                    .copied()
                    .filter(|&i| self.model.group_of(i) == g)
                    .collect();
                oldest.sort_by_key(|&i| self.model.inst[i].seq);
                oldest.truncate(gave.len());
                ensure!(
                    gave == oldest,
                    "FIFO order broken in {name} group {g}: got {:?}, the oldest are {:?}",
                    gave.iter()
                        .map(|&i| self.model.inst[i].token)
                        .collect::<Vec<_>>(),
                    oldest
                        .iter()
                        .map(|&i| self.model.inst[i].token)
                        .collect::<Vec<_>>()
                );
            }
        }
        for (d, &i) in got.iter().zip(&taken) {
            self.model.deliver(i, deadline, mode == Mode::AutoAck);
            self.totals.deliveries += 1;
            if mode != Mode::AutoAck {
                self.held.push(Held {
                    queue: q,
                    inst: i,
                    lease: d.lease,
                    deadline,
                    life: self.life,
                });
            }
        }
        if self.held.len() > MAX_HELD {
            let excess = self.held.len() - MAX_HELD;
            self.held.drain(..excess);
        }
        self.finish()
    }

    /// Whether the store refused or failed the record that created `i`:
    /// the sender was told, and a send with its key is a new one.
    fn never_durable(&self, i: usize) -> bool {
        let disk = lock(&self.disk);
        self.model.inst[i].created.is_some_and(|r| {
            matches!(
                disk.records[r as usize].status,
                Status::Refused | Status::Failed
            )
        })
    }

    /// Picks a held lease; for a delete, one whose deadline passed if any.
    fn pick(&self, pick: usize, expired_first: bool) -> Option<usize> {
        if self.held.is_empty() {
            return None;
        }
        if expired_first {
            let now = self.model.now;
            let ran_out: Vec<usize> = (0..self.held.len())
                .filter(|&j| self.held[j].deadline.is_some_and(|d| d <= now))
                .collect();
            if !ran_out.is_empty() {
                return Some(ran_out[pick % ran_out.len()]);
            }
        }
        Some(pick % self.held.len())
    }

    /// The broker's answer to a settlement must be what the model expects.
    fn expect_lease<T: std::fmt::Debug>(
        &self,
        what: &str,
        h: &Held,
        r: &CoreResult<T>,
        ok: bool,
    ) -> Check {
        let fine = match r {
            Ok(_) => ok,
            Err(CoreError::LeaseNotFound) => !ok,
            Err(_) => false,
        };
        ensure!(
            fine,
            "{what} of lease {:?} (life {}, now {}): the broker says {r:?}, the model expected {}; {}",
            h.lease,
            h.life,
            self.life,
            if ok { "success" } else { "LeaseNotFound" },
            self.describe(h.inst)
        );
        Ok(())
    }

    pub fn ack(&mut self, pick: usize, delete: bool) -> Check {
        let Some(j) = self.pick(pick, delete) else {
            return Ok(());
        };
        let h = self.held[j].clone();
        self.begin();
        self.model.advance(h.queue);
        let ok = self
            .model
            .lease_matches(h.inst, h.lease.delivery, h.life == self.life, false);
        let r = self.broker().ack(&self.handles[h.queue], h.lease);
        self.expect_lease(if delete { "delete" } else { "ack" }, &h, &r, ok)?;
        if ok {
            self.model.remove(h.inst, Why::Acked, None);
            self.held.remove(j);
        }
        self.finish()
    }

    fn nack(&mut self, pick: usize, requeue: bool) -> Check {
        let Some(j) = self.pick(pick, false) else {
            return Ok(());
        };
        let h = self.held[j].clone();
        self.begin();
        self.model.advance(h.queue);
        let ok = self
            .model
            .lease_matches(h.inst, h.lease.delivery, h.life == self.life, true);
        let r = self.broker().nack(&self.handles[h.queue], h.lease, requeue);
        self.expect_lease("nack", &h, &r, ok)?;
        if ok {
            if requeue {
                self.model.return_leased(h.inst);
            } else {
                self.model.die(h.inst, Death::Rejected);
            }
            self.held.remove(j);
        }
        self.finish()
    }

    fn visibility(&mut self, pick: usize, n: u64) -> Check {
        let Some(j) = self.pick(pick, false) else {
            return Ok(());
        };
        let h = self.held[j].clone();
        self.begin();
        self.model.advance(h.queue);
        let ok = self
            .model
            .lease_matches(h.inst, h.lease.delivery, h.life == self.life, true);
        let r = self
            .broker()
            .set_visibility(&self.handles[h.queue], h.lease, ms(n));
        self.expect_lease("visibility change", &h, &r, ok)?;
        if let Ok(t) = r {
            let now = self.model.now;
            ensure!(
                t.0 == now + n,
                "visibility change to {n} ms set the deadline to {}, expected {}",
                t.0,
                now + n
            );
            if n == 0 {
                self.model.return_leased(h.inst);
            } else {
                self.model.inst[h.inst].state = State::Leased(Some(now + n));
                self.held[j].deadline = Some(now + n);
            }
        }
        self.finish()
    }

    fn purge(&mut self, q: usize, include_leased: bool) -> Check {
        self.begin();
        self.model.advance(q);
        let expected = self.model.purge(q, include_leased);
        // The sim settles commits itself; what it checks is the journal.
        let (n, _settled_by_the_sim) = self.broker().purge(&self.handles[q], include_leased);
        ensure!(
            n == expected,
            "purge of {} (leased too: {include_leased}) removed {n}, the model {expected}",
            SPECS[q].name
        );
        self.finish()
    }

    /// Looks at the ready messages without taking them: exactly the model's
    /// ready ones, with their delivery counts; FIFO groups oldest first.
    pub fn peek(&mut self, q: usize) -> Check {
        self.begin();
        self.model.advance(q);
        let got = self.broker().peek(&self.handles[q], 1 << 20);
        let name = SPECS[q].name;
        let mut expected: Vec<(u64, u64, u32)> = self
            .model
            .ready_in(q)
            .iter()
            .map(|&i| {
                let e = &self.model.inst[i];
                (e.token, e.at, e.deliveries)
            })
            .collect();
        let mut seen: Vec<(u64, u64, u32)> = got
            .iter()
            .map(|p| (token_of(&p.message), p.enqueued_at.0, p.deliveries))
            .collect();
        let in_order = seen.clone();
        expected.sort_unstable();
        seen.sort_unstable();
        ensure!(
            seen == expected,
            "peek of {name}: the broker shows (token, entered, deliveries) {seen:?}, the model {expected:?}"
        );
        if SPECS[q].fifo {
            // Torn moves can leave two copies of a message in the dead-letter
            // queue, and one redrive brings both back at the same instant:
            // (token, entered) is not unique, so copies are matched oldest
            // first (they are alike in everything else).
            let mut ready = self.model.ready_in(q);
            ready.sort_by_key(|&i| self.model.inst[i].seq);
            let seqs: Vec<(String, Option<u64>)> = in_order
                .iter()
                .map(|&(token, at, _)| {
                    let j = ready
                        .iter()
                        .position(|&i| {
                            self.model.inst[i].token == token && self.model.inst[i].at == at
                        })
                        .expect("matched above");
                    let i = ready.remove(j);
                    (self.model.group_of(i).to_owned(), self.model.inst[i].seq)
                })
                .collect();
            for (a, b) in seqs.iter().zip(seqs.iter().skip(1)) {
                ensure!(a.1 < b.1, "peek of {name} is not oldest first: {seqs:?}");
            }
        }
        self.finish()
    }

    /// Moves every ready message of the dead-letter queue back to the queue
    /// it died in, with a move task run to its end (nothing else runs
    /// meanwhile, so the model can take the whole move as one operation).
    async fn redrive(&mut self) -> Check {
        self.begin();
        self.model.advance(DLQ);
        let movers = self.model.ready_in(DLQ);
        let broker = self.broker();
        let id = broker
            .start_move_task(NAMESPACE, SPECS[DLQ].name, None, None)
            .map_err(|e| format!("start_move_task: {e}"))?;
        let mut info = None;
        for _ in 0..10_000 {
            tokio::task::yield_now().await;
            info = broker
                .move_tasks(NAMESPACE, Some(SPECS[DLQ].name))
                .into_iter()
                .find(|t| t.id == id);
            if info
                .as_ref()
                .is_some_and(|i| i.status != MoveStatus::Running)
            {
                break;
            }
        }
        let info = info.ok_or("the move task vanished")?;
        ensure!(
            info.status == MoveStatus::Completed && info.moved == movers.len() as u64,
            "redrive: {:?} after moving {}, the model expected {} moved",
            info.status,
            info.moved,
            movers.len()
        );
        for i in movers {
            let origin = self.model.inst[i]
                .origin
                .ok_or("a dead letter without origin")?;
            self.model.move_to(i, origin, Some(origin));
            self.totals.moved += 1;
        }
        self.finish()
    }
}
