//! The streams engine: partitioned, append-only, replayable logs, beside
//! the queue engine and sharing nothing with it but the clock and the
//! commit machinery. Kafka topics are streams; RabbitMQ stream queues,
//! Kinesis streams and Redis streams will be too.
//!
//! - [`Streams`]: the streams of each namespace, their creation, deletion
//!   and recovery, producer ids, retention.
//! - [`Partition`]: offsets, idempotent producers' sequences, reads.
//! - [`batch`]: Kafka's RecordBatch v2, the stored unit; [`compression`]
//!   inflates a compressed one's records for faces that read records.
//! - [`LogStore`] / [`PartitionLog`]: the storage boundary.
//!
//! Invariants: a partition's offsets are handed out under its lock, in
//! order, and never reused; a reader sees only records below the durable
//! end ([`Durable`]), so nothing it saw can be lost by a crash and the
//! offsets after a restart continue from what it saw.

pub mod batch;
pub mod compression;
mod config;
mod error;
mod log;
pub mod message;
mod partition;
mod partitioner;
mod producer;

pub use config::{
    CleanupPolicy, KEYS as CONFIG_KEYS, MIN_SEGMENT_BYTES, StreamConfig, TimestampType,
};
pub use error::StreamError;
pub use log::{Durable, LogStore, MemoryLogs, OpenedLog, PartitionLog, StreamMeta};
pub use partition::{Appended, Fetched, Partition, any_arrival};
pub use partitioner::{murmur2, partition_for_key};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::{Clock, SystemClock};
use crate::ids::{IdGenerator, RandomIds};
use crate::message::Message;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// The most partitions one stream may have (Kafka has no hard limit; each
/// partition here is a directory and an open file).
pub const MAX_PARTITIONS_PER_STREAM: u32 = 10_000;

/// One stream: its metadata and partitions.
pub struct Stream {
    meta: RwLock<StreamMeta>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    /// Turns true once the stream is deleted (readers holding it stop).
    gone: tokio::sync::watch::Sender<bool>,
    /// The partition count, sent after new partitions are in `partitions`
    /// (so whoever sees it grow finds them there).
    count: tokio::sync::watch::Sender<u32>,
}

impl Stream {
    /// Whether the stream was deleted.
    pub fn is_deleted(&self) -> bool {
        *self.gone.borrow()
    }

    /// Resolves once the stream is deleted.
    pub async fn deleted(&self) {
        let mut rx = self.gone.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    pub fn name(&self) -> String {
        read(&self.meta).name.clone()
    }

    pub fn meta(&self) -> StreamMeta {
        read(&self.meta).clone()
    }

    pub fn id(&self) -> u64 {
        read(&self.meta).id
    }

    pub fn topic_id(&self) -> u128 {
        read(&self.meta).topic_id
    }

    pub fn config(&self) -> StreamConfig {
        read(&self.meta).config.clone()
    }

    /// Resolves once the stream has more than `have` partitions (never, if
    /// it is deleted first: callers also wait on [`Stream::deleted`]).
    pub async fn grown_past(&self, have: u32) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n > have).await;
    }

    pub fn partition_count(&self) -> u32 {
        read(&self.partitions).len() as u32
    }

    pub fn partition(&self, index: u32) -> Option<Arc<Partition>> {
        read(&self.partitions).get(index as usize).cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        read(&self.partitions).clone()
    }

    /// Appends one batch to partition `index`, with the stream's config.
    pub fn append(
        &self,
        index: u32,
        raw: &[u8],
        h: &batch::BatchHeader,
        now_ms: i64,
    ) -> Result<Appended, StreamError> {
        let p = self
            .partition(index)
            .ok_or_else(|| StreamError::UnknownPartition {
                stream: self.name(),
                partition: index,
            })?;
        let meta = read(&self.meta);
        p.append(raw, h, &meta.config, now_ms)
    }

    /// Appends a message routed here from a queue-shaped face, as one
    /// record (see [`message`] for the mapping). On a stream of several
    /// partitions the routing key picks the partition as Kafka's default
    /// partitioner picks one for a key, so messages with the same routing
    /// key keep their order.
    pub fn append_message(&self, msg: &Message, now_ms: i64) -> Result<Appended, StreamError> {
        let count = self.partition_count();
        let index = if count <= 1 || msg.routing_key.is_empty() {
            0
        } else {
            partition_for_key(msg.routing_key.as_bytes(), count)
        };
        let mut record = message::record_of(msg);
        if record.timestamp <= 0 {
            record.timestamp = now_ms;
        }
        let raw = batch::build(std::slice::from_ref(&record), None);
        let h = batch::BatchHeader::parse(&raw)?;
        self.append(index, &raw, &h, now_ms)
    }
}

/// Every stream, by namespace and name.
pub struct Streams {
    clock: Arc<dyn Clock>,
    logs: Arc<dyn LogStore>,
    ids: RandomIds,
    by_namespace: RwLock<HashMap<String, HashMap<String, Arc<Stream>>>>,
    next_id: AtomicU64,
    next_producer_id: AtomicI64,
    partitions: AtomicUsize,
    max_partitions: AtomicUsize,
    /// Told of every deletion, whichever face asked for it (the broker
    /// removes the bindings routing into the stream).
    on_delete: std::sync::OnceLock<DeleteHook>,
}

