//! Time-driven changes of a queue: delays ending, leases running out,
//! messages expiring, the queue itself expiring unused.

use std::cmp::Reverse;

use crate::clock::Timestamp;
use crate::message::DeathReason;

use super::{Effects, QueueCore, State};

/// Stale ready references are swept once they outnumber live ones by this much.
const COMPACT_SLACK: usize = 1024;

impl QueueCore {
    /// Brings the queue up to `now`. Every operation calls it first, so
    /// time-driven changes never wait for a timer to be observed; the
    /// broker's timer calls [`QueueCore::tick`] for queues nobody touches.
    pub fn advance(&mut self, now: Timestamp, fx: &mut Effects) {
        while let Some(&Reverse((at, seq, key))) = self.delayed.peek() {
            if at > now {
                break;
            }
            self.delayed.pop();
            let due = self
                .slots
                .get(key)
                .is_some_and(|e| e.seq == seq && e.state == State::Delayed(at));
            if due {
                self.stats.delayed -= 1;
                if !self.held_back.is_empty() {
                    // One held back unreadable: its group's hold ends.
                    self.end_hold(seq, key);
                }
                // Placed by its sequence number, among the returned ones:
                // a lane's fresh messages stay in sequence order, which is
                // what lets a put-back restore the hand-out order exactly.
                self.make_ready(key, true, fx);
            }
        }
        while let Some(&Reverse((at, seq, key))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let due = self.slots.get(key).is_some_and(|e| {
                e.seq == seq
                    && matches!(e.state, State::Leased { deadline, .. } if deadline.get() == Some(at))
            });
            if due {
                self.return_leased(key, now, fx);
            }
        }
        let mut expired_any = false;
        while let Some(&Reverse((at, seq, key))) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            // A leased message is not taken from its consumer; it expires
            // if it comes back (see `return_leased`).
            let due = self.slots.get(key).is_some_and(|e| {
                e.seq == seq && matches!(e.state, State::Ready | State::Delayed(_))
            });
            if due {
                self.remove(key, Some(DeathReason::Expired), now, fx);
                expired_any = true;
            }
        }
        self.compact_timed();
        if expired_any && self.ready.refs() > 2 * self.stats.ready as usize + COMPACT_SLACK {
            let slots = &self.slots;
            self.ready.compact(&mut |(seq, key)| {
                slots
                    .get(key)
                    .is_some_and(|e| e.seq == seq && e.state == State::Ready)
            });
        }
        if let Some(ttl) = self.config.expires
            && self.consumers.list.is_empty()
            && now >= self.last_used.plus(ttl)
        {
            fx.delete_queue = true;
        }
    }

    /// Sweeps stale entries out of the time heaps once they outnumber live
    /// ones: an acked message leaves its lease deadline and its expiry
    /// behind, and with a long retention those would pile up for days.
    /// Amortized O(1) per operation.
    fn compact_timed(&mut self) {
        let slots = &self.slots;
        let live = slots.len();
        if self.deadlines.len() > 2 * (self.stats.leased as usize) + COMPACT_SLACK {
            self.deadlines.retain(|Reverse((at, seq, key))| {
                slots.get(*key).is_some_and(|e| {
                    e.seq == *seq
                        && matches!(e.state, State::Leased { deadline, .. } if deadline.get() == Some(*at))
                })
            });
        }
        if self.expiries.len() > 2 * live + COMPACT_SLACK {
            self.expiries
                .retain(|Reverse((_, seq, key))| slots.get(*key).is_some_and(|e| e.seq == *seq));
        }
        if self.delayed.len() > 2 * (self.stats.delayed as usize) + COMPACT_SLACK {
            self.delayed.retain(|Reverse((at, seq, key))| {
                slots
                    .get(*key)
                    .is_some_and(|e| e.seq == *seq && e.state == State::Delayed(*at))
            });
        }
    }

    /// [`QueueCore::advance`], then delivery to push consumers: what a timer does.
    pub fn tick(&mut self, now: Timestamp, fx: &mut Effects) {
        self.advance(now, fx);
        self.dispatch(now, fx);
    }

    /// The earliest time at which [`QueueCore::tick`] has something to do.
    /// May be early (a stale heap entry), never late.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let top = |h: &std::collections::BinaryHeap<super::TimedRef>| h.peek().map(|r| r.0.0);
        let queue_ttl = self
            .config
            .expires
            .filter(|_| self.consumers.list.is_empty())
            .map(|ttl| self.last_used.plus(ttl));
        [
            top(&self.delayed),
            top(&self.deadlines),
            top(&self.expiries),
            queue_ttl,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
