//! Queue operations of the broker: declare, delete, send, receive, settle,
//! consume; and the one path every queue operation's effects take.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Timestamp;
use crate::error::{CoreError, CoreResult};
use crate::message::{Message, MessageId};
use crate::queue::{
    ConsumerId, ConsumerSpec, Delivery, Effects, Enqueued, Lease, LeaseMatch, QueueConfig,
    QueueCore, ReceiveMode,
};
use crate::router::Destination;
use crate::store::{Commit, QueueId, Record};

use super::{Broker, Namespace, QueueHandle, lock, read, write};

/// The outcome of declaring a queue.
pub struct DeclaredQueue {
    pub queue: Arc<QueueHandle>,
    /// False if it existed already with the same settings.
    pub created: bool,
}

/// The outcome of sending one message to a queue.
#[derive(Debug)]
pub struct Sent {
    pub id: MessageId,
    pub outcome: Enqueued,
}

impl Broker {
    /// Creates a queue, or returns the existing one if its settings are the
    /// same (an exclusive queue of another owner is refused). Answer the
    /// client once the commit is durable: a durable queue's declaration
    /// must survive a crash that follows the answer.
    pub fn declare_queue(
        &self,
        namespace: &str,
        name: &str,
        config: QueueConfig,
    ) -> CoreResult<(DeclaredQueue, Commit)> {
        let ns = self.namespace(namespace)?;
        self.check_config(&config)?;
        // Bound first, so the map's read guard is gone before the queue's lock.
        let existing = read(&ns.queues).get(name).cloned();
        if let Some(q) = existing {
            return self.redeclare(&q, &config);
        }
        let mut map = write(&ns.queues);
        if let Some(q) = map.get(name).cloned() {
            drop(map);
            return self.redeclare(&q, &config);
        }
        let limit = self.max_queues.load(Ordering::Relaxed);
        if map.len() >= limit {
            return Err(CoreError::TooManyQueues {
                namespace: namespace.to_owned(),
                limit,
            });
        }
        let id = QueueId(self.next_queue_id.fetch_add(1, Ordering::Relaxed));
        let q = self.new_handle(namespace, name, id, config.clone());
        let commit = if config.durable && config.exclusive_owner.is_none() {
            self.append(&mut vec![Record::QueueDeclared {
                id,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                config,
            }])
        } else {
            Commit::done()
        };
        // Refused by the store: the queue never existed.
        if let Some(Err(e)) = commit.outcome() {
            return Err(CoreError::Storage(e));
        }
        map.insert(name.to_owned(), Arc::clone(&q));
        drop(map);
        self.schedule(&q, lock(&q.core).next_deadline());
        Ok((
            DeclaredQueue {
                queue: q,
                created: true,
            },
            commit,
        ))
    }

    /// Whether a queue may have these settings (declare and reconfigure
    /// check; a definitions import checks every queue first). A queue may
    /// name only a key its store holds: sealing with a missing key would
    /// fail every send, or a typo would quietly leave it in the clear. Its
    /// deduplication window is bounded: the journal keeps every segment for
    /// as long (recovery rebuilds the window from them).
    /// Whether the store holds a key of this name to seal a queue with.
    pub fn has_key(&self, name: &str) -> bool {
        self.store.has_key(name)
    }

    pub fn check_config(&self, config: &QueueConfig) -> CoreResult<()> {
        if let Some(name) = &config.encryption_key
            && !self.has_key(name)
        {
            return Err(CoreError::UnknownKey(name.clone()));
        }
        if config
            .dedup
            .as_ref()
            .is_some_and(|d| d.window > crate::queue::MAX_DEDUP_WINDOW)
        {
            return Err(CoreError::DedupWindowTooLong {
                max_secs: crate::queue::MAX_DEDUP_WINDOW.as_secs(),
            });
        }
        Ok(())
    }

    pub(super) fn new_handle(
        &self,
        namespace: &str,
        name: &str,
        id: QueueId,
        config: QueueConfig,
    ) -> Arc<QueueHandle> {
        let handle = Arc::new(QueueHandle {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            id,
            core: std::sync::Mutex::new(QueueCore::new(
                id,
                name,
                config,
                self.clock.now(),
                self.ids.next_id().0 as u32,
            )),
            arrivals: Notify::new(),
            waiting: AtomicUsize::new(0),
            scheduled: AtomicU64::new(u64::MAX),
            deleted: AtomicBool::new(false),
            reload_requested: AtomicBool::new(false),
        });
        {
            let mut core = lock(&handle.core);
            core.set_store(Arc::clone(&self.store));
            core.set_length_ceiling(self.max_queue_length.load(Ordering::Relaxed));
        }
        handle
    }

