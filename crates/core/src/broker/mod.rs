//! The broker: namespaces of queues and routers, driven through per-queue
//! locks, with the effects of each queue operation (journal records,
//! dead letters, waking waiters, timers) carried out after it.
//!
//! Locking: a namespace's maps are behind `RwLock`s taken only to look a
//! name up or to change the map; each queue has its own `Mutex`, held for
//! one [`QueueCore`] call and the `Store::append` of its records, never
//! across an `.await`, and never while another queue's lock is held.

mod moves;
mod queues;
mod recovery;
mod reload;
mod routing;
mod timers;
mod waiting;

pub use moves::{MoveStatus, MoveTaskInfo};
pub use queues::{DeclaredQueue, Sent};
pub use routing::Published;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{CoreError, CoreResult};
use crate::ids::{IdGenerator, RandomIds};
use crate::queue::{Effects, QueueConfig, QueueCore, QueueStats};
use crate::router::Router;
use crate::store::{Commit, Location, MemoryStore, QueueId, Record, Store};

use moves::MoveTasks;
use timers::Timers;

// A poisoned lock means a panic elsewhere; the data behind it is still
// consistent at the granularity we lock, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// An isolation unit (an SQS account, an AMQP vhost) that owns queues and routers.
pub struct Namespace {
    name: String,
    queues: RwLock<HashMap<String, Arc<QueueHandle>>>,
    routers: RwLock<HashMap<String, Arc<RwLock<Router>>>>,
}

