//! One queue as a pure state machine: no locks, no I/O, no clock of its own.
//!
//! Every operation takes the current time and an [`Effects`] buffer. What a
//! queue cannot do alone goes into the buffer for the broker to carry out:
//! records to journal, messages to dead-letter into another queue or router,
//! waiters to wake, the queue's own deletion. The broker calls it with the
//! queue's lock held and acts on the effects after.
//!
//! Messages live in a slab (no allocation per message once warm); the
//! ready index, the delay heap, the lease-deadline heap and the expiry heap
//! hold `(seq, slot)` references and are cleaned lazily, so a removal never
//! searches them.

mod config;
mod consumers;
mod dedup;
mod packed;
mod push;
mod ready;
mod reload;
mod restore;
mod time;

pub use config::{
    DeadLetterPolicy, DeadLetterTarget, DedupConfig, DedupScope, MAX_DEDUP_WINDOW, Overflow,
    QueueConfig,
};
pub use consumers::{ConsumerId, ConsumerSpec, DeliverySink};
pub use dedup::{Original, content_dedup_id};
pub use reload::{Body, Loaded, Reload, Relocation};

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use slab::Slab;

use crate::clock::Timestamp;
use crate::error::{CoreError, CoreResult};
use crate::message::{DeathReason, Message};
use crate::store::{Commit, Location, QueueId, Record};

use consumers::Consumers;
use dedup::{Check, DedupWindow};
use packed::{MaybeLoc, MaybeTime};
use ready::{ReadyIndex, Ref};

/// A delivery in flight. Protocols encode it in their own handles (an SQS
/// receipt handle, an AMQP delivery tag's table entry). It goes stale when
/// the message is delivered again, acked or removed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    pub seq: u64,
    pub slot: u32,
    /// The message's delivery count when this lease was made.
    pub delivery: u32,
    /// The queue's incarnation: sequence numbers restart after a restart
    /// (from the highest surviving one), so a lease from before it must
    /// not match a new message.
    pub epoch: u32,
}

/// A message handed to a consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub lease: Lease,
    pub message: Arc<Message>,
    /// 1 on the first delivery.
    pub delivery_count: u32,
    pub enqueued_at: Timestamp,
    pub first_delivered_at: Timestamp,
    /// When the lease runs out; `None`: held until settled.
    pub deadline: Option<Timestamp>,
    /// The push consumer it went to.
    pub consumer: Option<ConsumerId>,
    /// Already removed from the queue (auto-ack).
    pub auto_acked: bool,
}

impl Delivery {
    pub fn redelivered(&self) -> bool {
        self.delivery_count > 1
    }
}

/// A ready message seen without being taken (an operator's peek).
#[derive(Clone, Debug)]
pub struct Peeked {
    pub message: Arc<Message>,
    /// Deliveries so far (0: never delivered).
    pub deliveries: u32,
    pub enqueued_at: Timestamp,
}

/// How a receive takes messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReceiveMode {
    /// Leased for this long (SQS visibility timeout), then visible again.
    Lease(Duration),
    /// Leased with no deadline: held until acked or nacked (AMQP basic.get).
    Hold,
    /// Removed on delivery (AMQP no-ack).
    AutoAck,
}

/// Records `key` as taken; false if it was already.
fn once(taken: &mut Vec<usize>, key: usize) -> bool {
    if taken.contains(&key) {
        return false;
    }
    taken.push(key);
    true
}

/// Which of a message's leases a settlement may name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LeaseMatch {
    /// Only its latest (AMQP delivery tags, SQS FIFO receipt handles).
    Current,
    /// Any it was given: on an SQS standard queue a receipt handle from an
    /// earlier receive still names the message, unless a push consumer (an
    /// AMQP delivery) holds it now.
    AnyOfMessage,
}

/// The outcome of an enqueue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Accepted {
        seq: u64,
    },
    /// Seen within the deduplication window: not enqueued again.
    Duplicate(Original),
    /// Accepted but at once dropped or dead-lettered by the overflow policy
    /// (a message larger than the queue's max bytes, or max length 0).
    Dropped,
}

/// A message leaving a queue for a dead-letter target.
#[derive(Debug)]
pub struct DeadLetter {
    pub message: Dying,
    pub target: DeadLetterTarget,
    /// The source's removal record, to journal only after the message is
    /// safely in its target, so a crash in between duplicates rather than loses.
    pub removal: Option<Record>,
}

/// The message of a dead letter.
#[derive(Debug)]
pub enum Dying {
    /// In memory, its death recorded.
    Marked(Box<Message>),
    /// Evicted: the broker reads it back from the store, outside the
    /// queue's lock, and records its death then.
    InStore {
        loc: Location,
        reason: DeathReason,
        at: Timestamp,
    },
}

impl Dying {
    /// The message, if it is in memory.
    pub fn marked(&self) -> Option<&Message> {
        match self {
            Dying::Marked(m) => Some(&**m),
            Dying::InStore { .. } => None,
        }
    }
}

/// What an operation needs the broker to do after it.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    pub dead_letters: Vec<DeadLetter>,
    /// Messages that became ready (long-poll waiters to wake).
    pub became_ready: usize,
    /// The queue should be deleted: its TTL ran out unused, or its last
    /// consumer left an auto-delete queue.
    pub delete_queue: bool,
    /// (seq, slot) of entries whose `Enqueued` records are in `records`, in
    /// order: the store's locations for them go back to these entries.
    pub(crate) journaled: Vec<(u64, usize)>,
    /// The commits of the originals that duplicate sends were answered
    /// with: the operation is durable only once they are.
    pub(crate) originals: Commit,
    /// A delivery stopped at a message that is only in the store (evicted):
    /// the broker reads the next ones back outside the lock
    /// ([`QueueCore::reload_plan`]) and delivery goes on after.
    pub reload: bool,
}

