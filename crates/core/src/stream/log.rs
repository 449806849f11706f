//! The storage boundary of the streams engine: one append-only log per
//! partition, and the store that keeps streams' metadata and opens their
//! logs. The durable implementation is `ferry-storage`'s segment log;
//! [`MemoryLogs`] keeps everything in memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::batch::BatchHeader;
use super::config::StreamConfig;
use crate::store::{Commit, StoreError};

/// How far one partition's log is durable, shared by the partition and its
/// log. The log moves `end` past a batch only once it is durable (so a
/// reader never sees a record a crash could take back, and offsets a reader
/// has seen are never handed out again), and wakes fetches waiting for it.
#[derive(Debug, Default)]
pub struct Durable {
    end: AtomicU64,
    start: AtomicU64,
    arrivals: Notify,
}

impl Durable {
    pub fn new() -> Arc<Durable> {
        Arc::new(Durable::default())
    }

    /// The offset after the last durable record: Kafka's high watermark.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// The first offset still in the log.
    pub fn start(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    /// Records up to `end` are durable; wakes waiting fetches.
    pub fn advance(&self, end: u64) {
        if self.end.fetch_max(end, Ordering::AcqRel) < end {
            self.arrivals.notify_waiters();
        }
    }

    /// Retention or recovery moved the log's start.
    pub fn set_start(&self, start: u64) {
        self.start.fetch_max(start, Ordering::AcqRel);
    }

    /// Resolves when the end moves (create it before checking the end).
    pub fn arrivals(&self) -> tokio::sync::futures::Notified<'_> {
        self.arrivals.notified()
    }
}

/// What a stream's metadata holds: enough to reopen it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMeta {
    /// Names its files; never reused.
    pub id: u64,
    pub namespace: String,
    pub name: String,
    /// Kafka's topic id (a UUID).
    pub topic_id: u128,
    pub partitions: u32,
    pub config: StreamConfig,
    pub created_ms: u64,
}

/// One partition's log.
pub trait PartitionLog: Send + Sync + 'static {
    /// Appends one stamped batch after the last. The caller holds the
    /// partition's lock, so batches come in offset order. Never blocks on
    /// I/O: the commit completes once the batch is durable, by which time
    /// [`Durable::end`] has passed it.
    fn append(&self, batch: Bytes, header: &BatchHeader) -> Result<Commit, StoreError>;

    /// Whole batches, from the one holding `offset`, all before `end`, up to
    /// `max_bytes` in all but always at least one when there is one. Empty
    /// when nothing at or after `offset` is there (yet).
    fn read(&self, offset: u64, end: u64, max_bytes: usize) -> Result<Bytes, StoreError>;

    /// The first batch before `end` whose newest timestamp is at or after
    /// `ts`.
    fn find_time(&self, ts: i64, end: u64) -> Result<Option<Bytes>, StoreError>;

    /// The newest timestamp of any batch the log holds (`None`: empty).
    fn max_timestamp(&self) -> Option<i64>;

    /// Deletes whole segments that retention lets go (never the one being
    /// written), moving the log's start.
    fn retain(
        &self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Moves the log's start to `offset` (at most the durable end) for
    /// good, as Kafka's DeleteRecords does: reads below it are refused from
    /// now on and after a restart, and segments wholly before it go
    /// (never the one being written). Blocks until the new start is durable.
    fn delete_before(&self, offset: u64) -> Result<(), StoreError>;

    /// Bytes the log holds.
    fn size(&self) -> u64;
}

/// A partition's log as found on opening.
pub struct OpenedLog {
    pub log: Arc<dyn PartitionLog>,
    /// The offset the next batch gets.
    pub next_offset: u64,
    /// The headers of the newest batches (oldest first), from which
    /// idempotent producers' sequences are rebuilt.
    pub tail: Vec<BatchHeader>,
}

/// Where streams live.
pub trait LogStore: Send + Sync + 'static {
    /// Makes a new stream's metadata durable (blocking: an admin action).
    fn create_stream(&self, meta: &StreamMeta) -> Result<(), StoreError>;
    /// Replaces a stream's metadata (a config change, more partitions).
    fn update_stream(&self, meta: &StreamMeta) -> Result<(), StoreError>;
    /// Deletes a stream and its logs.
    fn delete_stream(&self, id: u64) -> Result<(), StoreError>;
    /// Every stream stored, to reopen.
    fn streams(&self) -> Result<Vec<StreamMeta>, StoreError>;
    /// Opens (creating if new) one partition's log, setting `durable`'s
    /// start and end to what is there.
    fn open_partition(
        &self,
        meta: &StreamMeta,
        partition: u32,
        durable: Arc<Durable>,
    ) -> Result<OpenedLog, StoreError>;
    /// Records how far each partition is known good, so the next opening
    /// checks only what comes after (run every few seconds).
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Writes and syncs what is pending, then checkpoints; appends after
    /// this fail.
    fn close(&self) {}
}

