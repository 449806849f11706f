//! Push consumers of one queue: credit (prefetch), priority, round-robin,
//! exclusive and single-active consumers.

use std::time::Duration;

use super::Delivery;

/// A consumer's identity, unique per broker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u64);

/// Where a push consumer's deliveries go (a channel to its connection task).
///
/// Called with the queue's lock held, so it must not block: hand the
/// delivery over and return.
pub trait DeliverySink: Send + Sync {
    /// Hands over one delivery; gives it back if the consumer is gone.
    fn deliver(&self, delivery: Delivery) -> Result<(), Delivery>;

    /// Whether the sink takes a delivery now. A sink that says no (its
    /// connection is behind) is skipped, and must have the queue
    /// dispatched again ([`crate::Broker::kick`]) once it can take more.
    fn ready(&self) -> bool {
        true
    }
}

impl DeliverySink for tokio::sync::mpsc::UnboundedSender<Delivery> {
    fn deliver(&self, delivery: Delivery) -> Result<(), Delivery> {
        self.send(delivery).map_err(|e| e.0)
    }
}

/// How a consumer wants its messages.
pub struct ConsumerSpec {
    /// Higher first; consumers of equal priority take turns.
    pub priority: i32,
    /// Most unacked deliveries at once; `None`: no limit.
    pub prefetch: Option<u32>,
    /// Deliveries count as acked as soon as they are handed over.
    pub auto_ack: bool,
    /// No other consumer may join this queue while this one is on it.
    pub exclusive: bool,
    /// A delivery not acked within this time returns to the queue.
    pub lease_timeout: Option<Duration>,
    pub sink: Box<dyn DeliverySink>,
}

impl ConsumerSpec {
    pub fn new(sink: impl DeliverySink + 'static) -> Self {
        ConsumerSpec {
            priority: 0,
            prefetch: None,
            auto_ack: false,
            exclusive: false,
            lease_timeout: None,
            sink: Box::new(sink),
        }
    }

    pub fn prefetch(mut self, n: u32) -> Self {
        self.prefetch = Some(n);
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self
    }

    pub fn auto_ack(mut self) -> Self {
        self.auto_ack = true;
        self
    }

    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }
}

pub(super) struct Consumer {
    pub(super) id: ConsumerId,
    pub(super) spec: ConsumerSpec,
    pub(super) in_flight: u32,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        self.spec.prefetch.is_none_or(|p| self.in_flight < p) && self.spec.sink.ready()
    }
}

#[derive(Default)]
pub(super) struct Consumers {
    /// In registration order; with single-active-consumer the first is the active one.
    pub(super) list: Vec<Consumer>,
    /// Where the round-robin scan starts next.
    pub(super) next: usize,
    pub(super) single_active: bool,
}

impl Consumers {
    pub(super) fn get_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.list.iter_mut().find(|c| c.id == id)
    }

    pub(super) fn remove(&mut self, id: ConsumerId) -> Option<Consumer> {
        let at = self.list.iter().position(|c| c.id == id)?;
        Some(self.list.remove(at))
    }

    pub(super) fn has_exclusive(&self) -> bool {
        self.list.iter().any(|c| c.spec.exclusive)
    }

    /// The consumer the next message goes to, if any has credit.
    pub(super) fn pick(&mut self) -> Option<usize> {
        if self.single_active {
            return self.list.first().filter(|c| c.has_credit()).map(|_| 0);
        }
        let n = self.list.len();
        let top = self
            .list
            .iter()
            .filter(|c| c.has_credit())
            .map(|c| c.spec.priority)
            .max()?;
        let start = self.next % n;
        let at = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.list[i].spec.priority == top && self.list[i].has_credit())?;
        self.next = at + 1;
        Some(at)
    }

    /// One delivery of `id` settled (acked, nacked or returned): credit back.
    pub(super) fn settle(&mut self, id: ConsumerId) {
        if let Some(c) = self.get_mut(id) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}