type DeleteHook = Box<dyn Fn(&str, &str) + Send + Sync>;

impl Streams {
    /// Opens every stream `logs` holds.
    pub fn open(
        clock: Arc<dyn Clock>,
        logs: Arc<dyn LogStore>,
    ) -> Result<Arc<Streams>, StreamError> {
        let now = clock.now().as_millis();
        let streams = Streams {
            clock,
            logs,
            ids: RandomIds::new(),
            by_namespace: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            // Producer ids must not repeat across restarts: start from the
            // clock (in microseconds' worth of room per millisecond), past
            // any id found in the logs.
            next_producer_id: AtomicI64::new((now as i64).saturating_mul(1000)),
            partitions: AtomicUsize::new(0),
            max_partitions: AtomicUsize::new(usize::MAX),
            on_delete: std::sync::OnceLock::new(),
        };
        let mut metas = streams.logs.streams()?;
        metas.sort_by_key(|m| m.id);
        for meta in metas {
            streams.next_id.fetch_max(meta.id + 1, Ordering::Relaxed);
            let stream = streams.open_stream(meta.clone(), now)?;
            write(&streams.by_namespace)
                .entry(meta.namespace.clone())
                .or_default()
                .insert(meta.name.clone(), stream);
        }
        Ok(Arc::new(streams))
    }

    /// Streams in memory only, on the system clock.
    pub fn in_memory() -> Arc<Streams> {
        Streams::open(Arc::new(SystemClock::new()), Arc::new(MemoryLogs::new()))
            .unwrap_or_else(|e| unreachable!("empty memory logs failed to open: {e}"))
    }

    fn open_stream(&self, meta: StreamMeta, now_ms: u64) -> Result<Arc<Stream>, StreamError> {
        let mut parts = Vec::with_capacity(meta.partitions as usize);
        for i in 0..meta.partitions {
            parts.push(Arc::new(self.open_partition(&meta, i, now_ms)?));
        }
        self.partitions.fetch_add(parts.len(), Ordering::Relaxed);
        Ok(Arc::new(Stream {
            meta: RwLock::new(meta),
            count: tokio::sync::watch::channel(parts.len() as u32).0,
            partitions: RwLock::new(parts),
            gone: tokio::sync::watch::channel(false).0,
        }))
    }

    fn open_partition(
        &self,
        meta: &StreamMeta,
        i: u32,
        now_ms: u64,
    ) -> Result<Partition, StreamError> {
        let durable = Durable::new();
        let opened = self.logs.open_partition(meta, i, Arc::clone(&durable))?;
        if let Some(max) = opened.tail.iter().map(|h| h.producer_id).max() {
            self.next_producer_id
                .fetch_max(max.saturating_add(1), Ordering::Relaxed);
        }
        Ok(Partition::open(i, opened, durable, now_ms))
    }

    /// Calls `hook(namespace, name)` on every deletion from now on (set
    /// once: a second hook is ignored).
    pub fn on_delete(&self, hook: impl Fn(&str, &str) + Send + Sync + 'static) {
        let _ = self.on_delete.set(Box::new(hook));
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Limits the partitions of all streams together.
    pub fn set_max_partitions(&self, limit: usize) {
        self.max_partitions.store(limit, Ordering::Relaxed);
    }

    /// Creates a stream of `partitions` partitions. Blocks on the store
    /// (the metadata is written durably before it is answered).
    pub fn create(
        &self,
        namespace: &str,
        name: &str,
        partitions: u32,
        config: StreamConfig,
    ) -> Result<Arc<Stream>, StreamError> {
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(StreamError::InvalidName(name.to_owned()));
        }
        if partitions == 0 || partitions > MAX_PARTITIONS_PER_STREAM {
            return Err(StreamError::InvalidPartitions(i64::from(partitions)));
        }
        // What is stored is read back through `StreamConfig::set` on the
        // next start: a config it would refuse must not be stored.
        for (key, value, _) in config.entries() {
            StreamConfig::default()
                .set(key, &value)
                .map_err(StreamError::InvalidConfig)?;
        }
        let mut map = write(&self.by_namespace);
        let ns = map.entry(namespace.to_owned()).or_default();
        if ns.contains_key(name) {
            return Err(StreamError::StreamExists(name.to_owned()));
        }
        let max = self.max_partitions.load(Ordering::Relaxed);
        if self.partitions.load(Ordering::Relaxed) + partitions as usize > max {
            return Err(StreamError::TooManyPartitions(max));
        }
        let now = self.clock.now().as_millis();
        let mut topic_id = self.ids.next_id().0;
        if topic_id == 0 {
            topic_id = 1;
        }
        let meta = StreamMeta {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            topic_id,
            partitions,
            config,
            created_ms: now,
        };
        self.logs.create_stream(&meta)?;
        let stream = self.open_stream(meta, now)?;
        ns.insert(name.to_owned(), Arc::clone(&stream));
        tracing::info!(namespace, stream = name, partitions, "stream created");
        Ok(stream)
    }