/// Streams kept in memory only.
#[derive(Default)]
pub struct MemoryLogs {
    metas: Mutex<BTreeMap<u64, StreamMeta>>,
}

impl MemoryLogs {
    pub fn new() -> Self {
        Self::default()
    }
}

impl LogStore for MemoryLogs {
    fn create_stream(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        super::lock(&self.metas).insert(meta.id, meta.clone());
        Ok(())
    }

    fn update_stream(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        self.create_stream(meta)
    }

    fn delete_stream(&self, id: u64) -> Result<(), StoreError> {
        super::lock(&self.metas).remove(&id);
        Ok(())
    }

    fn streams(&self) -> Result<Vec<StreamMeta>, StoreError> {
        Ok(super::lock(&self.metas).values().cloned().collect())
    }

    fn open_partition(
        &self,
        _meta: &StreamMeta,
        _partition: u32,
        durable: Arc<Durable>,
    ) -> Result<OpenedLog, StoreError> {
        Ok(OpenedLog {
            log: Arc::new(MemoryLog {
                durable,
                batches: Mutex::new(Vec::new()),
            }),
            next_offset: 0,
            tail: Vec::new(),
        })
    }
}

/// One partition in memory: its batches, durable as soon as appended.
struct MemoryLog {
    durable: Arc<Durable>,
    /// (base offset, last offset, newest timestamp, batch), in offset order.
    batches: Mutex<Vec<(u64, u64, i64, Bytes)>>,
}

impl PartitionLog for MemoryLog {
    fn append(&self, batch: Bytes, h: &BatchHeader) -> Result<Commit, StoreError> {
        let base = h.base_offset as u64;
        let last = h.last_offset() as u64;
        super::lock(&self.batches).push((base, last, h.max_timestamp, batch));
        self.durable.advance(last + 1);
        Ok(Commit::done())
    }

    fn read(&self, offset: u64, end: u64, max_bytes: usize) -> Result<Bytes, StoreError> {
        let g = super::lock(&self.batches);
        let first = g.partition_point(|(_, last, _, _)| *last < offset);
        let mut out = BytesMut::new();
        for (base, _, _, b) in g.iter().skip(first) {
            if *base >= end || (!out.is_empty() && out.len() + b.len() > max_bytes) {
                break;
            }
            out.extend_from_slice(b);
        }
        Ok(out.freeze())
    }

    fn find_time(&self, ts: i64, end: u64) -> Result<Option<Bytes>, StoreError> {
        let g = super::lock(&self.batches);
        Ok(g.iter()
            .find(|(base, _, max, _)| *base < end && *max >= ts)
            .map(|(_, _, _, b)| b.clone()))
    }

    fn retain(
        &self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut g = super::lock(&self.batches);
        let mut size: u64 = g.iter().map(|(_, _, _, b)| b.len() as u64).sum();
        let mut drop = 0;
        // In memory a batch plays the part of a segment; the newest stays.
        while drop + 1 < g.len() {
            let (_, _, max_ts, b) = &g[drop];
            let old = retention_ms.is_some_and(|r| *max_ts < now_ms.saturating_sub(r));
            let big = retention_bytes.is_some_and(|r| size - b.len() as u64 >= r);
            if !(old || big) {
                break;
            }
            size -= b.len() as u64;
            drop += 1;
        }
        g.drain(..drop);
        if let Some((base, _, _, _)) = g.first() {
            self.durable.set_start(*base);
        }
        Ok(())
    }

    fn max_timestamp(&self) -> Option<i64> {
        super::lock(&self.batches)
            .iter()
            .map(|(_, _, ts, _)| *ts)
            .max()
    }

    fn delete_before(&self, offset: u64) -> Result<(), StoreError> {
        let mut g = super::lock(&self.batches);
        // The newest batch stays, as the segment being written does.
        let keep_from = g
            .iter()
            .position(|(_, last, _, _)| *last >= offset)
            .unwrap_or(g.len())
            .min(g.len().saturating_sub(1));
        g.drain(..keep_from);
        self.durable.set_start(offset);
        Ok(())
    }

    fn size(&self) -> u64 {
        super::lock(&self.batches)
            .iter()
            .map(|(_, _, _, b)| b.len() as u64)
            .sum()
    }
}
