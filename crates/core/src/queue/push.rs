//! Push consumers: registration, credit, and handing ready messages out.

use crate::clock::Timestamp;
use crate::error::{CoreError, CoreResult};

use super::consumers::Consumer;
use super::{ConsumerId, ConsumerSpec, Effects, QueueCore};

impl QueueCore {
    pub fn add_consumer(
        &mut self,
        id: ConsumerId,
        spec: ConsumerSpec,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<()> {
        if self.consumers.has_exclusive() || (spec.exclusive && !self.consumers.list.is_empty()) {
            return Err(CoreError::ExclusiveConsumer(self.name.clone()));
        }
        self.consumers.list.push(Consumer {
            id,
            spec,
            in_flight: 0,
        });
        self.had_consumers = true;
        self.last_used = now;
        self.dispatch(now, fx);
        Ok(())
    }

    /// Removes a consumer. Its unsettled deliveries stay leased: the
    /// protocol settles them (AMQP requeues them when the channel closes).
    pub fn cancel_consumer(
        &mut self,
        id: ConsumerId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<()> {
        self.consumers
            .remove(id)
            .ok_or(CoreError::ConsumerNotFound)?;
        self.after_consumer_left(now, fx);
        self.dispatch(now, fx);
        Ok(())
    }

    fn after_consumer_left(&mut self, now: Timestamp, fx: &mut Effects) {
        self.last_used = now;
        if self.config.auto_delete && self.had_consumers && self.consumers.list.is_empty() {
            fx.delete_queue = true;
        }
    }

    /// Changes a consumer's credit (AMQP basic.qos).
    pub fn set_prefetch(
        &mut self,
        id: ConsumerId,
        prefetch: Option<u32>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> CoreResult<()> {
        self.consumers
            .get_mut(id)
            .ok_or(CoreError::ConsumerNotFound)?
            .spec
            .prefetch = prefetch;
        self.dispatch(now, fx);
        Ok(())
    }

    /// Ends the queue (it is being deleted): consumers go, and with them
    /// their sinks; messages go. The broker journals the deletion.
    pub fn close(&mut self) {
        self.consumers.list.clear();
        self.slots.clear();
        self.evicted = 0;
        self.held_back.clear();
        self.ready = super::ready::ReadyIndex::new(self.config.fifo, self.config.max_priority);
        self.delayed.clear();
        self.deadlines.clear();
        self.expiries.clear();
        self.stats.ready = 0;
        self.stats.ready_bytes = 0;
        self.stats.delayed = 0;
        self.stats.leased = 0;
        self.stats.bytes = 0;
        self.stats.resident_bytes = 0;
    }

    /// Hands out ready messages again (a consumer's sink can take more).
    pub fn redispatch(&mut self, now: Timestamp, fx: &mut Effects) {
        self.dispatch(now, fx);
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.list.len()
    }

    /// Hands ready messages to consumers with credit until one or the other runs out.
    pub(super) fn dispatch(&mut self, now: Timestamp, fx: &mut Effects) {
        if self.consumers.list.is_empty() {
            return;
        }
        let mut one = std::mem::take(&mut self.scratch);
        while self.stats.ready > 0 {
            let Some(at) = self.consumers.pick() else {
                break;
            };
            one.clear();
            self.pop_ready(1, &mut one);
            let Some(&(seq, key)) = one.first() else {
                break;
            };
            if self.slots[key].evicted {
                // Only in the store: delivery goes on once the broker has
                // read it back, outside this lock.
                self.unpop(&[(seq, key)]);
                fx.reload = true;
                break;
            }
            let c = &self.consumers.list[at];
            let (id, auto_ack) = (c.id, c.spec.auto_ack);
            let deadline = c.spec.lease_timeout.map(|t| now.plus(t));
            let mut delivery = self.lease(key, deadline, Some(id), now, fx);
            delivery.auto_acked = auto_ack;
            self.consumers.list[at].in_flight += 1;
            match self.consumers.list[at].spec.sink.deliver(delivery) {
                Ok(()) if auto_ack => {
                    self.remove(key, None, now, fx);
                    self.stats.acked += 1;
                }
                Ok(()) => {}
                Err(_) => {
                    // The consumer is gone: the message goes back (counted as
                    // delivered, as to a connection that died) and so does it.
                    self.return_leased(key, now, fx);
                    self.consumers.remove(id);
                    self.after_consumer_left(now, fx);
                }
            }
        }
        one.clear();
        self.scratch = one;
    }
}
