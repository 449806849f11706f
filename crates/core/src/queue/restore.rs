//! Putting recovered messages back (the broker's recovery drives this).
//!
//! Replay parks each message in the slab as its record is read, indexed
//! nowhere: later records may remove it or change its delivery count, and
//! copies written by compaction may come after younger messages. Once
//! replay ends, the survivors are placed in sequence order under the
//! queue's final settings. Parking in the queue itself, rather than in a
//! map of its own, keeps recovery's memory at what the queue will hold.

use std::cmp::Reverse;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::message::Message;
use crate::store::Location;

use super::packed::{MaybeLoc, MaybeTime};
use super::{DedupWindow, Effects, Entry, QueueConfig, QueueCore, ReadyIndex, State};

impl QueueCore {
    /// Replaces the settings while messages are parked (nothing is placed
    /// yet, so the indexes can be built anew for them).
    pub fn restore_config(&mut self, config: QueueConfig) {
        self.ready = ReadyIndex::new(config.fifo, config.max_priority);
        // Each segment's checkpoint declares the queue again: what replay
        // has remembered so far stays while the window's settings do.
        if config.dedup != self.config.dedup || self.dedup.is_none() {
            self.dedup = config.dedup.clone().map(DedupWindow::new);
        }
        self.consumers.single_active = config.single_active_consumer;
        self.config = config;
    }

    /// Remembers a recovered message's deduplication key, as sent at `at`,
    /// unless its window is over by `now`: a send of its duplicate after a
    /// restart is refused as it would have been before (acked or not).
    pub fn restore_dedup(&mut self, msg: &Message, seq: u64, at: Timestamp, now: Timestamp) {
        // The original may be long gone; its number is still not reused.
        self.next_seq = self.next_seq.max(seq + 1);
        if let Some(d) = self.dedup.as_mut() {
            let original = super::dedup::Original {
                id: msg.id,
                seq,
                published_at: msg.published_at,
            };
            d.restore(msg, original, at, now);
        }
    }

    /// Replay is over: the deduplication window is put in expiry order.
    pub fn restore_dedup_done(&mut self) {
        if let Some(d) = self.dedup.as_mut() {
            d.restored();
        }
    }

    /// Parks a recovered message; returns its slot. With `evicted_size`,
    /// `msg` is a body-less stand-in that keeps the priority, TTL, delay
    /// and group (the body stays in the store), and this is its real size.
    pub fn restore_park(
        &mut self,
        seq: u64,
        enqueued_at: Timestamp,
        msg: Arc<Message>,
        deliveries: u32,
        loc: Option<Location>,
        evicted_size: Option<u64>,
    ) -> usize {
        self.next_seq = self.next_seq.max(seq + 1);
        let (size, evicted) = match evicted_size {
            Some(size) => (size, true),
            None => (msg.size(), false),
        };
        self.stats.bytes += size;
        if evicted {
            self.evicted += 1;
        } else {
            self.stats.resident_bytes += size;
        }
        self.slots.insert(Entry {
            seq,
            msg,
            evicted,
            size,
            group: None,
            state: State::Delayed(Timestamp::MAX),
            deliveries,
            priority: 0,
            enqueued_at,
            expires_at: MaybeTime::NONE,
            first_delivered_at: MaybeTime::NONE,
            leased_at: Timestamp(0),
            loc: MaybeLoc::new(loc),
        })
    }

    /// A later record about a parked message: its delivery count, and (for
    /// a copy written by compaction) its new location.
    pub fn restore_update(&mut self, key: usize, deliveries: u32, loc: Option<Location>) {
        if let Some(e) = self.slots.get_mut(key) {
            e.deliveries = deliveries;
            if loc.is_some() {
                e.loc = MaybeLoc::new(loc);
            }
        }
    }

    /// Drops a parked message (it was removed later in the journal).
    /// Returns the bytes of body it held in memory.
    pub fn restore_forget(&mut self, key: usize) -> u64 {
        let Some(e) = self.slots.try_remove(key) else {
            return 0;
        };
        self.stats.bytes -= e.size;
        if e.evicted {
            self.evicted -= 1;
            0
        } else {
            self.stats.resident_bytes -= e.size;
            e.size
        }
    }

    /// Places a parked message in the queue under its final settings
    /// (call in sequence order).
    ///
    /// A message delivered as often as its queue allows was in flight when
    /// the broker stopped (at the limit, a returned lease dead-letters it
    /// at once, and that removal would have been journaled). The restart
    /// ended that lease, so it is placed as a lease that ran out just now:
    /// the queue's next tick or operation dead-letters it, as a lease
    /// running out would have, and it is never handed out once more.
    pub fn restore_place(&mut self, key: usize, now: Timestamp, fx: &mut Effects) {
        let Some(e) = self.slots.get(key) else {
            return;
        };
        let (priority, expires_at, visible_at) = self.timing(&e.msg, e.enqueued_at);
        let at_limit = self
            .config
            .dead_letter
            .as_ref()
            .and_then(|p| p.max_deliveries)
            .is_some_and(|max| e.deliveries >= max);
        let stand_in = Arc::clone(&self.stand_in);
        let e = &mut self.slots[key];
        e.priority = priority;
        e.expires_at = MaybeTime::new(expires_at);
        e.state = State::Delayed(visible_at);
        if e.evicted {
            // The group stays on the entry; the shared stand-in replaces
            // the recovery's own.
            e.group = e.msg.group_id.as_deref().map(Arc::from);
            e.msg = stand_in;
        }
        if at_limit {
            e.state = State::Leased {
                deadline: MaybeTime::new(Some(now)),
                consumer: None,
            };
            e.leased_at = now;
            let seq = e.seq;
            self.stats.leased += 1;
            self.deadlines.push(Reverse((now, seq, key)));
            // Its group waits for it, as for any message in flight.
            if let ReadyIndex::Grouped(g) = &mut self.ready {
                g.hold(self.slots[key].group().unwrap_or(""));
            }
            return;
        }
        self.schedule_new(key, now, fx);
    }

    /// The store locations of every message (the store counts what is
    /// live in each of its files).
    pub fn locations(&self) -> impl Iterator<Item = Location> + '_ {
        self.slots.iter().filter_map(|(_, e)| e.loc.get())
    }
}
