//! One partition: the offsets it hands out, its producers' sequences, and
//! its log. Appends hold the partition's lock only to check sequences,
//! take offsets and hand the batch to the log (which does no I/O there);
//! reads take no lock of the partition at all.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;

use super::batch::{self, BatchHeader, Compression};
use super::config::{StreamConfig, TimestampType};
use super::error::StreamError;
use super::log::{Durable, OpenedLog, PartitionLog};
use super::producer::{Producers, Sequence};
use crate::store::Commit;

pub struct Partition {
    index: u32,
    log: Arc<dyn PartitionLog>,
    durable: Arc<Durable>,
    state: Mutex<State>,
}

struct State {
    /// The offset the next batch gets. At or past `durable.end()`: the gap
    /// is what is appended and not yet durable.
    next_offset: u64,
    producers: Producers,
}

/// An append's answer.
#[derive(Debug)]
pub struct Appended {
    /// The offset of the batch's first record (the original's, for a retry).
    pub base_offset: u64,
    /// The broker's time the batch was stamped with, on a log-append-time
    /// stream.
    pub log_append_time: Option<i64>,
    /// Completes once the batch is durable.
    pub commit: Commit,
}

/// What a read found.
#[derive(Debug)]
pub struct Fetched {
    /// Whole batches as stored, from the one holding the offset asked for.
    pub records: Bytes,
    pub high_watermark: u64,
    pub log_start: u64,
}

