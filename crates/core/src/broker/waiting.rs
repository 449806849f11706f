//! Long polling: a receive that waits until a message is there or its
//! wait time is up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::queue::{Delivery, ReceiveMode};

use super::{Broker, QueueHandle};

impl Broker {
    /// Receives up to `max` messages, waiting up to `wait` for the first
    /// one. Returns as soon as any is available, empty when time is up or
    /// the queue is deleted. Evicted messages it would take are read back
    /// on a blocking thread, with the queue's lock released.
    pub async fn receive_wait(
        self: &Arc<Self>,
        q: &Arc<QueueHandle>,
        max: usize,
        mode: ReceiveMode,
        wait: Duration,
    ) -> Vec<Delivery> {
        let deadline = self.clock.now().plus(wait);
        // Evictions may race the read-backs: after a few, a receive takes
        // what is in memory.
        let mut read_backs = 3;
        loop {
            // Register before looking, so an arrival between the look and
            // the wait is not missed.
            let arrived = q.arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let _waiting = WaitingGuard::new(q);
            let mut got = Vec::new();
            // The delivery counts it journals need not be durable first
            // (as in `receive_into`). Once the read-backs are spent, it takes
            // what is in memory, as a plain receive does.
            let (plan, _counts) = self.op(q, |core, now, fx| {
                if read_backs > 0 {
                    core.receive_whole(now, max, mode, fx, &mut got)
                } else {
                    core.receive(now, max, mode, fx, &mut got);
                    fx.reload = false;
                    None
                }
            });
            if let Some(plan) = plan {
                read_backs -= 1;
                let (broker, queue) = (Arc::clone(self), Arc::clone(q));
                let _read =
                    tokio::task::spawn_blocking(move || broker.read_back(&queue, plan)).await;
                // Again at once, with what came back in memory (or, the
                // read-backs spent, without it).
                continue;
            }
            if !got.is_empty() || q.is_deleted() || self.clock.now() >= deadline {
                return got;
            }
            let sleep = self.clock.sleep_until(deadline);
            tokio::select! {
                _ = arrived => {}
                _ = sleep => {}
            }
        }
    }
}

/// Counts a waiter for as long as it lives (also when its future is dropped).
struct WaitingGuard<'a>(&'a QueueHandle);

impl<'a> WaitingGuard<'a> {
    fn new(q: &'a QueueHandle) -> Self {
        q.waiting.fetch_add(1, Ordering::AcqRel);
        WaitingGuard(q)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
