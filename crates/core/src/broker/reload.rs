//! Reading evicted messages back, with the queue's lock released (see
//! `queue/reload.rs` for what stops at them). A receive reads back on its
//! caller's thread, then takes the rest; a push delivery that stopped
//! asks for a reload, which the reload task does on a blocking thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::message::Message;
use crate::queue::{Body, Loaded, Reload};
use crate::store::StoreError;

use super::{Broker, QueueHandle, lock};

/// A reload reads at most this many messages, and this many bytes of them.
const RELOAD_MESSAGES: usize = 256;
const RELOAD_BYTES: u64 = 8 << 20;

impl Broker {
    /// Reads the next evicted messages of `q` (in hand-out order) back
    /// from the store with its lock released, and delivers them to its
    /// consumers. Returns how many are out of delivery's way (back in
    /// memory, or unreadable and stepped out of line).
    pub fn reload(&self, q: &Arc<QueueHandle>) -> usize {
        // Planning changes nothing (what it pops it puts back): no effects.
        let plan = lock(&q.core).reload_plan(RELOAD_MESSAGES, RELOAD_BYTES);
        self.read_back(q, plan)
    }

    /// Reads what `plan` names with `q`'s lock released, then hands the
    /// bodies to the queue. Returns how many are out of delivery's way.
    pub(super) fn read_back(&self, q: &Arc<QueueHandle>, plan: Reload) -> usize {
        if plan.wanted.is_empty() {
            return 0;
        }
        let loaded: Loaded = plan
            .wanted
            .into_iter()
            .map(|(seq, key, loc)| (seq, key, self.store.load(loc)))
            .collect();
        // Deliveries need no durable count first (as in `receive_into`).
        let (back, _counts) = self.op(q, |core, now, fx| core.reloaded(loaded, now, fx));
        back
    }

    /// A delivery of `q` stopped at an evicted message: the reload task
    /// reads it back.
    pub(super) fn request_reload(&self, q: &Arc<QueueHandle>) {
        if !q.reload_requested.swap(true, Ordering::AcqRel) {
            lock(&self.reloads.queues).push(Arc::clone(q));
            self.reloads.wake.notify_one();
        }
    }

    /// Does the reloads asked for; returns how many messages are out of
    /// delivery's way.
    /// The reload task calls this on a blocking thread; a test may call it
    /// itself.
    pub fn reload_requested(&self) -> usize {
        let queues = std::mem::take(&mut *lock(&self.reloads.queues));
        let mut back = 0;
        for q in queues {
            q.reload_requested.store(false, Ordering::Release);
            if !q.is_deleted() {
                back += self.reload(&q);
            }
        }
        back
    }

    /// Runs the reloads asked for, off the async threads, until the
    /// runtime ends.
    pub async fn run_reloads(self: Arc<Self>) {
        loop {
            self.reloads.wake.notified().await;
            let broker = Arc::clone(&self);
            if tokio::task::spawn_blocking(move || broker.reload_requested())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The message a queue gave up as `body`, read back if it was evicted.
    pub(super) fn body_of(&self, body: Body) -> Result<Arc<Message>, StoreError> {
        match body {
            Body::Here(m) => Ok(m),
            Body::InStore(loc) => self.store.load(loc),
        }
    }
}

/// The queues whose deliveries wait for a reload.
#[derive(Default)]
pub(super) struct Reloads {
    pub(super) queues: std::sync::Mutex<Vec<Arc<QueueHandle>>>,
    wake: tokio::sync::Notify,
}