impl Effects {
    pub fn clear(&mut self) {
        self.records.clear();
        self.dead_letters.clear();
        self.became_ready = 0;
        self.delete_queue = false;
        self.journaled.clear();
        self.originals = Commit::done();
        self.reload = false;
    }
}

/// Depths and counters of a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub ready: u64,
    pub delayed: u64,
    pub leased: u64,
    pub ready_bytes: u64,
    pub bytes: u64,
    /// Bytes of message bodies held in memory (the rest are only in the store).
    pub resident_bytes: u64,
    pub consumers: usize,
    pub published: u64,
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    pub dropped: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Ready,
    Delayed(Timestamp),
    Leased {
        deadline: MaybeTime,
        consumer: Option<ConsumerId>,
    },
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// The message, or (when `evicted`) the queue's empty stand-in: the
    /// real one is in the store at `loc`.
    msg: Arc<Message>,
    evicted: bool,
    /// The body's size (the stand-in's is 0).
    size: u64,
    /// The FIFO group of an evicted message (the stand-in has none).
    group: Option<Arc<str>>,
    state: State,
    deliveries: u32,
    priority: u8,
    enqueued_at: Timestamp,
    expires_at: MaybeTime,
    first_delivered_at: MaybeTime,
    /// When the current (or last) lease began.
    leased_at: Timestamp,
    /// Where the store holds it (journaled messages only).
    loc: MaybeLoc,
}

impl Entry {
    /// The message's FIFO group, whether it is in memory or evicted.
    fn group(&self) -> Option<&str> {
        if self.evicted {
            self.group.as_deref()
        } else {
            self.msg.group_id.as_deref()
        }
    }
}

type TimedRef = Reverse<(Timestamp, u64, usize)>;

pub struct QueueCore {
    id: QueueId,
    epoch: u32,
    name: String,
    config: QueueConfig,
    slots: Slab<Entry>,
    next_seq: u64,
    ready: ReadyIndex,
    delayed: BinaryHeap<TimedRef>,
    deadlines: BinaryHeap<TimedRef>,
    expiries: BinaryHeap<TimedRef>,
    dedup: Option<DedupWindow>,
    consumers: Consumers,
    stats: QueueStats,
    last_used: Timestamp,
    had_consumers: bool,
    /// Reused buffer for popped references.
    scratch: Vec<Ref>,
    /// Where evicted messages are read back from.
    store: Option<Arc<dyn crate::store::Store>>,
    /// What an evicted entry holds instead of its message.
    stand_in: Arc<Message>,
    /// The broker's cap on messages held, in any state: past it sends are
    /// refused, whatever the queue's own overflow policy says.
    length_ceiling: u64,
    /// Entries whose message is only in the store. Delivery never reads
    /// one back under the queue's lock: it stops at it (see `reload.rs`).
    evicted: usize,
    /// Sequence numbers of unreadable messages of a FIFO queue waiting out
    /// of line, each holding its group (see `QueueCore::reloaded`).
    held_back: std::collections::HashSet<u64>,
    /// A ready message may have two references in the ready index: one
    /// left behind when it left the ready state without being popped (an
    /// SQS visibility change by an older handle, an unreadable body
    /// stepping out of line), and one from its coming back. Pops then skip
    /// a message already taken (rare, so a scan of what was taken).
    twice_indexed: bool,
}

impl QueueCore {
    /// A new queue; `epoch` tells this incarnation's leases from others'
    /// (the broker draws it from its id generator).
    pub fn new(id: QueueId, name: &str, config: QueueConfig, now: Timestamp, epoch: u32) -> Self {
        let consumers = Consumers {
            single_active: config.single_active_consumer,
            ..Consumers::default()
        };
        QueueCore {
            id,
            epoch,
            name: name.to_owned(),
            ready: ReadyIndex::new(config.fifo, config.max_priority),
            dedup: config.dedup.clone().map(DedupWindow::new),
            config,
            slots: Slab::new(),
            next_seq: 1,
            delayed: BinaryHeap::new(),
            deadlines: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            consumers,
            stats: QueueStats::default(),
            last_used: now,
            had_consumers: false,
            scratch: Vec::new(),
            store: None,
            stand_in: Arc::new(Message::new(bytes::Bytes::new()).persistent()),
            length_ceiling: u64::MAX,
            evicted: 0,
            held_back: std::collections::HashSet::new(),
            twice_indexed: false,
        }
    }

    /// Sets the broker's cap on the messages this queue holds (`u64::MAX`:
    /// none). Messages over it already held stay; new ones are refused.
    pub fn set_length_ceiling(&mut self, ceiling: u64) {
        self.length_ceiling = ceiling;
    }

    /// The store evicted messages are read back from.
    pub fn set_store(&mut self, store: Arc<dyn crate::store::Store>) {
        self.store = Some(store);
    }

    /// Drops from memory the messages of ready or delayed journaled
    /// entries whose records the store can read back, from slot `cursor`
    /// down, looking at `max` slots, until `want` bytes are freed. Returns
    /// the bytes freed and where to go on (`None`: the whole queue was
    /// seen). An evicted FIFO message keeps its group on the entry.
    pub fn evict(&mut self, want: u64, cursor: usize, max: usize) -> (u64, Option<usize>) {
        let Some(store) = self.store.clone() else {
            return (0, None);
        };
        let start = cursor.min(self.slots.capacity());
        let stop = start.saturating_sub(max);
        let mut freed = 0;
        for key in (stop..start).rev() {
            if freed >= want {
                return (freed, Some(key + 1));
            }
            let stand_in = Arc::clone(&self.stand_in);
            let Some(e) = self.slots.get_mut(key) else {
                continue;
            };
            let evictable = !e.evicted
                && e.msg.persistent
                && self.config.durable
                && !matches!(e.state, State::Leased { .. })
                && e.loc.get().is_some_and(|l| store.loadable(l));
            if evictable {
                e.group = e.msg.group_id.as_deref().map(Arc::from);
                e.msg = stand_in;
                e.evicted = true;
                freed += e.size;
                self.stats.resident_bytes -= e.size;
                self.evicted += 1;
            }
        }
        (freed, (stop > 0).then_some(stop))
    }

