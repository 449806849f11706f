//! A stream consumer's reader: one task per partition (partitions added
//! later get theirs as they appear), reading the log
//! from where the consumer starts and sending records to the connection
//! as messages while the consumer has credit (its prefetch count, given
//! back one by one as deliveries are settled).
//!
//! Invariants: a record is sent once, in offset order per partition, and
//! never before it is durable (the partition reads only below its durable
//! end); a task holds no lock across an await.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_core::Value;
use ferry_core::stream::{Partition, Stream, StreamError, batch, message};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::arguments::Start;
use super::{OFFSET_HEADER, PARTITION_HEADER};
use crate::events::{ChannelRef, Event, Events};

/// Bytes asked of the log per read.
const READ_BYTES: usize = 1 << 20;
/// Most messages in one event (bounds one turn of the connection's work).
const MAX_PER_EVENT: usize = 256;
/// Bytes of records one fill takes at most (past the batch that crosses
/// it): a 1 MiB read of compressed batches may inflate to far more.
const FILL_BUDGET: usize = 16 << 20;

/// Who the reader works for.
pub struct Target {
    pub namespace: String,
    pub stream: Arc<Stream>,
    pub events: Events,
    pub to: ChannelRef,
    pub consumer: u64,
    pub credit: Arc<Semaphore>,
}

/// The readers of one consumer; dropping it stops them.
pub struct Readers(JoinHandle<()>);

impl Drop for Readers {
    fn drop(&mut self) {
        // Aborting the supervisor drops its JoinSet, which aborts every
        // partition's reader.
        self.0.abort();
    }
}

/// Starts one reader per partition of the target's stream, and one more
/// for each partition added while the consumer lives.
pub fn start(target: Target, start: Start) -> Readers {
    Readers(tokio::spawn(supervise(Arc::new(target), start)))
}

/// Runs the partitions' readers, starting one for each partition added to
/// the stream later. Those start from their first record when the
/// consumer asked for `next` or `last` (everything in them is newer than
/// the consumer), and as asked otherwise.
async fn supervise(t: Arc<Target>, start: Start) {
    let mut readers = tokio::task::JoinSet::new();
    let mut have = 0usize;
    let mut later = start;
    // Once a stream has several partitions, every message read from then
    // on says which it came from.
    let several = Arc::new(AtomicBool::new(false));
    loop {
        let partitions = t.stream.partitions();
        if partitions.len() > 1 {
            several.store(true, Ordering::Relaxed);
        }
        for p in partitions.into_iter().skip(have) {
            have += 1;
            readers.spawn(read(Arc::clone(&t), p, later, Arc::clone(&several)));
        }
        later = match start {
            Start::Next | Start::Last => Start::First,
            other => other,
        };
        tokio::select! {
            () = t.stream.grown_past(have as u32) => {}
            () = t.stream.deleted() => break,
            ended = readers.join_next() => {
                // A reader that returned has reported why, if it had to
                // (the consumer is gone, or cancelled, which drops this
                // task and its readers). One that panicked has not: the
                // consumer cannot go on without its partition.
                if let Some(Err(e)) = ended {
                    gone(&t, &format!("a partition reader failed: {e}"));
                }
                break;
            }
        }
    }
    // The rest end as the consumer does (on a deletion each reports it).
    while readers.join_next().await.is_some() {}
}

/// The offset a consumer starting at `start` reads first.
fn first_offset(p: &Partition, start: Start) -> Result<u64, StreamError> {
    let (low, end) = (p.log_start(), p.high_watermark());
    Ok(match start {
        Start::First => low,
        Start::Next => end,
        Start::Offset(o) => o.clamp(low, end),
        Start::Last => {
            if end == low {
                end
            } else {
                // The newest batch, from its first record.
                let f = p.read(end - 1, 1)?;
                batch::headers(&f.records)
                    .last()
                    .map_or(end, |(_, h)| (h.base_offset.max(0) as u64).max(low))
            }
        }
        Start::Time(ms) => p.offset_for_time(ms)?.map_or(end, |(o, _)| o.max(low)),
    })
}