impl Partition {
    pub(super) fn open(index: u32, opened: OpenedLog, durable: Arc<Durable>, now_ms: u64) -> Self {
        let mut producers = Producers::default();
        for h in opened.tail.iter().filter(|h| h.is_idempotent()) {
            producers.record(h, h.base_offset as u64, Commit::done(), now_ms);
        }
        Partition {
            index,
            log: opened.log,
            durable,
            state: Mutex::new(State {
                next_offset: opened.next_offset,
                producers,
            }),
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// The offset after the last durable record (Kafka's high watermark).
    pub fn high_watermark(&self) -> u64 {
        self.durable.end()
    }

    /// The first offset still held.
    pub fn log_start(&self) -> u64 {
        self.durable.start()
    }

    pub fn durable(&self) -> &Arc<Durable> {
        &self.durable
    }

    /// Bytes the partition's log holds.
    pub fn size(&self) -> u64 {
        self.log.size()
    }

    /// Appends one validated batch (from [`batch::split`]).
    pub fn append(
        &self,
        raw: &[u8],
        h: &BatchHeader,
        config: &StreamConfig,
        now_ms: i64,
    ) -> Result<Appended, StreamError> {
        if h.size > config.max_message_bytes as usize {
            return Err(StreamError::BatchTooLarge {
                size: h.size,
                max: config.max_message_bytes,
            });
        }
        if h.is_transactional() || h.is_control() {
            return Err(StreamError::Transactional);
        }
        let append_time = (config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let mut st = super::lock(&self.state);
        if h.is_idempotent()
            && let Sequence::Duplicate {
                base_offset,
                commit,
            } = st.producers.check(h)?
        {
            return Ok(Appended {
                base_offset,
                log_append_time: append_time,
                commit,
            });
        }
        let base = st.next_offset;
        let stamped = batch::stamp(raw, base, 0, append_time);
        let stored = BatchHeader::parse(&stamped)?;
        let commit = self.log.append(stamped, &stored)?;
        st.next_offset = base + h.record_count as u64;
        if h.is_idempotent() {
            st.producers
                .record(h, base, commit.clone(), now_ms.max(0) as u64);
        }
        Ok(Appended {
            base_offset: base,
            log_append_time: append_time,
            commit,
        })
    }

    /// Whole batches from `offset` (up to `max_bytes`, at least one batch),
    /// all durable. Reading at the end gives nothing; outside the log, an
    /// error with the log's bounds.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Fetched, StreamError> {
        let end = self.durable.end();
        let start = self.durable.start();
        if offset < start || offset > end {
            return Err(StreamError::OffsetOutOfRange { offset, start, end });
        }
        let records = if offset == end {
            Bytes::new()
        } else {
            self.log.read(offset, end, max_bytes)?
        };
        Ok(Fetched {
            records,
            high_watermark: end,
            log_start: start,
        })
    }

    /// The first record at or after `ts` (its offset and timestamp), or
    /// `None` if every record is older. A compressed batch is answered
    /// with its first offset and newest timestamp.
    pub fn offset_for_time(&self, ts: i64) -> Result<Option<(u64, i64)>, StreamError> {
        let end = self.durable.end();
        let Some(b) = self.log.find_time(ts, end)? else {
            return Ok(None);
        };
        let h = BatchHeader::parse(&b)?;
        if h.compression() == Compression::None
            && let Ok(records) = batch::records(&b)
            && let Some(r) = records
                .iter()
                .find(|r| r.timestamp >= ts && r.offset as u64 >= self.log_start())
        {
            return Ok(Some((r.offset as u64, r.timestamp)));
        }
        // Never an offset before the log start (DeleteRecords may have put
        // it inside this batch).
        Ok(Some((
            (h.base_offset.max(0) as u64).max(self.log_start()),
            h.max_timestamp,
        )))
    }

    /// The record with the newest timestamp (the first such, by offset),
    /// as ListOffsets' MAX_TIMESTAMP asks: its offset and timestamp, or
    /// `None` for an empty log. In a compressed batch, its last offset.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(u64, i64)>, StreamError> {
        let Some(ts) = self.log.max_timestamp() else {
            return Ok(None);
        };
        let Some(b) = self.log.find_time(ts, self.durable.end())? else {
            return Ok(None);
        };
        let h = BatchHeader::parse(&b)?;
        if h.compression() == Compression::None
            && let Ok(records) = batch::records(&b)
            && let Some(r) = records.iter().find(|r| r.timestamp == h.max_timestamp)
        {
            return Ok(Some((
                (r.offset.max(0) as u64).max(self.log_start()),
                r.timestamp,
            )));
        }
        Ok(Some((
            (h.last_offset().max(0) as u64).max(self.log_start()),
            h.max_timestamp,
        )))
    }

    /// Kafka's DeleteRecords: records before `before` go for good (`None`:
    /// all that are durable now). Returns the log's new start. An offset
    /// past the durable end is refused; one below the start changes
    /// nothing. Blocks on the store.
    pub fn delete_records(&self, before: Option<u64>) -> Result<u64, StreamError> {
        let (start, end) = (self.durable.start(), self.durable.end());
        let before = before.unwrap_or(end);
        if before > end {
            return Err(StreamError::OffsetOutOfRange {
                offset: before,
                start,
                end,
            });
        }
        if before > start {
            self.log.delete_before(before)?;
        }
        Ok(self.durable.start())
    }

    /// Retention, and forgetting producers idle for a day.
    pub(super) fn retain(&self, config: &StreamConfig, now_ms: i64) -> Result<(), StreamError> {
        self.log
            .retain(now_ms, config.retention_ms, config.retention_bytes)?;
        let day = 24 * 3600 * 1000;
        super::lock(&self.state)
            .producers
            .expire((now_ms - day).max(0) as u64);
        Ok(())
    }
}

/// Resolves once one of `durables` ends past its offset in `past` (a
/// fetch's long poll over several partitions).
pub async fn any_arrival(durables: &[(Arc<Durable>, u64)]) {
    loop {
        let mut waits: Vec<_> = durables
            .iter()
            .map(|(d, _)| Box::pin(d.arrivals()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        if durables.iter().any(|(d, past)| d.end() > *past) {
            return;
        }
        std::future::poll_fn(|cx| {
            let mut any = false;
            for w in &mut waits {
                if w.as_mut().poll(cx).is_ready() {
                    any = true;
                }
            }
            if any { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }
}