    /// Bytes of message bodies held in memory, over all queues.
    pub fn resident_bytes(&self) -> u64 {
        self.all_queues()
            .iter()
            .map(|q| lock(&q.core).stats().resident_bytes)
            .sum()
    }

    pub(super) fn all_queues(&self) -> Vec<Arc<QueueHandle>> {
        let namespaces: Vec<Arc<Namespace>> = read(&self.namespaces).values().cloned().collect();
        namespaces
            .iter()
            .flat_map(|ns| read(&ns.queues).values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Drops journaled messages from memory (they are read back from the
    /// store when needed) until at most `budget` bytes of bodies are
    /// resident, taking from the queues that hold most first, a few
    /// thousand slots per queue lock. Returns the bytes freed.
    pub fn evict_to(&self, budget: u64) -> u64 {
        const SLOTS_PER_LOCK: usize = 4096;
        let mut queues: Vec<(u64, Arc<QueueHandle>)> = self
            .all_queues()
            .into_iter()
            .map(|q| {
                let resident = lock(&q.core).stats().resident_bytes;
                (resident, q)
            })
            .collect();
        let total: u64 = queues.iter().map(|(r, _)| r).sum();
        let mut excess = total.saturating_sub(budget);
        queues.sort_by_key(|(resident, _)| std::cmp::Reverse(*resident));
        let mut freed = 0;
        for (_, q) in queues {
            let mut cursor = Some(usize::MAX);
            while let Some(from) = cursor {
                if excess == 0 {
                    return freed;
                }
                let (n, next) = lock(&q.core).evict(excess, from, SLOTS_PER_LOCK);
                freed += n;
                excess = excess.saturating_sub(n);
                cursor = next;
            }
        }
        freed
    }

    /// A declaration of a queue that exists. Its first declaration may not
    /// be durable yet (another client's, a moment ago): the answer waits
    /// for everything journaled before it.
    fn redeclare(
        &self,
        q: &Arc<QueueHandle>,
        config: &QueueConfig,
    ) -> CoreResult<(DeclaredQueue, Commit)> {
        let mut core = lock(&q.core);
        let existing = core.config();
        if let Some(owner) = existing.exclusive_owner
            && config.exclusive_owner != Some(owner)
        {
            return Err(CoreError::ExclusiveQueue(q.name.clone()));
        }
        if existing != config {
            return Err(CoreError::QueueExists {
                name: q.name.clone(),
                detail: describe_difference(existing, config),
            });
        }
        core.touch(self.clock.now());
        let commit = self.barrier_if(config.durable && config.exclusive_owner.is_none());
        Ok((
            DeclaredQueue {
                queue: Arc::clone(q),
                created: false,
            },
            commit,
        ))
    }

    /// Changes a live queue's settings (see [`QueueCore::reconfigure`]);
    /// durable once the commit is.
    pub fn reconfigure_queue(
        &self,
        q: &Arc<QueueHandle>,
        config: QueueConfig,
    ) -> CoreResult<Commit> {
        self.check_config(&config)?;
        let (r, commit) = self.op(q, |core, _, fx| {
            if q.is_deleted() {
                return Err(CoreError::QueueNotFound(q.name.clone()));
            }
            core.reconfigure(config.clone())?;
            if config.durable && config.exclusive_owner.is_none() {
                fx.records.push(Record::QueueDeclared {
                    id: q.id,
                    namespace: q.namespace.clone(),
                    name: q.name.clone(),
                    config,
                });
            }
            Ok(())
        });
        r.map(|()| commit)
    }

    pub fn queue(&self, namespace: &str, name: &str) -> CoreResult<Arc<QueueHandle>> {
        read(&self.namespace(namespace)?.queues)
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::QueueNotFound(name.to_owned()))
    }

    /// Queue names of a namespace, sorted.
    pub fn queue_names(&self, namespace: &str) -> CoreResult<Vec<String>> {
        let mut v: Vec<String> = read(&self.namespace(namespace)?.queues)
            .keys()
            .cloned()
            .collect();
        v.sort();
        Ok(v)
    }

    /// Deletes a queue; returns how many messages it held, and when its
    /// deletion is durable. With `if_unused` it fails if the queue has
    /// consumers, with `if_empty` if it has messages waiting (ready or
    /// delayed; unacked deliveries do not count).
    pub fn delete_queue(
        &self,
        namespace: &str,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> CoreResult<(u64, Commit)> {
        let ns = self.namespace(namespace)?;
        let q = self.queue(namespace, name)?;
        let count = {
            let core = lock(&q.core);
            if if_unused && core.consumer_count() > 0 {
                return Err(CoreError::QueueInUse(name.to_owned()));
            }
            // As RabbitMQ counts: messages waiting, not deliveries unacked.
            let s = core.stats();
            if if_empty && s.ready + s.delayed > 0 {
                return Err(CoreError::QueueNotEmpty(name.to_owned()));
            }
            let s = core.stats();
            s.ready + s.delayed + s.leased
        };
        let commit = self.remove_queue(&ns, &q);
        Ok((count, commit))
    }

    /// Removes `q` from its namespace and every binding to it.
    pub(super) fn remove_queue(&self, ns: &Namespace, q: &Arc<QueueHandle>) -> Commit {
        {
            let mut map = write(&ns.queues);
            match map.get(&q.name) {
                Some(current) if Arc::ptr_eq(current, q) => {
                    map.remove(&q.name);
                }
                // Removed meanwhile by another: that removal's journaling
                // is before now.
                _ => return self.store.barrier(),
            }
        }
        // The queue's deletion is journaled before the auto-deletions it
        // causes: a crash between them keeps the routers, not the queue.
        let closed = self.close_queue(q);
        closed.and(self.unbind_everywhere(ns, &q.namespace, &Destination::queue(&q.name)))
    }

    /// Marks a queue deleted, ends its consumers and waiters, journals it.
    pub(super) fn close_queue(&self, q: &Arc<QueueHandle>) -> Commit {
        q.deleted.store(true, Ordering::Release);
        let durable = {
            let mut core = lock(&q.core);
            // Dropping the consumers drops their sinks: that is how a
            // protocol learns its consumer ended (AMQP basic.cancel).
            core.close();
            core.config().durable && core.config().exclusive_owner.is_none()
        };
        let commit = if durable {
            self.append(&mut vec![Record::QueueDeleted { id: q.id }])
        } else {
            Commit::done()
        };
        q.arrivals.notify_waiters();
        commit
    }

    /// Runs one queue operation under the queue's lock, journals its
    /// records before releasing the lock, then carries out its effects.
    pub(super) fn op<R>(
        &self,
        q: &Arc<QueueHandle>,
        f: impl FnOnce(&mut QueueCore, Timestamp, &mut Effects) -> R,
    ) -> (R, Commit) {
        self.op_at(q, 0, f)
    }

    /// [`Broker::op`] for an operation `depth` dead-letter hops deep (its
    /// own dead letters stop after a bound).
    pub(super) fn op_at<R>(
        &self,
        q: &Arc<QueueHandle>,
        depth: u32,
        f: impl FnOnce(&mut QueueCore, Timestamp, &mut Effects) -> R,
    ) -> (R, Commit) {
        let now = self.clock.now();
        let mut fx = Effects::default();
        let (r, commit, next) = {
            let mut core = lock(&q.core);
            let r = f(&mut core, now, &mut fx);
            let commit = self.journal(&mut core, &mut fx);
            (r, commit, core.next_deadline())
        };
        self.schedule(q, next);
        self.after(q, fx, depth);
        (r, commit)
    }

    /// What a queue operation left to do outside the queue's lock.
    pub(super) fn after(&self, q: &Arc<QueueHandle>, fx: Effects, depth: u32) {
        if fx.reload {
            self.request_reload(q);
        }
        if fx.became_ready > 0 && q.waiting.load(Ordering::Acquire) > 0 {
            q.arrivals.notify_waiters();
        }
        if !fx.dead_letters.is_empty() {
            self.dead_letter(q, fx.dead_letters, depth);
        }
        if fx.delete_queue
            && let Ok(ns) = self.namespace(&q.namespace)
        {
            // Nobody asked for it (a TTL ran out, the last consumer of an
            // auto-delete queue left): nobody waits for it either.
            let _unasked = self.remove_queue(&ns, q);
        }
    }

    pub(super) fn stamp(&self, msg: &mut Message, now: Timestamp) {
        msg.id = self.ids.next_id();
        if msg.published_at == Timestamp(0) {
            msg.published_at = now;
        }
    }

    /// Sends one message to a queue. Await the commit before confirming a
    /// persistent message to its publisher.
    pub fn send(&self, q: &Arc<QueueHandle>, msg: Message) -> CoreResult<(Sent, Commit)> {
        if q.is_deleted() {
            return Err(CoreError::QueueNotFound(q.name.clone()));
        }
        let mut msg = msg;
        let (r, commit) = self.op(q, |core, now, fx| {
            // Under the lock: a deletion closes the queue under it too.
            if q.is_deleted() {
                return Err(CoreError::QueueNotFound(q.name.clone()));
            }
            self.stamp(&mut msg, now);
            let id = msg.id;
            core.enqueue(Arc::new(msg), now, fx)
                .map(|outcome| Sent { id, outcome })
        });
        // A duplicate's commit is its original's (see `Broker::journal`).
        Ok((r?, commit))
    }

    /// Sends several messages under one lock and one journal append.
    pub fn send_batch(
        &self,
        q: &Arc<QueueHandle>,
        msgs: Vec<Message>,
    ) -> CoreResult<(Vec<CoreResult<Sent>>, Commit)> {
        if q.is_deleted() {
            return Err(CoreError::QueueNotFound(q.name.clone()));
        }
        let now = self.clock.now();
        let msgs: Vec<Message> = msgs
            .into_iter()
            .map(|mut m| {
                self.stamp(&mut m, now);
                m
            })
            .collect();
        let (results, commit) = self.op(q, |core, now, fx| {
            if q.is_deleted() {
                return Err(CoreError::QueueNotFound(q.name.clone()));
            }
            Ok(msgs
                .into_iter()
                .map(|m| {
                    let id = m.id;
                    core.enqueue(Arc::new(m), now, fx)
                        .map(|outcome| Sent { id, outcome })
                })
                .collect())
        });
        Ok((results?, commit))
    }

    /// Enqueues a message that already has its id: a routed publish, or
    /// (`forwarded`) a dead letter or a move, which skip deduplication.
    ///
    /// `then` (a source queue's removal of a forwarded message) is taken and
    /// journaled in the same append, after the enqueue, if the enqueue
    /// succeeds: on disk the removal never exists without the message's new
    /// home (a failed append loses both, a torn one the removal first).
    pub(super) fn enqueue_existing(
        &self,
        q: &Arc<QueueHandle>,
        msg: Arc<Message>,
        forwarded: bool,
        depth: u32,
        then: &mut Option<Record>,
    ) -> CoreResult<(Enqueued, Commit)> {
        let (r, commit) = self.op_at(q, depth, |core, now, fx| {
            // Checked under the lock: a deletion closes the queue under it too.
            if q.is_deleted() {
                return Err(CoreError::QueueNotFound(q.name.clone()));
            }
            let r = if forwarded {
                core.enqueue_forwarded(msg, now, fx)
            } else {
                core.enqueue(msg, now, fx)
            };
            if r.is_ok() {
                fx.records.extend(then.take());
            }
            r
        });
        r.map(|o| (o, commit))
    }

    /// Re-journals every live message whose store location `moved` selects,
    /// queue by queue, a few thousand at a time under each queue's lock (a
    /// store compacting an old file calls this). Returns how many.
    pub fn relocate(&self, moved: &dyn Fn(crate::store::Location) -> bool) -> usize {
        const SLOTS_PER_LOCK: usize = 4096;
        let namespaces: Vec<Arc<Namespace>> = read(&self.namespaces).values().cloned().collect();
        let mut relocated = 0;
        for ns in namespaces {
            let queues: Vec<Arc<QueueHandle>> = read(&ns.queues).values().cloned().collect();
            for q in queues {
                let mut cursor = Some(0);
                while let Some(from) = cursor {
                    cursor = self.relocate_range(&q, moved, from, SLOTS_PER_LOCK, &mut relocated);
                }
            }
        }
        relocated
    }

    /// [`Broker::relocate`] over slots `from..from + max` of `q`: the
    /// evicted messages among them are read first, outside the lock, and
    /// the range is gone over again for any evicted meanwhile. Returns
    /// where to go on.
    fn relocate_range(
        &self,
        q: &Arc<QueueHandle>,
        moved: &dyn Fn(crate::store::Location) -> bool,
        from: usize,
        max: usize,
        relocated: &mut usize,
    ) -> Option<usize> {
        // Evictions racing this many times leave the rest for the next
        // compaction (the file is kept while it holds live messages).
        const ATTEMPTS: usize = 8;
        let mut next = None;
        for _ in 0..ATTEMPTS {
            let plan = lock(&q.core).relocation_plan(moved, from, max);
            let mut relocation = crate::queue::Relocation::default();
            for (seq, key, loc) in plan {
                match self.store.load(loc) {
                    Ok(m) => relocation.insert(seq, key, loc, m),
                    Err(err) => {
                        tracing::error!(queue = %q.name, error = %err, "an evicted message could not be read back to relocate it");
                    }
                }
            }
            // Compaction answers nobody; the old records stay until the
            // new ones are durable (the store's own rule).
            let (n, _unanswered) = self.op(q, |core, _, fx| {
                let n = core.relocate(moved, from, max, &mut relocation, fx);
                *relocated += fx.journaled.len();
                n
            });
            next = n;
            if !relocation.missing {
                break;
            }
        }
        next
    }

    /// Up to `max` ready messages, without taking them (see [`QueueCore::peek`]).
    ///
    /// [`QueueCore::peek`]: crate::queue::QueueCore::peek
    pub fn peek(&self, q: &Arc<QueueHandle>, max: usize) -> Vec<crate::queue::Peeked> {
        // As `receive_into`: evicted ones are read back outside the lock.
        const ROUNDS: usize = 3;
        for _ in 0..ROUNDS {
            match self.op(q, |core, now, fx| core.peek_whole(now, max, fx)).0 {
                Ok(seen) => return seen,
                Err(plan) => {
                    if self.read_back(q, plan) == 0 {
                        break;
                    }
                }
            }
        }
        self.op(q, |core, now, fx| core.peek(now, max, fx)).0
    }

    /// Takes up to `max` ready messages now (no waiting).
    pub fn receive(&self, q: &Arc<QueueHandle>, max: usize, mode: ReceiveMode) -> Vec<Delivery> {
        let mut out = Vec::new();
        self.receive_into(q, max, mode, &mut out);
        out
    }

    /// [`Broker::receive`] into a buffer the caller reuses (the hot path
    /// of a protocol connection allocates nothing per message this way).
    pub fn receive_into(
        &self,
        q: &Arc<QueueHandle>,
        max: usize,
        mode: ReceiveMode,
        out: &mut Vec<Delivery>,
    ) {
        // A receive that would take an evicted message takes nothing; the
        // ones it would take are read back (outside the lock, on this
        // thread) and it goes again. Evictions may go on meanwhile: after
        // a few rounds it takes what is in memory.
        const ROUNDS: usize = 3;
        for _ in 0..ROUNDS {
            // The delivery counts it journals need not be durable before
            // the messages go out: a crash before then undercounts by one
            // delivery that nobody acknowledged.
            let (plan, _counts) = self.op(q, |core, now, fx| {
                core.receive_whole(now, max, mode, fx, out)
            });
            match plan {
                None => return,
                Some(plan) => {
                    if self.read_back(q, plan) == 0 {
                        break;
                    }
                }
            }
        }
        let (_, _counts) = self.op(q, |core, now, fx| {
            core.receive(now, max, mode, fx, out);
            // What it stopped at is for the next receive to read back.
            fx.reload = false;
        });
    }

    pub fn ack(&self, q: &Arc<QueueHandle>, lease: Lease) -> CoreResult<()> {
        self.ack_matching(q, lease, LeaseMatch::Current)
    }

    /// [`Broker::ack`] with the lease matched as `m` says (see [`LeaseMatch`]).
    pub fn ack_matching(
        &self,
        q: &Arc<QueueHandle>,
        lease: Lease,
        m: LeaseMatch,
    ) -> CoreResult<()> {
        self.op(q, |core, now, fx| core.ack_matching(lease, m, now, fx))
            .0
    }

    pub fn nack(&self, q: &Arc<QueueHandle>, lease: Lease, requeue: bool) -> CoreResult<()> {
        self.op(q, |core, now, fx| core.nack(lease, requeue, now, fx))
            .0
    }

    /// Changes a lease's visibility timeout; returns the new deadline.
    pub fn set_visibility(
        &self,
        q: &Arc<QueueHandle>,
        lease: Lease,
        timeout: Duration,
    ) -> CoreResult<Timestamp> {
        self.set_visibility_within(q, lease, timeout, None)
    }

    /// [`Broker::set_visibility`] with a limit on how long after the lease
    /// began it may end (see [`QueueCore::set_visibility_within`]).
    pub fn set_visibility_within(
        &self,
        q: &Arc<QueueHandle>,
        lease: Lease,
        timeout: Duration,
        limit: Option<Duration>,
    ) -> CoreResult<Timestamp> {
        self.set_visibility_matching(q, lease, LeaseMatch::Current, timeout, limit)
    }

    /// [`Broker::set_visibility_within`] with the lease matched as `m` says.
    pub fn set_visibility_matching(
        &self,
        q: &Arc<QueueHandle>,
        lease: Lease,
        m: LeaseMatch,
        timeout: Duration,
        limit: Option<Duration>,
    ) -> CoreResult<Timestamp> {
        self.op(q, |core, now, fx| {
            core.set_visibility_matching(lease, m, timeout, limit, now, fx)
        })
        .0
    }

    /// Whether `lease` is still the current, held lease of its message.
    pub fn lease_is_current(&self, q: &Arc<QueueHandle>, lease: Lease) -> bool {
        lock(&q.core).lease_is_current(lease)
    }

    /// Removes messages (see [`QueueCore::purge`]); returns how many, and
    /// when their removal is durable (answer once it is: a crash before
    /// would bring them back).
    pub fn purge(&self, q: &Arc<QueueHandle>, include_leased: bool) -> (u64, Commit) {
        self.op(q, |core, now, fx| core.purge(include_leased, now, fx))
    }

    /// Registers a push consumer.
    pub fn consume(&self, q: &Arc<QueueHandle>, spec: ConsumerSpec) -> CoreResult<ConsumerId> {
        if q.is_deleted() {
            return Err(CoreError::QueueNotFound(q.name.clone()));
        }
        let id = self.next_consumer_id();
        self.op(q, |core, now, fx| {
            if q.is_deleted() {
                return Err(CoreError::QueueNotFound(q.name.clone()));
            }
            core.add_consumer(id, spec, now, fx)
        })
        .0
        .map(|()| id)
    }

    /// Dispatches `q`'s ready messages to its consumers again: a sink that
    /// refused deliveries (not ready) calls this once it can take more.
    pub fn kick(&self, q: &Arc<QueueHandle>) {
        // As for `receive_into`: deliveries need no durable count first.
        let _counts = self.op(q, |core, now, fx| core.redispatch(now, fx));
    }

    pub fn cancel(&self, q: &Arc<QueueHandle>, consumer: ConsumerId) -> CoreResult<()> {
        self.op(q, |core, now, fx| core.cancel_consumer(consumer, now, fx))
            .0
    }

    pub fn set_prefetch(
        &self,
        q: &Arc<QueueHandle>,
        consumer: ConsumerId,
        prefetch: Option<u32>,
    ) -> CoreResult<()> {
        self.op(q, |core, now, fx| {
            core.set_prefetch(consumer, prefetch, now, fx)
        })
        .0
    }
}

/// Names the first setting that differs, for the error message.
fn describe_difference(a: &QueueConfig, b: &QueueConfig) -> String {
    let fields: [(&str, bool); 14] = [
        ("durable", a.durable != b.durable),
        ("fifo", a.fifo != b.fifo),
        ("deduplication", a.dedup != b.dedup),
        (
            "visibility timeout",
            a.visibility_timeout != b.visibility_timeout,
        ),
        ("delay", a.delay != b.delay),
        ("message ttl", a.message_ttl != b.message_ttl),
        ("max length", a.max_length != b.max_length),
        ("max bytes", a.max_bytes != b.max_bytes),
        ("overflow", a.overflow != b.overflow),
        ("max priority", a.max_priority != b.max_priority),
        ("dead letter", a.dead_letter != b.dead_letter),
        ("auto delete", a.auto_delete != b.auto_delete),
        ("encryption key", a.encryption_key != b.encryption_key),
        ("attributes", a.attributes != b.attributes),
    ];
    fields
        .iter()
        .find(|(_, differs)| *differs)
        .map(|(name, _)| format!("{name} differs"))
        .unwrap_or_else(|| "settings differ".to_owned())
}
