//! The reference model: what the broker should hold, written from the
//! queue semantics (delays, leases, TTLs, delivery limits, dead letters,
//! deduplication windows), not from the core's code.
//!
//! A message's stay in one queue is an [`Instance`]; a dead-letter move or
//! a redrive ends one instance and starts another, of the same message
//! (its token). Each change of an instance that the journal must carry
//! (created, delivery count, removed) is emitted as an [`Ev`]; after every
//! operation `attribution.rs` finds the record that carries it, so at a
//! crash the model knows from each record's fate exactly what a restart
//! must bring back.

use std::collections::HashMap;

use ferry_core::message::MessageId;
use ferry_core::store::Location;

use super::queues::SPECS;
use super::store::RecId;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum State {
    Delayed(u64),
    Ready,
    /// Deadline (`None`: held until settled).
    Leased(Option<u64>),
}

/// Why an instance ended. All but `Moved` end the message itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Why {
    Acked,
    AutoAcked,
    Purged,
    Expired,
    Rejected,
    Moved,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Death {
    Rejected,
    Expired,
    DeliveryLimit,
}

/// A change the journal must carry.
#[derive(Clone, Debug)]
pub enum Ev {
    Create(usize),
    /// A live instance whose `Enqueued` record failed is journaled again
    /// (a retried send of it, answered as its duplicate).
    Rejournal(usize),
    Count(usize, u32),
    Remove {
        inst: usize,
        why: Why,
        /// For a move: the instance it became.
        moved_to: Option<usize>,
    },
}

#[derive(Debug)]
pub struct Instance {
    pub queue: usize,
    pub token: u64,
    /// When it entered the queue (ms).
    pub at: u64,
    pub group: Option<String>,
    /// The message's own TTL and delay (dead-lettering drops both).
    pub msg_ttl: Option<u64>,
    pub msg_delay: Option<u64>,
    /// The queue it last died in (what a redrive returns it to).
    pub origin: Option<usize>,
    /// Moved here (dead letter, redrive) rather than sent.
    pub forwarded: bool,
    /// Learned from its `Enqueued` record.
    pub seq: Option<u64>,
    pub loc: Option<Location>,
    /// In the running broker's memory.
    pub live: bool,
    pub state: State,
    pub deliveries: u32,
    /// Its `Enqueued` record.
    pub created: Option<RecId>,
    /// Delivery counts with their `Delivered` records, in order.
    pub counts: Vec<(u32, RecId)>,
    /// Removals with their records (several only if a restart brought it
    /// back after a removal that was not durable).
    pub removes: Vec<(RecId, Why)>,
}

/// A message as its publisher sent it.
#[derive(Debug)]
pub struct Msg {
    pub id: MessageId,
    pub queue: usize,
    /// Its first instance.
    pub first: usize,
    /// The send's commit completed Ok.
    pub confirmed: bool,
}

/// A send that opened a deduplication window.
#[derive(Debug)]
pub struct FreshSend {
    pub queue: usize,
    pub key: String,
    pub at: u64,
    pub inst: usize,
}

pub struct Model {
    pub now: u64,
    pub inst: Vec<Instance>,
    /// Live instances by queue.
    pub live: Vec<Vec<usize>>,
    pub msgs: HashMap<u64, Msg>,
    /// Live deduplication windows by queue: key -> (open until, original).
    pub windows: Vec<HashMap<String, (u64, usize)>>,
    pub fresh: Vec<FreshSend>,
    /// Changes of the operation under way.
    pub events: Vec<Ev>,
}

impl Model {
    pub fn new(now: u64) -> Self {
        Model {
            now,
            inst: Vec::new(),
            live: vec![Vec::new(); SPECS.len()],
            msgs: HashMap::new(),
            windows: vec![HashMap::new(); SPECS.len()],
            fresh: Vec::new(),
            events: Vec::new(),
        }
    }

