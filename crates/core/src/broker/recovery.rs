//! Opening a broker on a store: replay its records into live namespaces,
//! routers, queues and messages.
//!
//! Topology records go through a [`DurableState`] (which knows what a
//! delete supersedes). Message records go straight into the queues being
//! rebuilt (`QueueCore::restore_park`), found again by sequence number
//! through a small per-queue index that lives only while replay runs, so
//! memory at the peak is what the queues will hold, not a second copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::clock::Timestamp;
use crate::error::CoreResult;
use crate::message::Message;
use crate::queue::Effects;
use crate::router::Router;
use crate::store::{DurableState, Location, QueueId, Record};

use super::{Broker, Namespace, QueueHandle, lock, write};

mod seq_index;

use seq_index::SeqIndex;

/// A queue being rebuilt.
struct Rebuilding {
    handle: Arc<QueueHandle>,
    /// Where each parked message is in the queue's slab.
    slots: SeqIndex,
}

/// A message read before its queue was declared (a journal that dropped
/// old files rewrote the topology into newer ones): held until the
/// declaration comes. Queue ids are never reused, so the match is sure.
struct Orphan {
    at: Timestamp,
    /// The message, or (with `evicted_size`) its body-less stand-in.
    message: Arc<Message>,
    deliveries: u32,
    loc: Option<Location>,
    evicted_size: Option<u64>,
}

impl Orphan {
    /// The bytes of body it holds in memory.
    fn held(&self) -> u64 {
        if self.evicted_size.is_some() {
            0
        } else {
            self.message.size()
        }
    }
}

struct Replay<'a> {
    broker: &'a Broker,
    topology: DurableState,
    queues: HashMap<QueueId, Rebuilding>,
    orphans: HashMap<QueueId, BTreeMap<u64, Orphan>>,
    /// Bytes of message bodies held in memory; past `budget`, messages the
    /// store can read back are parked as body-less stand-ins.
    resident: u64,
    budget: u64,
    stand_in: Arc<Message>,
    /// When recovery began: deduplication windows over by then are not
    /// rebuilt.
    now: Timestamp,
}

impl Replay<'_> {
    fn apply(&mut self, record: Record, loc: Option<Location>) {
        match record {
            Record::Enqueued {
                queue,
                seq,
                at,
                deliveries,
                message,
                replaces,
                forwarded,
            } => {
                // A send opens a deduplication window; a message moved in
                // from another queue does not, and a compaction copy's
                // original (kept while its window is open) has opened it.
                if !forwarded && replaces.is_none() {
                    self.sent(queue, seq, at, &message);
                }
                self.enqueued(queue, seq, at, deliveries, message, loc)
            }
            // Kept by the store after it reclaimed the send's record.
            Record::DedupKept {
                queue,
                seq,
                at,
                message,
            } => self.sent(queue, seq, at, &message),
            Record::Delivered { queue, seq, count } => {
                if let Some(q) = self.queues.get(&queue) {
                    if let Some(slot) = q.slots.get(seq) {
                        lock(&q.handle.core).restore_update(slot, count, None);
                    }
                } else if let Some(o) = self.orphans.get_mut(&queue).and_then(|m| m.get_mut(&seq)) {
                    o.deliveries = count;
                }
            }
            Record::Removed { queue, seq, .. } => self.removed(queue, &[seq]),
            Record::Purged { queue, removed } => {
                let seqs: Vec<u64> = removed.into_iter().map(|(s, _)| s).collect();
                self.removed(queue, &seqs);
            }
            Record::QueueDeclared {
                id,
                ref namespace,
                ref name,
                ref config,
            } => {
                if let Some(q) = self.queues.get(&id) {
                    lock(&q.handle.core).restore_config(config.clone());
                } else {
                    let handle = self.broker.new_handle(namespace, name, id, config.clone());
                    self.queues.insert(
                        id,
                        Rebuilding {
                            handle,
                            slots: SeqIndex::default(),
                        },
                    );
                    for (seq, o) in self.orphans.remove(&id).unwrap_or_default() {
                        // Counted as an orphan; counted again once parked.
                        self.resident -= o.held();
                        self.adopt(id, seq, o);
                    }
                }
                self.topology.apply(record, loc);
            }
            Record::QueueDeleted { id } => {
                self.drop_queue(id);
                if let Some(gone) = self.orphans.remove(&id) {
                    self.resident -= gone.values().map(Orphan::held).sum::<u64>();
                }
                self.topology.apply(record, loc);
            }
            Record::NamespaceDeleted { ref name } => {
                let doomed: Vec<QueueId> = self
                    .queues
                    .iter()
                    .filter(|(_, q)| q.handle.namespace == *name)
                    .map(|(id, _)| *id)
                    .collect();
                for id in doomed {
                    self.drop_queue(id);
                }
                self.topology.apply(record, loc);
            }
            other => self.topology.apply(other, loc),
        }
    }

    /// Remembers a sent message's deduplication key in its queue's window
    /// (before any eviction: a content-based key needs the body).
    fn sent(&mut self, queue: QueueId, seq: u64, at: Timestamp, message: &Message) {
        if let Some(q) = self.queues.get(&queue) {
            lock(&q.handle.core).restore_dedup(message, seq, at, self.now);
        }
    }

    fn enqueued(
        &mut self,
        queue: QueueId,
        seq: u64,
        at: Timestamp,
        deliveries: u32,
        message: Arc<Message>,
        loc: Option<Location>,
    ) {
        let size = message.size();
        // Only durable queues journal messages: one with a location is
        // on a durable queue even when its declaration has not come yet.
        let evict = loc.is_some()
            && message.persistent
            && self
                .queues
                .get(&queue)
                .is_none_or(|q| lock(&q.handle.core).config().durable)
            && self.resident.saturating_add(size) > self.budget;
        let (message, evicted_size) = if evict {
            (stand_in_for(&message, &self.stand_in), Some(size))
        } else {
            (message, None)
        };
        self.adopt(
            queue,
            seq,
            Orphan {
                at,
                message,
                deliveries,
                loc,
                evicted_size,
            },
        );
    }

    /// Parks a message (decided already: in memory or evicted) in its
    /// queue, or holds it as an orphan until the queue is declared.
    fn adopt(&mut self, queue: QueueId, seq: u64, o: Orphan) {
        let held = o.held();
        let Some(q) = self.queues.get_mut(&queue) else {
            self.resident += held;
            // A copy written by compaction replaces the original.
            if let Some(p) = self.orphans.entry(queue).or_default().insert(seq, o) {
                self.resident -= p.held();
            }
            return;
        };
        let mut core = lock(&q.handle.core);
        if let Some(slot) = q.slots.get(seq) {
            // A copy written by compaction: same message, new place.
            core.restore_update(slot, o.deliveries, o.loc);
            return;
        }
        let slot = core.restore_park(seq, o.at, o.message, o.deliveries, o.loc, o.evicted_size);
        q.slots.insert(seq, slot);
        self.resident += held;
    }

    fn removed(&mut self, queue: QueueId, seqs: &[u64]) {
        if let Some(q) = self.queues.get_mut(&queue) {
            let mut core = lock(&q.handle.core);
            for &seq in seqs {
                if let Some(slot) = q.slots.remove(seq) {
                    self.resident -= core.restore_forget(slot);
                }
            }
        } else if let Some(orphans) = self.orphans.get_mut(&queue) {
            for seq in seqs {
                if let Some(o) = orphans.remove(seq) {
                    self.resident -= o.held();
                }
            }
        }
    }

    fn drop_queue(&mut self, id: QueueId) {
        if let Some(q) = self.queues.remove(&id) {
            self.resident -= lock(&q.handle.core).stats().resident_bytes;
        }
    }
}

