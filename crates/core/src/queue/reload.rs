//! Messages that are only in the store (evicted to keep memory in its
//! budget) come back without the store being read under the queue's lock.
//!
//! Delivery stops at an evicted message: it and what was taken after it
//! go back where they were (`QueueCore::unpop`) and the operation's
//! effects ask for a reload. The broker then takes a plan of the next
//! evicted messages in hand-out order ([`QueueCore::reload_plan`]), reads
//! them with the lock released, and hands the bodies back
//! ([`QueueCore::reloaded`]); delivery goes on from there. A dying evicted
//! message leaves as its location ([`Dying::InStore`]), a moved one as a
//! [`Body::InStore`], and compaction reads bodies before it relocates
//! ([`Relocation`]): none of them reads under the lock either.
//!
//! [`Dying::InStore`]: super::Dying::InStore

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::message::Message;
use crate::store::{Location, StoreError};

use super::ready::Ref;
use super::{Effects, QueueCore, ReadyIndex, State};

/// How long an unreadable evicted message of a standard queue waits
/// before it is tried again (the messages behind it go on meanwhile).
const UNREADABLE_RETRY: Duration = Duration::from_secs(60);

/// A message taken out of a queue: in memory, or only in the store.
#[derive(Debug)]
pub enum Body {
    Here(Arc<Message>),
    InStore(Location),
}

/// The evicted messages next in line: (seq, slot, location) each.
#[derive(Debug, Default)]
pub struct Reload {
    pub wanted: Vec<(u64, usize, Location)>,
}

/// What a reload read: (seq, slot, the message or why not) each.
pub type Loaded = Vec<(u64, usize, Result<Arc<Message>, StoreError>)>;

/// Bodies read for a relocation, by slot.
#[derive(Debug, Default)]
pub struct Relocation {
    loaded: HashMap<usize, (u64, Location, Arc<Message>)>,
    /// An entry of the range was evicted after its plan was made: the
    /// broker plans and reads again.
    pub missing: bool,
}

impl Relocation {
    pub fn insert(&mut self, seq: u64, key: usize, loc: Location, message: Arc<Message>) {
        self.loaded.insert(key, (seq, loc, message));
    }

    /// The body read for slot `key`, if it is still the same message at
    /// the same place.
    pub(super) fn take(&mut self, seq: u64, key: usize, loc: Location) -> Option<Arc<Message>> {
        match self.loaded.remove(&key) {
            Some((s, l, m)) if s == seq && l == loc => Some(m),
            _ => None,
        }
    }
}

impl QueueCore {
    /// Entries whose message is only in the store.
    pub fn evicted_count(&self) -> usize {
        self.evicted
    }

    /// Puts back references that were popped and not delivered, newest
    /// pop first, so the hand-out order is as it was: each where it was (as
    /// returned messages are), and for a FIFO queue with its group's block
    /// undone and its turn at the front again. Exact because a lane's
    /// fresh messages are in sequence order (a delay that ends places its
    /// message among the returned ones) and pops take the lowest sequence
    /// of the two.
    /// Nothing became ready that was not before: no waiter is woken.
    pub(super) fn unpop(&mut self, refs: &[Ref]) {
        for &(seq, key) in refs.iter().rev() {
            let e = &self.slots[key];
            self.ready.push((seq, key), e.priority, e.group(), true);
            if let ReadyIndex::Grouped(g) = &mut self.ready {
                g.release_front(e.group().unwrap_or(""));
            }
        }
    }

    /// The evicted messages among the next `max` ready ones in hand-out
    /// order, up to `max_bytes` of bodies. Takes nothing.
    pub fn reload_plan(&mut self, max: usize, max_bytes: u64) -> Reload {
        let mut plan = Reload::default();
        if self.evicted == 0 {
            return plan;
        }
        let mut popped = std::mem::take(&mut self.scratch);
        popped.clear();
        self.pop_ready(max, &mut popped);
        let mut bytes = 0;
        // A FIFO group is delivered one message at a time (the next waits
        // for the first's settlement): only its head is read.
        let grouped = matches!(self.ready, ReadyIndex::Grouped(_));
        let mut heads: HashSet<&str> = HashSet::new();
        for &(seq, key) in &popped {
            let e = &self.slots[key];
            if grouped && !heads.insert(e.group().unwrap_or("")) {
                continue;
            }
            if e.evicted
                && bytes < max_bytes
                && let Some(loc) = e.loc.get()
            {
                plan.wanted.push((seq, key, loc));
                bytes += e.size;
            }
        }
        drop(heads);
        self.unpop(&popped);
        popped.clear();
        self.scratch = popped;
        plan
    }