    /// When an instance becomes visible, and when it expires.
    pub fn timing(&self, i: usize) -> (u64, Option<u64>) {
        let e = &self.inst[i];
        let spec = &SPECS[e.queue];
        // FIFO queues delay every message alike (order within a group).
        let delay = match e.msg_delay {
            Some(d) if !spec.fifo => d,
            _ => spec.delay_ms,
        };
        let ttl = match (e.msg_ttl, spec.ttl_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (e.at + delay, ttl.map(|t| e.at + t))
    }

    fn expired(&self, i: usize) -> bool {
        self.timing(i).1.is_some_and(|t| t <= self.now)
    }

    /// Where an instance that enters (or re-enters on restart) stands now.
    pub fn placed(&self, i: usize) -> State {
        let (visible, _) = self.timing(i);
        if visible > self.now {
            State::Delayed(visible)
        } else {
            State::Ready
        }
    }

    pub fn group_of(&self, i: usize) -> &str {
        self.inst[i].group.as_deref().unwrap_or("")
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        queue: usize,
        token: u64,
        group: Option<String>,
        msg_ttl: Option<u64>,
        msg_delay: Option<u64>,
        origin: Option<usize>,
        forwarded: bool,
    ) -> usize {
        let i = self.inst.len();
        self.inst.push(Instance {
            queue,
            token,
            at: self.now,
            group,
            msg_ttl,
            msg_delay,
            origin,
            forwarded,
            seq: None,
            loc: None,
            live: true,
            state: State::Ready,
            deliveries: 0,
            created: None,
            counts: Vec::new(),
            removes: Vec::new(),
        });
        self.inst[i].state = self.placed(i);
        self.live[queue].push(i);
        self.events.push(Ev::Create(i));
        i
    }

    pub fn remove(&mut self, i: usize, why: Why, moved_to: Option<usize>) {
        let q = self.inst[i].queue;
        self.inst[i].live = false;
        self.live[q].retain(|&x| x != i);
        self.events.push(Ev::Remove {
            inst: i,
            why,
            moved_to,
        });
    }

    /// What every operation on a queue does first: delays end, leases run
    /// out (back to ready, or dead at the delivery limit or past their
    /// TTL), ready and delayed messages past their TTL expire.
    pub fn advance(&mut self, q: usize) {
        let now = self.now;
        let ids = self.live[q].clone();
        for &i in &ids {
            if let State::Delayed(v) = self.inst[i].state
                && v <= now
            {
                self.inst[i].state = State::Ready;
            }
        }
        for &i in &ids {
            let e = &self.inst[i];
            if e.live && matches!(e.state, State::Leased(Some(d)) if d <= now) {
                self.return_leased(i);
            }
        }
        for &i in &ids {
            let e = &self.inst[i];
            if e.live && matches!(e.state, State::Ready | State::Delayed(_)) && self.expired(i) {
                self.die(i, Death::Expired);
            }
        }
    }

    pub fn advance_all(&mut self) {
        for q in 0..SPECS.len() {
            self.advance(q);
        }
    }

    /// A lease ends (ran out, nacked with requeue, visibility set to 0).
    pub fn return_leased(&mut self, i: usize) {
        let e = &self.inst[i];
        let spec = &SPECS[e.queue];
        if spec.max_deliveries.is_some_and(|m| e.deliveries >= m) {
            self.die(i, Death::DeliveryLimit);
        } else if self.expired(i) {
            self.die(i, Death::Expired);
        } else {
            self.inst[i].state = State::Ready;
        }
    }

    /// Dead-lettered if the queue's policy covers `death`, else dropped.
    pub fn die(&mut self, i: usize, death: Death) {
        let q = self.inst[i].queue;
        let spec = &SPECS[q];
        let covered = match death {
            Death::DeliveryLimit => true,
            Death::Rejected => spec.on_rejected,
            Death::Expired => spec.on_expired,
        };
        match spec.dead_letter.filter(|_| covered) {
            Some(target) => {
                self.move_to(i, target, Some(q));
            }
            None => {
                let why = if death == Death::Expired {
                    Why::Expired
                } else {
                    Why::Rejected
                };
                self.remove(i, why, None);
            }
        }
    }

    /// Ends `i` and starts the message again in `target` (a dead letter or a
    /// redrive): no TTL or delay of its own any more, no deliveries.
    pub fn move_to(&mut self, i: usize, target: usize, origin: Option<usize>) -> usize {
        // The target's own operation runs its time-driven changes first.
        self.advance(target);
        let (token, group) = (self.inst[i].token, self.inst[i].group.clone());
        let n = self.create(target, token, group, None, None, origin, true);
        self.remove(i, Why::Moved, Some(n));
        n
    }

    /// The instances a receive may hand out now: ready, and for FIFO
    /// queues, of a group with nothing in flight.
    pub fn eligible(&self, q: usize) -> Vec<usize> {
        let leased_groups: Vec<&str> = if SPECS[q].fifo {
            self.live[q]
                .iter()
                .filter(|&&i| matches!(self.inst[i].state, State::Leased(_)))
                .map(|&i| self.group_of(i))
                .collect()
        } else {
            Vec::new()
        };
        self.live[q]
            .iter()
            .copied()
            .filter(|&i| {
                self.inst[i].state == State::Ready && !leased_groups.contains(&self.group_of(i))
            })
            .collect()
    }

    pub fn ready_in(&self, q: usize) -> Vec<usize> {
        self.live[q]
            .iter()
            .copied()
            .filter(|&i| self.inst[i].state == State::Ready)
            .collect()
    }

    pub fn deliver(&mut self, i: usize, deadline: Option<u64>, auto_ack: bool) {
        let e = &mut self.inst[i];
        e.deliveries += 1;
        e.state = State::Leased(deadline);
        let k = e.deliveries;
        self.events.push(Ev::Count(i, k));
        if auto_ack {
            self.remove(i, Why::AutoAcked, None);
        }
    }

    /// Whether a lease from delivery number `delivery` still names the
    /// instance: same broker life (leases do not survive a restart), not
    /// delivered since, and (for an ack) not leased only: a lease that ran
    /// out may still be acked while nobody received the message again.
    pub fn lease_matches(
        &self,
        i: usize,
        delivery: u32,
        same_life: bool,
        leased_only: bool,
    ) -> bool {
        let e = &self.inst[i];
        same_life
            && e.live
            && e.deliveries == delivery
            && match e.state {
                State::Leased(_) => true,
                State::Ready => !leased_only,
                State::Delayed(_) => false,
            }
    }

    pub fn purge(&mut self, q: usize, include_leased: bool) -> u64 {
        let doomed: Vec<usize> = self.live[q]
            .iter()
            .copied()
            .filter(|&i| include_leased || !matches!(self.inst[i].state, State::Leased(_)))
            .collect();
        for &i in &doomed {
            self.remove(i, Why::Purged, None);
        }
        doomed.len() as u64
    }

    /// The original a send with `key` duplicates, if its window is open.
    pub fn dedup_original(&self, q: usize, key: &str) -> Option<usize> {
        self.windows[q]
            .get(key)
            .filter(|(until, _)| *until > self.now)
            .map(|(_, i)| *i)
    }

    pub fn remember(&mut self, q: usize, key: String, inst: usize) {
        let window = SPECS[q].dedup_window_ms.unwrap_or(0);
        self.windows[q].insert(key.clone(), (self.now + window, inst));
        self.fresh.push(FreshSend {
            queue: q,
            key,
            at: self.now,
            inst,
        });
    }

    /// What a restart must bring back of instance `i`: its delivery count
    /// if its `Enqueued` record survived and no removal of it did.
    pub fn survivor(&self, i: usize, durable: &dyn Fn(RecId) -> bool) -> Option<u32> {
        let e = &self.inst[i];
        let created = e.created.is_some_and(durable);
        if !created || e.removes.iter().any(|(r, _)| durable(*r)) {
            return None;
        }
        let count = e
            .counts
            .iter()
            .rev()
            .find(|(_, r)| durable(*r))
            .map_or(0, |(k, _)| *k);
        Some(count)
    }

    /// The broker restarted: the live state becomes what the journal kept,
    /// placed as a new broker places it (no leases held; one at its
    /// delivery limit stays out as a lease that ran out), and each window holds
    /// the sends the journal kept whose window is still open.
    pub fn restart(&mut self, durable: &dyn Fn(RecId) -> bool) {
        for l in &mut self.live {
            l.clear();
        }
        for i in 0..self.inst.len() {
            match self.survivor(i, durable) {
                Some(count) => {
                    self.inst[i].live = true;
                    self.inst[i].deliveries = count;
                    let spec = &SPECS[self.inst[i].queue];
                    // At its delivery limit it was in flight at the crash:
                    // that lease ended just now, and the queue's next
                    // operation dead-letters it as a lease running out.
                    self.inst[i].state = if spec.max_deliveries.is_some_and(|m| count >= m) {
                        State::Leased(Some(self.now))
                    } else {
                        self.placed(i)
                    };
                    let q = self.inst[i].queue;
                    self.live[q].push(i);
                }
                None => self.inst[i].live = false,
            }
        }
        for w in &mut self.windows {
            w.clear();
        }
        for f in &self.fresh {
            let window = SPECS[f.queue].dedup_window_ms.unwrap_or(0);
            let until = f.at + window;
            let kept = self.inst[f.inst].created.is_some_and(durable);
            if !kept || until <= self.now {
                continue;
            }
            // Sends are visited in the order they were made: a key seen
            // again while an earlier window is open is that window's.
            let w = &mut self.windows[f.queue];
            if w.get(&f.key).is_some_and(|(open, _)| *open > f.at) {
                continue;
            }
            w.insert(f.key.clone(), (until, f.inst));
        }
    }

    /// One line about an instance and the fate of its records, for failures.
    pub fn describe(&self, i: usize, status: &dyn Fn(RecId) -> String) -> String {
        let e = &self.inst[i];
        let counts: Vec<String> = e
            .counts
            .iter()
            .map(|(k, r)| format!("{k}@{r}:{}", status(*r)))
            .collect();
        let removes: Vec<String> = e
            .removes
            .iter()
            .map(|(r, why)| format!("{why:?}@{r}:{}", status(*r)))
            .collect();
        format!(
            "m{} in {} (seq {:?}, at {}, group {:?}, origin {:?}, live {}, state {:?}, deliveries {}, created {}, counts [{}], removes [{}])",
            e.token,
            SPECS[e.queue].name,
            e.seq,
            e.at,
            e.group,
            e.origin.map(|o| SPECS[o].name),
            e.live,
            e.state,
            e.deliveries,
            e.created
                .map_or("none".into(), |r| format!("{r}:{}", status(r))),
            counts.join(", "),
            removes.join(", "),
        )
    }

    /// Instances of every message, by token.
    pub fn by_token(&self) -> HashMap<u64, Vec<usize>> {
        let mut m: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in self.inst.iter().enumerate() {
            m.entry(e.token).or_default().push(i);
        }
        m
    }
}