    /// Deletes a stream and its logs.
    pub fn delete(&self, namespace: &str, name: &str) -> Result<(), StreamError> {
        let stream = {
            let mut map = write(&self.by_namespace);
            let ns = map
                .get_mut(namespace)
                .ok_or_else(|| StreamError::UnknownStream(name.to_owned()))?;
            ns.remove(name)
                .ok_or_else(|| StreamError::UnknownStream(name.to_owned()))?
        };
        self.partitions
            .fetch_sub(stream.partition_count() as usize, Ordering::Relaxed);
        stream.gone.send_replace(true);
        if let Some(hook) = self.on_delete.get() {
            hook(namespace, name);
        }
        self.logs.delete_stream(stream.id())?;
        tracing::info!(namespace, stream = name, "stream deleted");
        Ok(())
    }

    /// Adds partitions to a stream, up to `total`.
    pub fn add_partitions(
        &self,
        namespace: &str,
        name: &str,
        total: u32,
    ) -> Result<(), StreamError> {
        let stream = self
            .get(namespace, name)
            .ok_or_else(|| StreamError::UnknownStream(name.to_owned()))?;
        let mut parts = write(&stream.partitions);
        let have = parts.len() as u32;
        if total <= have || total > MAX_PARTITIONS_PER_STREAM {
            return Err(StreamError::InvalidPartitions(i64::from(total)));
        }
        let max = self.max_partitions.load(Ordering::Relaxed);
        if self.partitions.load(Ordering::Relaxed) + (total - have) as usize > max {
            return Err(StreamError::TooManyPartitions(max));
        }
        // The metadata is read, written and replaced under its lock (as
        // set_config does), so a config change at the same time is
        // neither lost nor written with the old partition count.
        let mut current = write(&stream.meta);
        let mut meta = current.clone();
        meta.partitions = total;
        self.logs.update_stream(&meta)?;
        let now = self.clock.now().as_millis();
        for i in have..total {
            parts.push(Arc::new(self.open_partition(&meta, i, now)?));
            self.partitions.fetch_add(1, Ordering::Relaxed);
        }
        *current = meta;
        drop((current, parts));
        stream.count.send_replace(total);
        Ok(())
    }

    /// Replaces a stream's config (durably).
    pub fn set_config(
        &self,
        namespace: &str,
        name: &str,
        config: StreamConfig,
    ) -> Result<(), StreamError> {
        self.update_config(namespace, name, |_| Ok(config))
    }

    /// Changes a stream's config with `change` (given the current one)
    /// and writes it durably, all under the stream's metadata lock, so
    /// changes at the same time apply one after the other.
    pub fn update_config<E: From<StreamError>>(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&StreamConfig) -> Result<StreamConfig, E>,
    ) -> Result<(), E> {
        let stream = self
            .get(namespace, name)
            .ok_or_else(|| StreamError::UnknownStream(name.to_owned()))?;
        let mut meta = write(&stream.meta);
        let mut next = meta.clone();
        next.config = change(&meta.config)?;
        self.logs.update_stream(&next).map_err(StreamError::from)?;
        *meta = next;
        Ok(())
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Stream>> {
        read(&self.by_namespace).get(namespace)?.get(name).cloned()
    }

    /// A namespace's streams, by name.
    pub fn list(&self, namespace: &str) -> Vec<Arc<Stream>> {
        let map = read(&self.by_namespace);
        let mut v: Vec<(String, Arc<Stream>)> = map
            .get(namespace)
            .map(|ns| ns.iter().map(|(k, s)| (k.clone(), Arc::clone(s))).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Every stream of every namespace.
    pub fn all(&self) -> Vec<Arc<Stream>> {
        read(&self.by_namespace)
            .values()
            .flat_map(|ns| ns.values().cloned())
            .collect()
    }

    /// A producer id never handed out before (for InitProducerId).
    pub fn new_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes every partition's recovery point, so a restart scans only
    /// what was appended since (run every few seconds; file work, so off
    /// the runtime's threads). Failures are logged: a partition without a
    /// point is scanned whole.
    pub fn checkpoint(&self) {
        if let Err(e) = self.logs.checkpoint() {
            tracing::warn!(error = %e, "a recovery point was not written");
        }
    }

    /// Writes and syncs what is pending and checkpoints every partition
    /// (at shutdown; appends fail from now on).
    pub fn close(&self) {
        self.logs.close();
    }

    /// Applies every stream's retention (run every few minutes).
    pub fn enforce_retention(&self) {
        let now = self.clock.now().as_millis() as i64;
        for s in self.all() {
            let config = s.config();
            for p in s.partitions() {
                if let Err(e) = p.retain(&config, now) {
                    tracing::warn!(stream = %s.name(), partition = p.index(), error = %e, "retention failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