    /// A message held back unreadable comes back in line (its delay ended,
    /// or it leaves the queue): its FIFO group's hold ends. Returns whether
    /// it was held.
    pub(super) fn end_hold(&mut self, seq: u64, key: usize) -> bool {
        if !self.held_back.remove(&seq) {
            return false;
        }
        if let (ReadyIndex::Grouped(g), Some(e)) = (&mut self.ready, self.slots.get(key)) {
            g.release(e.group().unwrap_or(""));
        }
        true
    }

    /// The evicted ones among `refs`, if any: what an all-or-nothing
    /// operation needs read back before it can go on.
    pub(super) fn plan_for(&self, refs: &[Ref]) -> Option<Reload> {
        let wanted: Vec<_> = refs
            .iter()
            .filter_map(|&(seq, key)| {
                let e = self.slots.get(key)?;
                e.evicted.then(|| e.loc.get().map(|loc| (seq, key, loc)))?
            })
            .collect();
        (!wanted.is_empty()).then_some(Reload { wanted })
    }

    /// Takes back the bodies a reload read, then delivers to consumers.
    /// Returns how many are out of delivery's way: back in memory, or
    /// stepped out of line. An unreadable one (damage or an I/O error, said
    /// loudly) is never dropped for it: it waits a minute out of line, so
    /// the messages behind it go on; in a FIFO queue its group waits with
    /// it (held as if it were in flight), the other groups go on.
    pub fn reloaded(&mut self, loaded: Loaded, now: Timestamp, fx: &mut Effects) -> usize {
        let (mut back, mut cleared) = (0, 0);
        for (seq, key, got) in loaded {
            let Some(e) = self.slots.get(key).filter(|e| e.seq == seq && e.evicted) else {
                continue;
            };
            match got {
                Ok(m) => {
                    self.make_resident(key, m);
                    back += 1;
                }
                Err(err) => {
                    tracing::error!(queue = %self.name, error = %err, "an evicted message could not be read back; it stays queued and is tried again in a minute");
                    if e.state == State::Ready {
                        // Its reference stays in the ready index.
                        self.twice_indexed = true;
                        let (size, retry) = (e.size, now.plus(UNREADABLE_RETRY));
                        if let ReadyIndex::Grouped(g) = &mut self.ready {
                            g.hold(e.group().unwrap_or(""));
                            self.held_back.insert(seq);
                        }
                        self.stats.ready -= 1;
                        self.stats.ready_bytes -= size;
                        if let Some(e) = self.slots.get_mut(key) {
                            e.state = State::Delayed(retry);
                        }
                        self.stats.delayed += 1;
                        self.delayed.push(std::cmp::Reverse((retry, seq, key)));
                        cleared += 1;
                    }
                }
            }
        }
        // Ready all along, but not to be had: long-poll waiters wake now.
        fx.became_ready += back;
        self.dispatch(now, fx);
        back + cleared
    }

    /// The evicted entries among slots `cursor..cursor + max` whose
    /// location `moved` selects: what [`QueueCore::relocate`] needs read.
    pub fn relocation_plan(
        &self,
        moved: &dyn Fn(Location) -> bool,
        cursor: usize,
        max: usize,
    ) -> Vec<(u64, usize, Location)> {
        let end = cursor.saturating_add(max).min(self.slots.capacity());
        if self.evicted == 0 {
            return Vec::new();
        }
        (cursor..end)
            .filter_map(|key| {
                let e = self.slots.get(key)?;
                let loc = e.loc.get().filter(|l| moved(*l))?;
                e.evicted.then_some((e.seq, key, loc))
            })
            .collect()
    }

    /// An evicted entry gets its message back.
    pub(super) fn make_resident(&mut self, key: usize, message: Arc<Message>) {
        if let Some(e) = self.slots.get_mut(key).filter(|e| e.evicted) {
            e.msg = message;
            e.evicted = false;
            e.group = None;
            self.stats.resident_bytes += e.size;
            self.evicted -= 1;
        }
    }
}
