//! One timer for the whole broker: a heap of (deadline, queue), so queues
//! that nobody touches still see delays end, leases expire and TTLs run out
//! on time (and push consumers and long-poll waiters hear of it).

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::clock::Timestamp;

use super::{Broker, QueueHandle, lock};

struct Due {
    at: Timestamp,
    queue: Arc<QueueHandle>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
pub(super) struct Timers {
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    /// Wakes the timer task when an earlier deadline arrives.
    changed: Notify,
}

impl Broker {
    /// Makes sure `q` is ticked at `next` (if earlier than already planned).
    pub(super) fn schedule(&self, q: &Arc<QueueHandle>, next: Option<Timestamp>) {
        let Some(at) = next else { return };
        let prev = q.scheduled.fetch_min(at.as_millis(), Ordering::AcqRel);
        if at.as_millis() >= prev {
            return;
        }
        let earliest = {
            let mut heap = lock(&self.timers.heap);
            heap.push(Reverse(Due {
                at,
                queue: Arc::clone(q),
            }));
            heap.peek().is_some_and(|Reverse(d)| d.at == at)
        };
        if earliest {
            self.timers.changed.notify_one();
        }
    }

    /// Wakes the timer task to look again (a dead letter's stream append
    /// now waits to be settled).
    pub(super) fn wake_timers(&self) {
        self.timers.changed.notify_one();
    }

    /// Ticks every queue whose deadline has passed; returns how many.
    /// [`Broker::run_timers`] calls it; tests with a fake clock call it directly.
    pub fn fire_timers(&self) -> usize {
        self.settle_stream_removals();
        let now = self.clock.now();
        let mut due = Vec::new();
        {
            let mut heap = lock(&self.timers.heap);
            while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                if let Some(Reverse(d)) = heap.pop() {
                    due.push(d.queue);
                }
            }
        }
        for q in &due {
            if q.is_deleted() {
                continue;
            }
            q.scheduled.store(u64::MAX, Ordering::Release);
            // Time-driven changes answer nobody.
            let _unanswered = self.op(q, |core, now, fx| core.tick(now, fx));
        }
        due.len()
    }

    fn next_timer(&self) -> Option<Timestamp> {
        lock(&self.timers.heap).peek().map(|Reverse(d)| d.at)
    }

    /// Runs the broker's timer until the broker is dropped elsewhere and
    /// this task is aborted. Spawn it once per broker.
    pub async fn run_timers(self: Arc<Self>) {
        // How often dead letters' stream appends are checked while some
        // wait (their removals are journaled once those are durable).
        const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
        loop {
            self.fire_timers();
            let changed = self.timers.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.settle_stream_removals() {
                let now = self.clock.now();
                let next = now.plus(SETTLE_EVERY);
                if self.next_timer().is_none_or(|at| at > next) {
                    // Durability is not broker time: a real sleep, so a
                    // test's fake clock does not hold removals back.
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE_EVERY) => {}
                        _ = changed => {}
                    }
                    continue;
                }
            }
            match self.next_timer() {
                Some(at) if at <= self.clock.now() => continue,
                Some(at) => {
                    let sleep = self.clock.sleep_until(at);
                    tokio::select! {
                        _ = sleep => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}
