//! Message rates for the admin API: each queue's counters are sampled on
//! the upkeep tick, and a rate is the change over the last interval. Rates
//! of queues that come and go between samples are not counted in the
//! totals, which is what an operator watching a chart expects.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use ferry_core::Broker;
use ferry_core::queue::QueueStats;
use ferry_core::store::QueueId;
use serde::Serialize;

/// Per second, over the last sampling interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RateSet {
    pub published: f64,
    pub delivered: f64,
    pub acked: f64,
    pub redelivered: f64,
    pub dead_lettered: f64,
}

impl RateSet {
    fn add(&mut self, o: &RateSet) {
        self.published += o.published;
        self.delivered += o.delivered;
        self.acked += o.acked;
        self.redelivered += o.redelivered;
        self.dead_lettered += o.dead_lettered;
    }
}

#[derive(Clone, Copy)]
struct Counts([u64; 5]);

impl Counts {
    fn of(s: &QueueStats) -> Self {
        Counts([
            s.published,
            s.delivered,
            s.acked,
            s.redelivered,
            s.dead_lettered,
        ])
    }

    /// The rates from `earlier` to these counts over `secs`.
    fn since(&self, earlier: &Counts, secs: f64) -> RateSet {
        let [published, delivered, acked, redelivered, dead_lettered] = self.0;
        let [p0, d0, a0, r0, x0] = earlier.0;
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        RateSet {
            published: per(published, p0),
            delivered: per(delivered, d0),
            acked: per(acked, a0),
            redelivered: per(redelivered, r0),
            dead_lettered: per(dead_lettered, x0),
        }
    }
}

/// A connection's traffic: bytes and messages, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Traffic<T> {
    pub recv_bytes: T,
    pub sent_bytes: T,
    pub recv_messages: T,
    pub sent_messages: T,
}

impl Traffic<u64> {
    fn of(c: &ferry_face::ConnectionInfo) -> Self {
        Traffic {
            recv_bytes: c.recv_bytes,
            sent_bytes: c.sent_bytes,
            recv_messages: c.recv_messages,
            sent_messages: c.sent_messages,
        }
    }

    fn since(&self, then: &Traffic<u64>, secs: f64) -> Traffic<f64> {
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        Traffic {
            recv_bytes: per(self.recv_bytes, then.recv_bytes),
            sent_bytes: per(self.sent_bytes, then.sent_bytes),
            recv_messages: per(self.recv_messages, then.recv_messages),
            sent_messages: per(self.sent_messages, then.sent_messages),
        }
    }
}

#[derive(Default)]
struct State {
    taken: Option<Instant>,
    counts: HashMap<QueueId, Counts>,
    rates: HashMap<QueueId, RateSet>,
    total: RateSet,
    /// Connection id -> its counters at the last sample, and their rates
    /// per second since the one before.
    traffic: HashMap<u64, Traffic<u64>>,
    traffic_rates: HashMap<u64, Traffic<f64>>,
}

/// The last sample of every queue's rates.
#[derive(Default)]
pub struct Rates {
    state: Mutex<State>,
}

impl Rates {
    /// Takes a sample (called every few seconds) of the queues and of the
    /// open connections' byte counts.
    pub fn sample(&self, broker: &Broker, connections: &[ferry_face::ConnectionInfo]) {
        let now = Instant::now();
        let mut counts = HashMap::new();
        for ns in broker.namespace_names() {
            for name in broker.queue_names(&ns).unwrap_or_default() {
                if let Ok(q) = broker.queue(&ns, &name) {
                    counts.insert(q.id(), Counts::of(&q.stats()));
                }
            }
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let secs = st
            .taken
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        let mut rates = HashMap::new();
        let mut total = RateSet::default();
        let traffic: HashMap<u64, Traffic<u64>> =
            connections.iter().map(|c| (c.id, Traffic::of(c))).collect();
        let mut traffic_rates = HashMap::new();
        if let Some(secs) = secs {
            for (id, c) in &counts {
                if let Some(before) = st.counts.get(id) {
                    let r = c.since(before, secs);
                    total.add(&r);
                    rates.insert(*id, r);
                }
            }
            for (id, now) in &traffic {
                if let Some(then) = st.traffic.get(id) {
                    traffic_rates.insert(*id, now.since(then, secs));
                }
            }
        }
        *st = State {
            taken: Some(now),
            counts,
            rates,
            total,
            traffic,
            traffic_rates,
        };
    }

    /// A queue's rates (zero until it has been sampled twice).
    pub fn queue(&self, id: QueueId) -> RateSet {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.rates.get(&id).copied().unwrap_or_default()
    }

    /// A connection's bytes and messages per second; zero until sampled twice.
    pub fn connection(&self, id: u64) -> Traffic<f64> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.traffic_rates.get(&id).copied().unwrap_or_default()
    }

    /// The sum over every queue.
    pub fn total(&self) -> RateSet {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_change_over_the_interval() {
        let before = Counts([10, 0, 0, 0, 0]);
        let after = Counts([60, 20, 20, 0, 1]);
        let r = after.since(&before, 5.0);
        assert_eq!(r.published, 10.0);
        assert_eq!(r.delivered, 4.0);
        assert_eq!(r.dead_lettered, 0.2);
        // A counter that went back (a queue recreated under the same id
        // cannot, but be safe) gives zero, not a huge number.
        assert_eq!(before.since(&after, 5.0).published, 0.0);
    }
}
