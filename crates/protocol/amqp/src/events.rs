//! What reaches a connection from outside its socket: deliveries from the
//! broker's queues, confirms and held answers once the journal has synced, consumers ended
//! by their queue, direct replies from other connections.
//!
//! Each event names its channel and the channel's generation: a channel
//! number reused after a close must not get the old channel's events.

use std::sync::{Arc, Weak};

use ferry_core::Message;
use ferry_core::broker::QueueHandle;
use ferry_core::queue::{Delivery, DeliverySink};
use tokio::sync::mpsc::UnboundedSender;

use crate::flow::ConsumerFlow;

/// A channel incarnation: its number and which opening of that number.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChannelRef {
    pub id: u16,
    pub generation: u32,
}

pub enum Event {
    Deliver {
        to: ChannelRef,
        /// The channel's own number for the consumer.
        consumer: u64,
        queue: Weak<QueueHandle>,
        delivery: Delivery,
    },
    /// The queue dropped the consumer (it was deleted): tell the client.
    ConsumerGone { to: ChannelRef, consumer: u64 },
    /// Publisher confirms up to `tag` (all before it too if `multiple`).
    Confirm {
        to: ChannelRef,
        tag: u64,
        multiple: bool,
        ack: bool,
    },
    /// The change a method made is durable (or could not be made so):
    /// send its answer, `reply`, or fail `method` (class and method ids).
    Durable {
        to: ChannelRef,
        ok: bool,
        reply: Box<amq_protocol::protocol::AMQPClass>,
        method: (u16, u16),
    },
    /// Work done off the connection task (a stream's creation or
    /// deletion touches files) finished: send `reply`, or fail `method`.
    Answer {
        to: ChannelRef,
        /// `None`: the method was nowait.
        reply: Result<Option<Box<amq_protocol::protocol::AMQPClass>>, crate::error::Failure>,
        method: (u16, u16),
    },
    /// Records a stream consumer's reader took credit for, as messages.
    StreamDeliver {
        to: ChannelRef,
        consumer: u64,
        messages: Vec<Message>,
    },
    /// A direct reply-to message for this channel's reply consumer.
    Reply {
        to: ChannelRef,
        message: Arc<Message>,
    },
}

pub type Events = UnboundedSender<Event>;

/// A push consumer's sink: it forwards deliveries to the connection task.
/// Dropped by the queue when the consumer ends; if the queue ended it
/// (deletion), the connection sends basic.cancel.
pub struct ConsumerSink {
    pub events: Events,
    pub to: ChannelRef,
    pub consumer: u64,
    pub queue: Weak<QueueHandle>,
    pub flow: Arc<ConsumerFlow>,
}

impl DeliverySink for ConsumerSink {
    fn deliver(&self, delivery: Delivery) -> Result<(), Delivery> {
        let bytes = delivery.message.size() as usize;
        let event = Event::Deliver {
            to: self.to,
            consumer: self.consumer,
            queue: Weak::clone(&self.queue),
            delivery,
        };
        // Counted before it is sent: the connection may write it (and
        // count it off) before `send` returns.
        self.flow.queued(bytes);
        match self.events.send(event) {
            Ok(()) => Ok(()),
            Err(e) => match e.0 {
                Event::Deliver { delivery, .. } => {
                    self.flow.written(1, bytes);
                    Err(delivery)
                }
                // Only a Deliver was sent.
                _ => Ok(()),
            },
        }
    }

    fn ready(&self) -> bool {
        self.flow.ready()
    }
}

impl Drop for ConsumerSink {
    fn drop(&mut self) {
        let _ = self.events.send(Event::ConsumerGone {
            to: self.to,
            consumer: self.consumer,
        });
    }
}