/// A body-less copy keeping what queueing needs; the one shared copy when
/// the message has no priority, TTL, delay or group of its own.
fn stand_in_for(m: &Message, shared: &Arc<Message>) -> Arc<Message> {
    let p = &m.properties;
    if p.priority.is_none() && p.ttl.is_none() && p.delay.is_none() && m.group_id.is_none() {
        return Arc::clone(shared);
    }
    let mut s = Message::new(bytes::Bytes::new()).persistent();
    s.properties.priority = p.priority;
    s.properties.ttl = p.ttl;
    s.properties.delay = p.delay;
    s.group_id = m.group_id.clone();
    Arc::new(s)
}

impl Broker {
    pub(super) fn recover(&self, memory_budget: u64) -> CoreResult<()> {
        let mut replay = Replay {
            broker: self,
            topology: DurableState::default(),
            queues: HashMap::new(),
            orphans: HashMap::new(),
            resident: 0,
            budget: memory_budget,
            stand_in: Arc::new(Message::new(bytes::Bytes::new()).persistent()),
            now: self.clock.now(),
        };
        self.store.recover(&mut |r, loc| replay.apply(r, loc))?;
        let Replay {
            topology,
            queues,
            orphans,
            ..
        } = replay;
        let lost: usize = orphans.values().map(BTreeMap::len).sum();
        if lost > 0 {
            tracing::warn!(
                messages = lost,
                "messages of queues that no record declares were dropped"
            );
        }
        let now = self.clock.now();
        let mut namespaces = write(&self.namespaces);
        let mut ns_of = |name: &str| {
            Arc::clone(
                namespaces
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::new(Namespace::new(name))),
            )
        };
        for name in &topology.namespaces {
            ns_of(name);
        }
        for ((namespace, name), config) in topology.routers {
            let ns = ns_of(&namespace);
            write(&ns.routers).insert(
                name.clone(),
                Arc::new(std::sync::RwLock::new(Router::new(&name, config))),
            );
        }
        let mut max_id = 0;
        let mut restored = Vec::new();
        let mut queues = queues;
        for (id, dq) in &topology.queues {
            max_id = max_id.max(id.0);
            let Some(q) = queues.remove(id) else {
                continue;
            };
            {
                let mut core = lock(&q.handle.core);
                let mut fx = Effects::default();
                for slot in q.slots.into_sequence_order() {
                    core.restore_place(slot, now, &mut fx);
                }
                core.restore_dedup_done();
            }
            let ns = ns_of(&dq.namespace);
            write(&ns.queues).insert(dq.name.clone(), Arc::clone(&q.handle));
            restored.push(q.handle);
        }
        for (namespace, b) in topology.bindings {
            let ns = ns_of(&namespace);
            if let Some(r) = super::read(&ns.routers).get(&b.source) {
                write(r).bind(b.destination, &b.key, b.args);
            }
        }
        drop(namespaces);
        self.next_queue_id.fetch_max(max_id + 1, Ordering::Relaxed);
        // The store counts what is live in each of its files.
        {
            let cores: Vec<_> = restored.iter().map(|q| (q.id, lock(&q.core))).collect();
            let mut live = cores
                .iter()
                .flat_map(|(id, core)| core.locations().map(move |l| (*id, l)));
            self.store.recovered(&mut live);
        }
        for q in &restored {
            let next = lock(&q.core).next_deadline();
            self.schedule(q, next);
        }
        if !restored.is_empty() {
            tracing::info!(queues = restored.len(), "recovered durable state");
        }
        Ok(())
    }
}