async fn read(t: Arc<Target>, p: Arc<Partition>, start: Start, several: Arc<AtomicBool>) {
    let mut next = match first_offset(&p, start) {
        Ok(o) => o,
        Err(e) => return gone(&t, &e.to_string()),
    };
    let mut pending: VecDeque<ferry_core::Message> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match fill(&p, &mut next, &mut pending, several.load(Ordering::Relaxed)) {
                Ok(true) => {}
                Ok(false) => {
                    // Nothing read below the end should not happen; if it
                    // does, it must not spin a worker.
                    if p.high_watermark() > next {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    if !wait_for_more(&t, &p, next).await {
                        return gone(&t, "the stream was deleted");
                    }
                    continue;
                }
                Err(e) => return gone(&t, &e),
            }
        }
        // At least one credit; then as many more as are free now. A
        // deletion ends the wait.
        let permit = tokio::select! {
            p = t.credit.acquire() => p,
            () = t.stream.deleted() => return gone(&t, "the stream was deleted"),
        };
        let Ok(permit) = permit else {
            return;
        };
        permit.forget();
        let mut out = Vec::with_capacity(pending.len().min(MAX_PER_EVENT));
        out.extend(pending.pop_front());
        while out.len() < MAX_PER_EVENT && !pending.is_empty() {
            let Ok(p) = t.credit.try_acquire() else { break };
            p.forget();
            out.extend(pending.pop_front());
        }
        let ev = Event::StreamDeliver {
            to: t.to,
            consumer: t.consumer,
            messages: out,
        };
        if t.events.send(ev).is_err() {
            return;
        }
    }
}

/// Reads what follows `next` into `pending` (as messages, each with its
/// offset header), moving `next` past it. False: nothing there yet.
fn fill(
    p: &Partition,
    next: &mut u64,
    pending: &mut VecDeque<ferry_core::Message>,
    several: bool,
) -> Result<bool, String> {
    loop {
        let fetched = match p.read(*next, READ_BYTES) {
            Ok(f) => f,
            // Retention went past the reader: go on from what is left.
            Err(StreamError::OffsetOutOfRange { start, end, .. }) if *next < start => {
                *next = start.min(end);
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        if fetched.records.is_empty() {
            return Ok(false);
        }
        let before = *next;
        // Inflated records stay alive in `pending` (keys and values are
        // slices of their batch), so one fill stops after the batch that
        // passes this budget; `next` has moved past each batch taken.
        let mut inflated = 0usize;
        for (at, h) in batch::headers(&fetched.records) {
            if inflated >= FILL_BUDGET {
                break;
            }
            let raw = fetched.records.slice(at..at + h.size);
            // A batch its producer compressed is inflated here, per read;
            // one that cannot be read ends the consumer (its reason logged)
            // rather than skip records silently.
            let records =
                batch::records(&raw).map_err(|e| format!("offset {}: {e}", h.base_offset))?;
            inflated += records
                .iter()
                .map(|r| {
                    r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len())
                })
                .sum::<usize>()
                + records.len();
            for r in records {
                match u64::try_from(r.offset) {
                    Ok(offset) if offset >= *next => {}
                    _ => continue,
                }
                let mut m = message::message_of(&r);
                m.headers.insert(OFFSET_HEADER, Value::Int(r.offset));
                if several {
                    m.headers
                        .insert(PARTITION_HEADER, Value::Int(i64::from(p.index())));
                }
                pending.push_back(m);
            }
            *next = (*next).max(h.last_offset().max(0) as u64 + 1);
        }
        if !pending.is_empty() {
            return Ok(true);
        }
        if *next == before {
            // The log handed back bytes that hold no whole batch.
            return Err(format!("offset {before}: the log returned no whole batch"));
        }
        // Only records before `next` (the start of the batch holding it):
        // read on from past them.
    }
}

/// Waits until the partition ends past `next`. False: the stream is gone.
async fn wait_for_more(t: &Target, p: &Partition, next: u64) -> bool {
    let durable = p.durable();
    let arrived = durable.arrivals();
    tokio::pin!(arrived);
    arrived.as_mut().enable();
    if durable.end() > next {
        return true;
    }
    tokio::select! {
        () = arrived => true,
        () = t.stream.deleted() => false,
    }
}

/// The consumer cannot go on: the connection cancels it (basic.cancel to
/// clients that take it) and the reason is logged.
fn gone(t: &Target, why: &str) {
    tracing::warn!(namespace = %t.namespace, stream = %t.stream.name(), reason = why, "stream consumer cancelled");
    let _ = t.events.send(Event::ConsumerGone {
        to: t.to,
        consumer: t.consumer,
    });
}