    pub fn id(&self) -> QueueId {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Replaces settings that may change on a live queue (SQS
    /// SetQueueAttributes): timeouts, delay, TTL, limits, dead-lettering.
    /// FIFO-ness and priorities are fixed at creation.
    pub fn reconfigure(&mut self, config: QueueConfig) -> CoreResult<()> {
        let fixed = |c: &QueueConfig| (c.fifo, c.max_priority, c.durable, c.exclusive_owner);
        if fixed(&config) != fixed(&self.config) {
            return Err(CoreError::FixedSetting);
        }
        if config.dedup != self.config.dedup {
            self.dedup = config.dedup.clone().map(DedupWindow::new);
        }
        self.consumers.single_active = config.single_active_consumer;
        self.config = config;
        Ok(())
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            consumers: self.consumers.list.len(),
            ..self.stats.clone()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Marks the queue used (a declare or a get), for queue TTL.
    pub fn touch(&mut self, now: Timestamp) {
        self.last_used = self.last_used.max(now);
    }

    /// The messages that entered the queue so far have sequence numbers below this.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The messages the deduplication window remembers.
    pub fn dedup_len(&self) -> usize {
        self.dedup.as_ref().map_or(0, DedupWindow::len)
    }

    /// Exclusive queues end with their connection, and with the process:
    /// their messages are never worth a write (nor stored unsealed when the
    /// queue names a key the journal never learns of).
    fn journaled(&self, msg: &Message) -> bool {
        self.config.durable && msg.persistent && self.config.exclusive_owner.is_none()
    }

    /// The lease's entry, if the lease is current.
    fn find(&self, lease: Lease) -> Option<usize> {
        self.find_matching(lease, LeaseMatch::Current)
    }

    fn find_matching(&self, lease: Lease, m: LeaseMatch) -> Option<usize> {
        if lease.epoch != self.epoch {
            return None;
        }
        let key = lease.slot as usize;
        self.slots
            .get(key)
            .filter(|e| {
                e.seq == lease.seq
                    && (m == LeaseMatch::AnyOfMessage || e.deliveries == lease.delivery)
            })
            .map(|_| key)
    }

    /// Enqueues one message. The broker has set its id and publish time.
    pub fn enqueue(
        &mut self,
        msg: Arc<Message>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<Enqueued> {
        self.enqueue_with(msg, now, fx, true)
    }

    /// Enqueues a message that comes from another queue (a dead letter, a
    /// redrive): it was deduplicated when first sent, and a second check
    /// here would silently drop it. Nor does the broker's length ceiling
    /// refuse it: it moves a message the broker holds already, and its
    /// source has let go of it (or is about to).
    pub fn enqueue_forwarded(
        &mut self,
        msg: Arc<Message>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<Enqueued> {
        self.enqueue_with(msg, now, fx, false)
    }

    fn enqueue_with(
        &mut self,
        mut msg: Arc<Message>,
        now: Timestamp,
        fx: &mut Effects,
        fresh: bool,
    ) -> CoreResult<Enqueued> {
        self.advance(now, fx);
        // A content-based queue's message carries the id it was
        // deduplicated by (SQS shows it as MessageDeduplicationId), from
        // whichever face it came.
        if fresh
            && msg.dedup_id.is_none()
            && self.dedup.as_ref().is_some_and(DedupWindow::content_based)
        {
            let id = content_dedup_id(&msg.body);
            Arc::make_mut(&mut msg).dedup_id = Some(id);
        }
        let window = self.dedup.as_mut().filter(|_| fresh);
        let dedup_key = match window.map(|d| d.check(&msg, now)) {
            Some(Check::Duplicate(original, commit)) => {
                fx.originals = std::mem::take(&mut fx.originals).both(commit);
                return Ok(Enqueued::Duplicate(original));
            }
            Some(Check::Failed(original, key)) => {
                if self.journal_again(original.seq, fx) {
                    if let Some(d) = self.dedup.as_mut() {
                        d.retried(key);
                    }
                    return Ok(Enqueued::Duplicate(original));
                }
                // Gone from the queue meanwhile: this is a new send.
                Some(key)
            }
            Some(Check::New(key)) => key,
            None => None,
        };
        // After the duplicate check: a duplicate adds nothing to refuse.
        if fresh && self.stats.ready + self.stats.delayed + self.stats.leased >= self.length_ceiling
        {
            return Err(CoreError::QueueFull(self.name.clone()));
        }
        if !self.make_room(&msg, now, fx)? {
            self.stats.published += 1;
            self.discard(Body::Here(msg), DeathReason::MaxLength, None, now, fx);
            return Ok(Enqueued::Dropped);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let journaled = self.journaled(&msg);
        if journaled {
            fx.records.push(Record::Enqueued {
                queue: self.id,
                seq,
                at: now,
                deliveries: 0,
                message: Arc::clone(&msg),
                replaces: None,
                forwarded: !fresh,
            });
        }
        let (id, published_at) = (msg.id, msg.published_at);
        let key = self.insert(seq, msg, now, 0, None, now, fx);
        if journaled {
            fx.journaled.push((seq, key));
        }
        self.stats.published += 1;
        if let (Some(key), Some(d)) = (dedup_key, self.dedup.as_mut()) {
            d.remember(
                key,
                Original {
                    id,
                    seq,
                    published_at,
                },
                now,
            );
        }
        self.dispatch(now, fx);
        Ok(Enqueued::Accepted { seq })
    }

    /// Journals again a message whose `Enqueued` record the store refused
    /// or failed, if it is still queued (a send retried after a storage
    /// failure, answered as its duplicate): one copy, as it was, now with
    /// a record. Rare, so found by a scan. Returns whether it was.
    fn journal_again(&mut self, seq: u64, fx: &mut Effects) -> bool {
        let Some((key, e)) = self.slots.iter().find(|(_, e)| e.seq == seq) else {
            return false;
        };
        if e.evicted || !self.journaled(&e.msg) {
            return false;
        }
        fx.records.push(Record::Enqueued {
            queue: self.id,
            seq,
            at: e.enqueued_at,
            deliveries: e.deliveries,
            message: Arc::clone(&e.msg),
            replaces: None,
            forwarded: false,
        });
        fx.journaled.push((seq, key));
        true
    }

    /// Tells the deduplication window the commit of the operation that
    /// remembered its newest keys (call after every journaled operation).
    pub fn attach_commit(&mut self, commit: &Commit) {
        if let Some(d) = self.dedup.as_mut() {
            d.attach(commit);
        }
    }

    /// Gives entries enqueued by the last operation their store locations
    /// (`journaled` from its effects, `locations` from `Store::append`).
    pub fn attach_locations(&mut self, journaled: &[(u64, usize)], locations: &[Location]) {
        for (&(seq, key), &loc) in journaled.iter().zip(locations) {
            if let Some(e) = self.slots.get_mut(key).filter(|e| e.seq == seq) {
                e.loc = MaybeLoc::new(Some(loc));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        seq: u64,
        msg: Arc<Message>,
        enqueued_at: Timestamp,
        deliveries: u32,
        loc: Option<Location>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> usize {
        let (priority, expires_at, visible_at) = self.timing(&msg, enqueued_at);
        let size = msg.size();
        let key = self.slots.insert(Entry {
            seq,
            msg,
            evicted: false,
            size,
            group: None,
            state: State::Delayed(visible_at),
            deliveries,
            priority,
            enqueued_at,
            expires_at: MaybeTime::new(expires_at),
            first_delivered_at: MaybeTime::NONE,
            leased_at: Timestamp(0),
            loc: MaybeLoc::new(loc),
        });
        self.stats.bytes += size;
        self.stats.resident_bytes += size;
        self.schedule_new(key, now, fx);
        key
    }

    /// A message's priority, expiry and visibility under this queue's settings.
    fn timing(&self, msg: &Message, enqueued_at: Timestamp) -> (u8, Option<Timestamp>, Timestamp) {
        let priority = msg
            .properties
            .priority
            .unwrap_or(0)
            .min(self.config.max_priority);
        let ttl = match (msg.properties.ttl, self.config.message_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires_at = ttl.map(|t| enqueued_at.plus(t));
        // FIFO queues delay every message alike, or order within a group
        // would bend (SQS refuses per-message delays on FIFO queues).
        let delay = match msg.properties.delay {
            Some(d) if !self.config.fifo => d,
            _ => self.config.delay,
        };
        (priority, expires_at, enqueued_at.plus(delay))
    }

    /// Indexes a new entry (its state `Delayed(visible_at)`): on the expiry
    /// heap if it expires, then delayed or ready.
    fn schedule_new(&mut self, key: usize, now: Timestamp, fx: &mut Effects) {
        let e = &self.slots[key];
        let (seq, expires_at) = (e.seq, e.expires_at.get());
        let State::Delayed(visible_at) = e.state else {
            return;
        };
        if let Some(at) = expires_at {
            self.expiries.push(Reverse((at, seq, key)));
        }
        if visible_at > now {
            self.stats.delayed += 1;
            self.delayed.push(Reverse((visible_at, seq, key)));
        } else {
            self.make_ready(key, false, fx);
        }
    }

    /// Applies the overflow policy before `msg` is added. Returns false if
    /// the message itself cannot fit and must be dropped.
    fn make_room(&mut self, msg: &Message, now: Timestamp, fx: &mut Effects) -> CoreResult<bool> {
        let size = msg.size();
        let over = |s: &QueueStats, c: &QueueConfig| {
            c.max_length.is_some_and(|m| s.ready + 1 > m)
                || c.max_bytes.is_some_and(|m| s.ready_bytes + size > m)
        };
        if !over(&self.stats, &self.config) {
            return Ok(true);
        }
        let alone_too_big =
            self.config.max_bytes.is_some_and(|m| size > m) || self.config.max_length == Some(0);
        if alone_too_big && self.config.overflow == Overflow::DropHead {
            // Making room cannot help: drop the newcomer, keep the queue.
            return Ok(false);
        }
        match self.config.overflow {
            Overflow::RejectPublish => Err(CoreError::QueueFull(self.name.clone())),
            Overflow::RejectPublishDeadLetter => {
                let dl = msg.dead_lettered(&self.name, DeathReason::MaxLength, now);
                if let Some(p) = self.config.dead_letter.as_ref().filter(|p| p.on_overflow) {
                    self.stats.dead_lettered += 1;
                    fx.dead_letters.push(DeadLetter {
                        message: Dying::Marked(Box::new(dl)),
                        target: p.target.clone(),
                        removal: None,
                    });
                }
                Err(CoreError::QueueFull(self.name.clone()))
            }
            Overflow::DropHead => {
                while over(&self.stats, &self.config) && self.stats.ready > 0 {
                    let slots = &self.slots;
                    let mut valid = |(seq, key): Ref| {
                        slots
                            .get(key)
                            .is_some_and(|e| e.seq == seq && e.state == State::Ready)
                    };
                    let popped = match &mut self.ready {
                        ReadyIndex::Plain(p) => p.pop_oldest_lowest(&mut valid),
                        ReadyIndex::Grouped(g) => {
                            let mut one = Vec::with_capacity(1);
                            g.pop_batch(1, false, &mut valid, &mut one);
                            one.pop()
                        }
                    };
                    let Some((_, key)) = popped else { break };
                    self.remove(key, Some(DeathReason::MaxLength), now, fx);
                }
                Ok(!over(&self.stats, &self.config))
            }
        }
    }

    /// Takes up to `max` ready messages, stopping at one that is only in
    /// the store (then `fx.reload` is set: see `reload.rs`).
    pub fn receive(
        &mut self,
        now: Timestamp,
        max: usize,
        mode: ReceiveMode,
        fx: &mut Effects,
        out: &mut Vec<Delivery>,
    ) {
        let _partial = self.receive_with(now, max, mode, false, fx, out);
    }

    /// [`QueueCore::receive`], all or nothing: if any of the messages it
    /// would take is only in the store, it takes none and returns them, to
    /// be read back outside the lock before it is called again (so a FIFO
    /// group's messages come in one receive, as they would have).
    pub fn receive_whole(
        &mut self,
        now: Timestamp,
        max: usize,
        mode: ReceiveMode,
        fx: &mut Effects,
        out: &mut Vec<Delivery>,
    ) -> Option<Reload> {
        self.receive_with(now, max, mode, true, fx, out)
    }

    fn receive_with(
        &mut self,
        now: Timestamp,
        max: usize,
        mode: ReceiveMode,
        whole: bool,
        fx: &mut Effects,
        out: &mut Vec<Delivery>,
    ) -> Option<Reload> {
        self.advance(now, fx);
        self.last_used = now;
        let mut popped = std::mem::take(&mut self.scratch);
        self.pop_ready(max, &mut popped);
        if whole
            && self.evicted > 0
            && let Some(plan) = self.plan_for(&popped)
        {
            self.unpop(&popped);
            popped.clear();
            self.scratch = popped;
            return Some(plan);
        }
        let deadline = match mode {
            ReceiveMode::Lease(d) => Some(now.plus(d)),
            ReceiveMode::Hold | ReceiveMode::AutoAck => None,
        };
        for i in 0..popped.len() {
            let key = popped[i].1;
            if self.slots[key].evicted {
                // Only in the store: it and what comes after it wait until
                // the broker has read them back, outside this lock.
                self.unpop(&popped[i..]);
                fx.reload = true;
                break;
            }
            let d = self.lease(key, deadline, None, now, fx);
            let d = if mode == ReceiveMode::AutoAck {
                self.settle_auto_ack(key, d, now, fx)
            } else {
                d
            };
            out.push(d);
        }
        popped.clear();
        self.scratch = popped;
        None
    }

    /// Pops up to `max` ready references (FIFO: as many as possible per group).
    fn pop_ready(&mut self, max: usize, out: &mut Vec<Ref>) {
        let slots = &self.slots;
        let twice = self.twice_indexed;
        let mut taken: Vec<usize> = Vec::new();
        let mut valid = |(seq, key): Ref| {
            let ready = slots
                .get(key)
                .is_some_and(|e| e.seq == seq && e.state == State::Ready);
            // A second reference to a message already taken in this pop.
            ready && (!twice || once(&mut taken, key))
        };
        match &mut self.ready {
            ReadyIndex::Plain(p) => {
                while out.len() < max {
                    match p.pop(&mut valid) {
                        Some(r) => out.push(r),
                        None => break,
                    }
                }
            }
            ReadyIndex::Grouped(g) => g.pop_batch(max, true, &mut valid, out),
        }
    }

    /// Ready -> Leased, counting the delivery.
    fn lease(
        &mut self,
        key: usize,
        deadline: Option<Timestamp>,
        consumer: Option<ConsumerId>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Delivery {
        // Callers stop at evicted entries (see `reload.rs`).
        debug_assert!(!self.slots[key].evicted, "leasing an evicted message");
        let message = Arc::clone(&self.slots[key].msg);
        let journaled = self.config.durable;
        let e = &mut self.slots[key];
        debug_assert_eq!(e.state, State::Ready);
        e.state = State::Leased {
            deadline: MaybeTime::new(deadline),
            consumer,
        };
        e.leased_at = now;
        e.deliveries += 1;
        let first = e.first_delivered_at.get().unwrap_or(now);
        e.first_delivered_at = MaybeTime::new(Some(first));
        let size = e.size;
        if journaled && e.msg.persistent {
            fx.records.push(Record::Delivered {
                queue: self.id,
                seq: e.seq,
                count: e.deliveries,
            });
        }
        if let Some(d) = deadline {
            self.deadlines.push(Reverse((d, e.seq, key)));
        }
        let delivery = Delivery {
            lease: Lease {
                seq: e.seq,
                slot: key as u32,
                delivery: e.deliveries,
                epoch: self.epoch,
            },
            message,
            delivery_count: e.deliveries,
            enqueued_at: e.enqueued_at,
            first_delivered_at: first,
            deadline,
            consumer,
            auto_acked: false,
        };
        self.stats.ready -= 1;
        self.stats.ready_bytes -= size;
        self.stats.leased += 1;
        self.stats.delivered += 1;
        if delivery.redelivered() {
            self.stats.redelivered += 1;
        }
        delivery
    }

    fn settle_auto_ack(
        &mut self,
        key: usize,
        mut d: Delivery,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Delivery {
        self.remove(key, None, now, fx);
        self.stats.acked += 1;
        d.auto_acked = true;
        d
    }

    /// Removes a delivered message for good.
    pub fn ack(&mut self, lease: Lease, now: Timestamp, fx: &mut Effects) -> CoreResult<()> {
        self.ack_matching(lease, LeaseMatch::Current, now, fx)
    }

    /// [`QueueCore::ack`] with the lease matched as `m` says.
    pub fn ack_matching(
        &mut self,
        lease: Lease,
        m: LeaseMatch,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<()> {
        self.advance(now, fx);
        // A message whose lease ran out but that nobody received again may
        // still be acked with its last lease (as SQS allows).
        let key = self
            .find_matching(lease, m)
            .filter(|&k| match self.slots[k].state {
                State::Delayed(_) => false,
                // An older handle does not take a message from a push
                // consumer (an AMQP delivery) that holds it now.
                State::Leased {
                    consumer: Some(_), ..
                } => m == LeaseMatch::Current,
                _ => true,
            })
            .ok_or(CoreError::LeaseNotFound)?;
        self.remove(key, None, now, fx);
        self.stats.acked += 1;
        self.dispatch(now, fx);
        Ok(())
    }

    /// Gives a delivered message back: to the queue (`requeue`) or to the
    /// dead-letter target (dropped if the queue has none for rejections).
    pub fn nack(
        &mut self,
        lease: Lease,
        requeue: bool,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<()> {
        self.advance(now, fx);
        let key = self.find_leased(lease)?;
        if requeue {
            self.return_leased(key, now, fx);
        } else {
            self.remove(key, Some(DeathReason::Rejected), now, fx);
        }
        self.dispatch(now, fx);
        Ok(())
    }

    /// Moves a lease's deadline to `now + timeout`; zero makes the message
    /// visible at once.
    pub fn set_visibility(
        &mut self,
        lease: Lease,
        timeout: Duration,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<Timestamp> {
        self.set_visibility_within(lease, timeout, None, now, fx)
    }

    /// [`QueueCore::set_visibility`], refusing a deadline more than `limit`
    /// after the lease began (SQS: 12 hours from the receive).
    pub fn set_visibility_within(
        &mut self,
        lease: Lease,
        timeout: Duration,
        limit: Option<Duration>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<Timestamp> {
        self.set_visibility_matching(lease, LeaseMatch::Current, timeout, limit, now, fx)
    }

    /// [`QueueCore::set_visibility_within`] with the lease matched as `m`
    /// says. With [`LeaseMatch::AnyOfMessage`], a message of a standard
    /// queue whose visibility ran out is hidden again (as SQS does with an
    /// older receipt handle); it counts no delivery.
    pub fn set_visibility_matching(
        &mut self,
        lease: Lease,
        m: LeaseMatch,
        timeout: Duration,
        limit: Option<Duration>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<Timestamp> {
        self.advance(now, fx);
        let key = match m {
            LeaseMatch::Current => self.find_leased(lease)?,
            LeaseMatch::AnyOfMessage => {
                let key = self
                    .find_matching(lease, m)
                    .ok_or(CoreError::LeaseNotFound)?;
                let grouped = matches!(self.ready, ReadyIndex::Grouped(_));
                match self.slots[key].state {
                    // A lease of a pull receive; one a push consumer (an
                    // AMQP delivery) holds is not an older handle's to move.
                    State::Leased { consumer: None, .. } => key,
                    State::Ready if timeout.is_zero() => return Ok(now),
                    State::Ready if !grouped => {
                        self.hide(key, now);
                        key
                    }
                    _ => return Err(CoreError::LeaseNotFound),
                }
            }
        };
        if let Some(limit) = limit
            && now.plus(timeout) > self.slots[key].leased_at.plus(limit)
        {
            return Err(CoreError::LeaseTooLong {
                limit_secs: limit.as_secs(),
            });
        }
        if timeout.is_zero() {
            self.return_leased(key, now, fx);
            self.dispatch(now, fx);
            return Ok(now);
        }
        let deadline = now.plus(timeout);
        let e = &mut self.slots[key];
        if let State::Leased { consumer, .. } = e.state {
            e.state = State::Leased {
                deadline: MaybeTime::new(Some(deadline)),
                consumer,
            };
        }
        self.deadlines.push(Reverse((deadline, e.seq, key)));
        Ok(deadline)
    }

    /// A ready message of a standard queue out of sight, as leased by
    /// nobody (its lease's deadline is set by the caller).
    fn hide(&mut self, key: usize, now: Timestamp) {
        // Its reference stays in the ready index (see `twice_indexed`).
        self.twice_indexed = true;
        let e = &mut self.slots[key];
        let size = e.size;
        e.state = State::Leased {
            deadline: MaybeTime::NONE,
            consumer: None,
        };
        e.leased_at = now;
        self.stats.ready -= 1;
        self.stats.ready_bytes -= size;
        self.stats.leased += 1;
    }

    /// Whether `lease` is the message's current lease and still held.
    pub fn lease_is_current(&self, lease: Lease) -> bool {
        self.find_leased(lease).is_ok()
    }

    fn find_leased(&self, lease: Lease) -> CoreResult<usize> {
        self.find(lease)
            .filter(|&k| matches!(self.slots[k].state, State::Leased { .. }))
            .ok_or(CoreError::LeaseNotFound)
    }

    /// Leased -> Ready (or dead-lettered, if delivered too often, or
    /// dropped, if expired meanwhile).
    fn return_leased(&mut self, key: usize, now: Timestamp, fx: &mut Effects) {
        let e = &self.slots[key];
        let limit = self
            .config
            .dead_letter
            .as_ref()
            .and_then(|p| p.max_deliveries);
        if limit.is_some_and(|max| e.deliveries >= max) {
            self.remove(key, Some(DeathReason::DeliveryLimit), now, fx);
        } else if e.expires_at.get().is_some_and(|t| t <= now) {
            self.remove(key, Some(DeathReason::Expired), now, fx);
        } else {
            self.leave_lease(key, fx);
            self.make_ready(key, true, fx);
        }
    }

    /// Bookkeeping when an entry stops being leased: counts, the consumer's
    /// credit, the FIFO group's block (whose lifting makes messages ready).
    fn leave_lease(&mut self, key: usize, fx: &mut Effects) {
        let e = &self.slots[key];
        if let State::Leased { consumer, .. } = e.state {
            self.stats.leased -= 1;
            if let Some(c) = consumer {
                self.consumers.settle(c);
            }
            if let ReadyIndex::Grouped(g) = &mut self.ready
                && g.release(e.group().unwrap_or(""))
            {
                fx.became_ready += 1;
            }
        }
    }

    /// Puts an entry (not leased any more) into the ready index.
    fn make_ready(&mut self, key: usize, returned: bool, fx: &mut Effects) {
        let e = &mut self.slots[key];
        e.state = State::Ready;
        self.ready
            .push((e.seq, key), e.priority, e.group(), returned);
        self.stats.ready += 1;
        self.stats.ready_bytes += e.size;
        fx.became_ready += 1;
    }

    /// Removes an entry. With a reason, the message died: it is
    /// dead-lettered if the queue's policy covers the reason, else dropped.
    fn remove(&mut self, key: usize, died: Option<DeathReason>, now: Timestamp, fx: &mut Effects) {
        match self.slots[key].state {
            State::Ready => {
                let size = self.slots[key].size;
                self.stats.ready -= 1;
                self.stats.ready_bytes -= size;
            }
            State::Delayed(_) => self.stats.delayed -= 1,
            State::Leased { .. } => self.leave_lease(key, fx),
        }
        if !self.held_back.is_empty() {
            let seq = self.slots[key].seq;
            self.end_hold(seq, key);
        }
        let e = self.slots.remove(key);
        self.stats.bytes -= e.size;
        if e.evicted {
            self.evicted -= 1;
        } else {
            self.stats.resident_bytes -= e.size;
        }
        let removal = self.journaled(&e.msg).then_some(Record::Removed {
            queue: self.id,
            seq: e.seq,
            loc: e.loc.get(),
        });
        let Some(reason) = died else {
            fx.records.extend(removal);
            return;
        };
        // A dying evicted message goes on as its location: the broker reads
        // it back outside the lock.
        let body = match (e.evicted, e.loc.get()) {
            (false, _) => Body::Here(e.msg),
            (true, Some(loc)) => Body::InStore(loc),
            (true, None) => {
                // Evictions take only journaled messages, so this is not
                // reached; were it, the record stays (no removal) and a
                // restart brings the message back rather than lose it.
                tracing::error!(queue = %self.name, "a dying evicted message has no location");
                return;
            }
        };
        self.discard(body, reason, removal, now, fx);
    }

    /// A message that died: to the dead-letter target if the policy covers
    /// `reason`, else gone.
    fn discard(
        &mut self,
        body: Body,
        reason: DeathReason,
        removal: Option<Record>,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        if reason == DeathReason::Expired {
            self.stats.expired += 1;
        }
        let policy = self.config.dead_letter.as_ref().filter(|p| match reason {
            DeathReason::Rejected => p.on_rejected,
            DeathReason::Expired => p.on_expired,
            DeathReason::MaxLength => p.on_overflow,
            DeathReason::DeliveryLimit => true,
        });
        match policy {
            Some(p) => {
                self.stats.dead_lettered += 1;
                let message = match body {
                    Body::Here(m) => {
                        Dying::Marked(Box::new(m.dead_lettered(&self.name, reason, now)))
                    }
                    Body::InStore(loc) => Dying::InStore {
                        loc,
                        reason,
                        at: now,
                    },
                };
                fx.dead_letters.push(DeadLetter {
                    message,
                    target: p.target.clone(),
                    removal,
                });
            }
            None => {
                if reason != DeathReason::Expired {
                    self.stats.dropped += 1;
                }
                fx.records.extend(removal);
            }
        }
    }

    /// Removes every ready and delayed message, and with `include_leased`
    /// the leased ones too (SQS purges in-flight messages; AMQP does not).
    /// Returns how many were removed.
    pub fn purge(&mut self, include_leased: bool, now: Timestamp, fx: &mut Effects) -> u64 {
        self.advance(now, fx);
        let mut seqs = Vec::new();
        let doomed: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, e)| include_leased || !matches!(e.state, State::Leased { .. }))
            .map(|(k, _)| k)
            .collect();
        for &key in &doomed {
            let e = &self.slots[key];
            let journaled = self.journaled(&e.msg);
            let (seq, loc) = (e.seq, e.loc.get());
            self.remove(key, None, now, fx);
            // `remove` pushed a per-message record; one purge record replaces them.
            if journaled {
                fx.records.pop();
                seqs.push((seq, loc));
            }
        }
        if include_leased {
            self.ready = ReadyIndex::new(self.config.fifo, self.config.max_priority);
            self.deadlines.clear();
        } else {
            self.ready.clear();
        }
        self.delayed.clear();
        if self.slots.is_empty() {
            self.expiries.clear();
        }
        if !seqs.is_empty() {
            fx.records.push(Record::Purged {
                queue: self.id,
                removed: seqs,
            });
        }
        doomed.len() as u64
    }

    /// Up to `max` ready messages in the order they would be delivered,
    /// left where they are (no lease, no delivery count). Evicted ones are
    /// left out (see [`QueueCore::peek_whole`]). Timers due are run first,
    /// so expired messages are not shown.
    pub fn peek(&mut self, now: Timestamp, max: usize, fx: &mut Effects) -> Vec<Peeked> {
        // Not all or nothing: it never comes back with a plan.
        self.peek_with(now, max, false, fx).unwrap_or_default()
    }

    /// [`QueueCore::peek`], all or nothing: if any message it would show is
    /// only in the store, it returns those, to be read back outside the
    /// lock before it is called again.
    pub fn peek_whole(
        &mut self,
        now: Timestamp,
        max: usize,
        fx: &mut Effects,
    ) -> Result<Vec<Peeked>, Reload> {
        self.peek_with(now, max, true, fx)
    }

    fn peek_with(
        &mut self,
        now: Timestamp,
        max: usize,
        whole: bool,
        fx: &mut Effects,
    ) -> Result<Vec<Peeked>, Reload> {
        self.advance(now, fx);
        let slots = &self.slots;
        let twice = self.twice_indexed;
        let mut taken: Vec<usize> = Vec::new();
        let mut valid = |(seq, key): Ref| {
            let ready = slots
                .get(key)
                .is_some_and(|e| e.seq == seq && e.state == State::Ready);
            ready && (!twice || once(&mut taken, key))
        };
        let refs = self.ready.peek(max, &mut valid);
        if whole
            && self.evicted > 0
            && let Some(plan) = self.plan_for(&refs)
        {
            return Err(plan);
        }
        let mut out = Vec::with_capacity(refs.len());
        for (_, key) in refs {
            let e = &self.slots[key];
            if e.evicted {
                // Only in the store: a peek shows what is in memory.
                continue;
            }
            out.push(Peeked {
                message: Arc::clone(&e.msg),
                deliveries: e.deliveries,
                enqueued_at: e.enqueued_at,
            });
        }
        Ok(out)
    }

    /// Takes up to `max` ready messages older than `below_seq` out of the
    /// queue for a move task, with their removal records (to be journaled
    /// only once they are in their new queue). Newer messages met on the
    /// way (higher priority, another FIFO group first) are passed over and
    /// put back where they were.
    pub fn take_for_move(
        &mut self,
        now: Timestamp,
        max: usize,
        below_seq: u64,
        fx: &mut Effects,
        out: &mut Vec<(Body, Option<Record>)>,
    ) {
        self.advance(now, fx);
        let mut refs = std::mem::take(&mut self.scratch);
        let mut passed_over: Vec<Ref> = Vec::new();
        let mut taken = 0;
        // Popped FIFO groups stay blocked until released below, so the
        // passed-over messages are not popped again.
        while taken < max {
            refs.clear();
            self.pop_ready(max - taken, &mut refs);
            if refs.is_empty() {
                break;
            }
            for &(seq, key) in &refs {
                if seq >= below_seq {
                    passed_over.push((seq, key));
                    continue;
                }
                let e = &self.slots[key];
                let body = match (e.evicted, e.loc.get()) {
                    (false, _) => Body::Here(Arc::clone(&e.msg)),
                    // Read back by the mover, outside the lock.
                    (true, Some(loc)) => Body::InStore(loc),
                    (true, None) => {
                        tracing::error!(queue = %self.name, "an evicted message has no location; left in place");
                        passed_over.push((seq, key));
                        continue;
                    }
                };
                let size = e.size;
                self.stats.ready -= 1;
                self.stats.ready_bytes -= size;
                self.stats.bytes -= size;
                let e = self.slots.remove(key);
                if e.evicted {
                    self.evicted -= 1;
                } else {
                    self.stats.resident_bytes -= size;
                }
                self.release_group(e.group(), fx);
                let removal = self.journaled(&e.msg).then_some(Record::Removed {
                    queue: self.id,
                    seq: e.seq,
                    loc: e.loc.get(),
                });
                out.push((body, removal));
                taken += 1;
            }
        }
        for (seq, key) in passed_over {
            let e = &self.slots[key];
            let group = e.group().map(str::to_owned);
            self.ready
                .push((seq, key), e.priority, group.as_deref(), true);
            self.release_group(group.as_deref(), fx);
        }
        refs.clear();
        self.scratch = refs;
    }

    /// Re-journals live messages whose store location `moved` selects (the
    /// store is compacting an old file): each gets an `Enqueued` record that
    /// replaces its old one and a new location. Looks at `max` slots from
    /// `cursor`, so a deep queue is not locked for long; returns where to
    /// go on, or `None` once the whole queue has been seen.
    ///
    /// An evicted message needs its body, which is not read back under the
    /// lock: `relocation.loaded` holds the bodies the broker read for this
    /// range beforehand ([`QueueCore::relocation_plan`]); one evicted since
    /// goes into `relocation.missing`, and the broker goes over the range
    /// again.
    pub fn relocate(
        &mut self,
        moved: &dyn Fn(Location) -> bool,
        cursor: usize,
        max: usize,
        relocation: &mut Relocation,
        fx: &mut Effects,
    ) -> Option<usize> {
        let end = cursor.saturating_add(max).min(self.slots.capacity());
        for key in cursor..end {
            let Some(e) = self.slots.get(key) else {
                continue;
            };
            let Some(loc) = e.loc.get().filter(|l| moved(*l)) else {
                continue;
            };
            let (seq, at, deliveries) = (e.seq, e.enqueued_at, e.deliveries);
            let message = if e.evicted {
                let Some(message) = relocation.take(seq, key, loc) else {
                    relocation.missing = true;
                    continue;
                };
                // Its new record is not written yet, so it cannot be read
                // back from there: it stays in memory until the budget task
                // evicts it again.
                self.make_resident(key, Arc::clone(&message));
                message
            } else {
                Arc::clone(&e.msg)
            };
            fx.records.push(Record::Enqueued {
                queue: self.id,
                seq,
                at,
                deliveries,
                message,
                replaces: Some(loc),
                forwarded: false,
            });
            fx.journaled.push((seq, key));
        }
        (end < self.slots.capacity()).then_some(end)
    }

    /// Undoes the block a FIFO pop put on `group`.
    fn release_group(&mut self, group: Option<&str>, fx: &mut Effects) {
        if let ReadyIndex::Grouped(g) = &mut self.ready
            && g.release(group.unwrap_or(""))
        {
            fx.became_ready += 1;
        }
    }
}

#[cfg(test)]
mod tests;