impl Namespace {
    fn new(name: &str) -> Self {
        Namespace {
            name: name.to_owned(),
            queues: RwLock::new(HashMap::new()),
            routers: RwLock::new(HashMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A live queue. Protocols keep the `Arc` to skip name lookups on the hot path.
pub struct QueueHandle {
    namespace: String,
    name: String,
    id: QueueId,
    core: Mutex<QueueCore>,
    /// Long-poll receivers wait here.
    arrivals: Notify,
    waiting: AtomicUsize,
    /// The earliest time a timer tick is scheduled for (ms; MAX: none).
    scheduled: AtomicU64,
    deleted: AtomicBool,
    /// Waits in the reload task's list (see `reload.rs`).
    reload_requested: AtomicBool,
}

impl QueueHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn id(&self) -> QueueId {
        self.id
    }

    pub fn config(&self) -> QueueConfig {
        lock(&self.core).config().clone()
    }

    pub fn stats(&self) -> QueueStats {
        lock(&self.core).stats()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// How many long-poll receives are waiting on this queue now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Fails unless `owner` may use this queue (exclusive queues belong to
    /// one connection).
    pub fn check_owner(&self, owner: Option<u64>) -> CoreResult<()> {
        match lock(&self.core).config().exclusive_owner {
            Some(o) if Some(o) != owner => Err(CoreError::ExclusiveQueue(self.name.clone())),
            _ => Ok(()),
        }
    }
}

/// The broker. Cheap to share: protocols hold an `Arc<Broker>`.
pub struct Broker {
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    store: Arc<dyn Store>,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    next_queue_id: AtomicU64,
    next_consumer_id: AtomicU64,
    timers: Timers,
    moves: MoveTasks,
    reloads: reload::Reloads,
    /// Why publishers are held back now (a resource alarm), if they are.
    alarm: tokio::sync::watch::Sender<Option<String>>,
    /// Most queues a namespace may have (declares past it are refused).
    max_queues: std::sync::atomic::AtomicUsize,
    /// Most messages any queue may hold (`u64::MAX`: no cap).
    max_queue_length: AtomicU64,
    /// The streams engine, once attached: routers route into streams
    /// (RabbitMQ stream queues) by name, as they route into queues.
    streams: std::sync::OnceLock<Arc<crate::stream::Streams>>,
    /// Removals of dead letters appended to streams, each journaled once
    /// its append is durable (see `dead_letter_into_stream`).
    stream_removals: Mutex<Vec<(Commit, Record)>>,
}

impl Broker {
    /// Opens a broker on `store`, recovering whatever it holds.
    pub fn open(
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        store: Arc<dyn Store>,
    ) -> CoreResult<Arc<Broker>> {
        Broker::open_with_budget(clock, ids, store, u64::MAX)
    }

    /// [`Broker::open`], recovering at most `memory_budget` bytes of message
    /// bodies into memory: past it, messages the store can read back stay
    /// there, and their queues hold body-less stand-ins.
    pub fn open_with_budget(
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        store: Arc<dyn Store>,
        memory_budget: u64,
    ) -> CoreResult<Arc<Broker>> {
        let broker = Arc::new(Broker {
            clock,
            ids,
            store,
            namespaces: RwLock::new(HashMap::new()),
            next_queue_id: AtomicU64::new(1),
            next_consumer_id: AtomicU64::new(1),
            timers: Timers::default(),
            moves: MoveTasks::default(),
            reloads: reload::Reloads::default(),
            alarm: tokio::sync::watch::channel(None).0,
            max_queues: std::sync::atomic::AtomicUsize::new(usize::MAX),
            max_queue_length: AtomicU64::new(u64::MAX),
            streams: std::sync::OnceLock::new(),
            stream_removals: Mutex::new(Vec::new()),
        });
        broker.recover(memory_budget)?;
        Ok(broker)
    }

    /// A broker with the system clock and nothing durable.
    pub fn in_memory() -> Arc<Broker> {
        let b = Broker::open(
            Arc::new(SystemClock::new()),
            Arc::new(RandomIds::new()),
            Arc::new(MemoryStore::new()),
        );
        // Recovery from an empty memory store cannot fail.
        b.unwrap_or_else(|e| unreachable!("empty memory store failed to open: {e}"))
    }

    /// Lets routers deliver into `streams`: a binding or default-router
    /// key naming no queue but a stream of the namespace appends to it.
    /// A stream deleted by any face takes the bindings to it along
    /// (journaled; the deletion is not held for that sync: a binding a
    /// crash brings back names a stream that is not there, and routes
    /// nothing). Set once; a second call is ignored.
    pub fn attach_streams(self: &Arc<Self>, streams: Arc<crate::stream::Streams>) {
        let broker = Arc::downgrade(self);
        streams.on_delete(move |namespace, name| {
            if let Some(b) = broker.upgrade() {
                let dest = crate::router::Destination::queue(name);
                let _unanswered = b.unbind_destination(namespace, &dest);
            }
        });
        let _ = self.streams.set(streams);
    }

    /// The stream `name` of `namespace`, if streams are attached and it exists.
    pub fn stream(&self, namespace: &str, name: &str) -> Option<Arc<crate::stream::Stream>> {
        self.streams.get()?.get(namespace, name)
    }

    pub fn streams(&self) -> Option<&Arc<crate::stream::Streams>> {
        self.streams.get()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Raises (`Some(reason)`) or clears (`None`) the resource alarm:
    /// while it is raised, protocols hold publishers back (AMQP
    /// connection.blocked) and keep serving consumers.
    pub fn set_alarm(&self, reason: Option<String>) {
        self.alarm.send_if_modified(|now| {
            if *now == reason {
                return false;
            }
            match &reason {
                Some(r) => tracing::warn!(reason = %r, "resource alarm: publishers are held back"),
                None => tracing::info!("resource alarm cleared: publishers may go on"),
            }
            *now = reason;
            true
        });
    }

    /// Limits how many queues each namespace may have (a client that
    /// declares queues in a loop must not exhaust the broker's memory).
    pub fn set_max_queues(&self, limit: usize) {
        self.max_queues.store(limit, Ordering::Relaxed);
    }

    /// Caps the messages every queue may hold, whatever its own settings
    /// (`None`: no cap): past it, sends to that queue are refused
    /// ([`CoreError::QueueFull`]), so one queue nobody drains cannot fill
    /// the disk. Messages already held over it stay.
    pub fn set_max_queue_length(&self, limit: Option<u64>) {
        let limit = limit.unwrap_or(u64::MAX);
        self.max_queue_length.store(limit, Ordering::Relaxed);
        for q in self.all_queues() {
            lock(&q.core).set_length_ceiling(limit);
        }
    }

    /// The resource alarm, to watch.
    pub fn alarm(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.alarm.subscribe()
    }

    /// A commit that completes once everything journaled before this call
    /// is durable: acks, settlements and topology changes included (an
    /// AMQP transaction answers commit-ok after it).
    pub fn barrier(&self) -> Commit {
        self.store.barrier()
    }

    /// What a change that journaled nothing waits for: if it is about
    /// something durable, everything journaled before it (which may be the
    /// write it found done).
    pub(super) fn barrier_if(&self, durable: bool) -> Commit {
        if durable {
            self.store.barrier()
        } else {
            Commit::done()
        }
    }

    /// Journals records that are not about messages (topology).
    fn append(&self, records: &mut Vec<Record>) -> Commit {
        self.store_append(records, &mut Vec::new())
    }

    fn store_append(&self, records: &mut Vec<Record>, locations: &mut Vec<Location>) -> Commit {
        if records.is_empty() {
            return Commit::done();
        }
        self.store.append(records, locations).unwrap_or_else(|e| {
            records.clear();
            Commit::failed(e)
        })
    }

    /// Journals a queue operation's records, with the queue's lock held,
    /// and gives newly enqueued messages their store locations.
    ///
    /// The commit covers what the operation wrote and the originals its
    /// duplicate sends were answered with.
    fn journal(&self, core: &mut QueueCore, fx: &mut Effects) -> Commit {
        let originals = std::mem::take(&mut fx.originals);
        if fx.records.is_empty() {
            let commit = Commit::done();
            core.attach_commit(&commit);
            return commit.both(originals);
        }
        let mut locations = Vec::with_capacity(fx.journaled.len());
        let commit = self.store_append(&mut fx.records, &mut locations);
        core.attach_commit(&commit);
        core.attach_locations(&fx.journaled, &locations);
        // A message enqueued and dead-lettered by this same operation has a
        // removal waiting to be journaled later, after its dead letter lands:
        // it must name the location just assigned.
        for dl in &mut fx.dead_letters {
            if let Some(Record::Removed { seq, loc, .. }) = &mut dl.removal
                && loc.is_none()
                && let Some(i) = fx.journaled.iter().position(|(s, _)| s == seq)
            {
                *loc = locations.get(i).copied();
            }
        }
        fx.journaled.clear();
        // Each on its own range: an unrelated failure between an old
        // original and this append fails neither.
        commit.both(originals)
    }

    /// Creates a namespace if it does not exist; durable once the commit
    /// is (an existing one's creation may be a moment old: the commit
    /// covers everything journaled before).
    pub fn create_namespace(&self, name: &str) -> CoreResult<(Arc<Namespace>, Commit)> {
        if let Some(ns) = read(&self.namespaces).get(name) {
            return Ok((Arc::clone(ns), self.store.barrier()));
        }
        let mut map = write(&self.namespaces);
        if let Some(ns) = map.get(name) {
            return Ok((Arc::clone(ns), self.store.barrier()));
        }
        let commit = self.append(&mut vec![Record::NamespaceCreated {
            name: name.to_owned(),
        }]);
        // Refused by the store: it never existed.
        if let Some(Err(e)) = commit.outcome() {
            return Err(CoreError::Storage(e));
        }
        let ns = Arc::new(Namespace::new(name));
        map.insert(name.to_owned(), Arc::clone(&ns));
        Ok((ns, commit))
    }

    /// Deletes a namespace with everything in it; durable once the commit is.
    pub fn delete_namespace(&self, name: &str) -> CoreResult<Commit> {
        let ns = write(&self.namespaces)
            .remove(name)
            .ok_or_else(|| CoreError::NamespaceNotFound(name.to_owned()))?;
        let queues: Vec<Arc<QueueHandle>> = write(&ns.queues).drain().map(|(_, q)| q).collect();
        let mut commit = Commit::done();
        for q in queues {
            commit = commit.and(self.close_queue(&q));
        }
        Ok(commit.and(self.append(&mut vec![Record::NamespaceDeleted {
            name: name.to_owned(),
        }])))
    }

    pub fn namespace(&self, name: &str) -> CoreResult<Arc<Namespace>> {
        read(&self.namespaces)
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::NamespaceNotFound(name.to_owned()))
    }

    pub fn namespace_names(&self) -> Vec<String> {
        let mut v: Vec<String> = read(&self.namespaces).keys().cloned().collect();
        v.sort();
        v
    }

    fn next_consumer_id(&self) -> crate::queue::ConsumerId {
        crate::queue::ConsumerId(self.next_consumer_id.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests;
