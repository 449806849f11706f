//! One channel: its deliveries awaiting acks, its consumers, its publish
//! being assembled, its confirm or transaction mode; and the dispatch of
//! its methods to the files that implement them, one per spec class.

mod basic;
mod durable;
mod exchange;
mod publish;
mod queue;
mod stream;
mod tx;

use std::collections::VecDeque;
use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, access, channel, confirm};
use ferry_core::Broker;
use ferry_core::broker::QueueHandle;
use ferry_core::queue::{ConsumerId, Lease};
use tokio::sync::Semaphore;

use crate::confirms::Confirms;
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::events::{ChannelRef, Event};
use crate::flow::{ChannelFlow, ConsumerFlow};

pub use publish::Content;

/// A delivery the client has not settled yet.
struct Unacked {
    tag: u64,
    held: Held,
}

/// What settling a delivery gives back.
enum Held {
    /// A queue's message, leased until settled.
    Lease {
        queue: Arc<QueueHandle>,
        lease: Lease,
    },
    /// A stream record: nothing to remove, one delivery of credit to give
    /// back to its consumer, however it is settled (RabbitMQ's rule).
    Credit(Arc<Semaphore>),
}

impl Unacked {
    fn settle(self, broker: &Broker, how: basic::Settle) {
        match self.held {
            // A queue deleted meanwhile makes the lease unknown: nothing to settle.
            Held::Lease { queue, lease } => {
                let _ = match how {
                    basic::Settle::Ack => broker.ack(&queue, lease),
                    basic::Settle::Requeue => broker.nack(&queue, lease, true),
                    basic::Settle::Discard => broker.nack(&queue, lease, false),
                };
            }
            Held::Credit(credit) => credit.add_permits(1),
        }
    }
}

/// A consumer started on this channel.
struct Consumer {
    /// The channel's own number for it (events name it).
    seq: u64,
    tag: String,
    queue: Arc<QueueHandle>,
    id: ConsumerId,
    flow: Arc<ConsumerFlow>,
    /// Deliveries written since the flow counters were last told, and
    /// their bytes.
    written: usize,
    written_bytes: usize,
}

/// The channel's direct reply-to consumer.
struct ReplyConsumer {
    tag: String,
    /// The name replies are published to.
    address: String,
}

pub struct Channel {
    pub to: ChannelRef,
    /// We sent channel.close and wait for close-ok; everything else is ignored.
    pub closing: bool,
    content: Option<Content>,
    next_delivery_tag: u64,
    /// In delivery-tag order.
    unacked: VecDeque<Unacked>,
    consumers: Vec<Consumer>,
    /// Consumers of stream queues.
    stream_consumers: Vec<stream::StreamConsumer>,
    /// Consumers cancelled by the client whose deliveries already on their
    /// way are still written (before cancel-ok), with the tags to confirm.
    cancelled: Vec<(Consumer, Option<String>)>,
    next_consumer: u64,
    flow: Arc<ChannelFlow>,
    /// basic.qos prefetch-count for consumers (None: unlimited).
    prefetch: Option<u32>,
    confirms: Option<Confirms>,
    tx: Option<tx::Tx>,
    /// The queue named by an empty queue name (the spec's "last declared").
    last_queue: Option<String>,
    reply: Option<ReplyConsumer>,
    /// The last exchange the user was found allowed to publish to.
    may_write: Option<String>,
}

impl Channel {
    pub fn new(to: ChannelRef) -> Self {
        Channel {
            to,
            closing: false,
            content: None,
            next_delivery_tag: 1,
            unacked: VecDeque::new(),
            consumers: Vec::new(),
            stream_consumers: Vec::new(),
            cancelled: Vec::new(),
            next_consumer: 1,
            flow: Arc::new(ChannelFlow::default()),
            prefetch: None,
            confirms: None,
            tx: None,
            last_queue: None,
            reply: None,
            may_write: None,
        }
    }

    pub fn on_method(&mut self, cx: &mut Ctx, m: AMQPClass) -> Outcome {
        if self.content.is_some() {
            return Err(Failure::connection(
                ReplyCode::UnexpectedFrame,
                format!(
                    "expected content for basic.publish on channel {}, got a method",
                    self.to.id
                ),
            ));
        }
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(Failure::channel(
                        ReplyCode::NotImplemented,
                        "active=false is not supported",
                    ));
                }
                cx.out.method(
                    self.to.id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                cx.out.method(
                    self.to.id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(m) => self.on_exchange(cx, m),
            AMQPClass::Queue(m) => self.on_queue(cx, m),
            AMQPClass::Basic(m) => self.on_basic(cx, m),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                if self.tx.is_some() {
                    return Err(Failure::channel(
                        ReplyCode::PreconditionFailed,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirms.is_none() {
                    self.confirms = Some(Confirms::start(cx.events.clone(), self.to));
                }
                if !s.nowait {
                    cx.out.method(
                        self.to.id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(m) => self.on_tx(cx, m),
            other => Err(Failure::connection(
                ReplyCode::CommandInvalid,
                format!(
                    "method {}.{} is not allowed from a client on a channel",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ),
            )),
        }
    }

    pub fn on_event(&mut self, cx: &mut Ctx, ev: Event) {
        match ev {
            Event::Deliver {
                consumer,
                queue,
                delivery,
                ..
            } => self.deliver(cx, consumer, &queue, delivery),
            Event::ConsumerGone { consumer, .. } => self.consumer_gone(cx, consumer),
            Event::Confirm {
                tag, multiple, ack, ..
            } => publish::confirm(cx, self.to.id, tag, multiple, ack),
            Event::Durable {
                ok, reply, method, ..
            } => self.durable(cx, ok, *reply, method),
            Event::Answer { reply, method, .. } => self.answered(cx, reply, method),
            Event::StreamDeliver {
                consumer, messages, ..
            } => self.deliver_stream(cx, consumer, messages),
            Event::Reply { message, .. } => self.deliver_reply(cx, &message),
        }
    }

    /// Ends the channel: consumers are cancelled first (so nothing more is
    /// delivered to it), then unacked deliveries go back to their queues,
    /// in delivery order, marked redelivered.
    pub fn release(&mut self, cx: &mut Ctx) {
        let broker = &cx.amqp.broker;
        for c in self.consumers.drain(..) {
            let _ = broker.cancel(&c.queue, c.id);
            cx.entry.consumer_removed(self.to.id, &c.tag);
        }
        for c in self.stream_consumers.drain(..) {
            cx.entry.consumer_removed(self.to.id, &c.tag);
        }
        self.cancelled.clear();
        if let Some(r) = self.reply.take() {
            cx.amqp.replies.unregister(&r.address);
        }
        for u in self.unacked.drain(..) {
            u.settle(broker, basic::Settle::Requeue);
        }
        self.flow
            .unacked
            .store(0, std::sync::atomic::Ordering::SeqCst);
        self.content = None;
        self.confirms = None;
        self.tx = None;
    }

    /// Whether cancelled consumers wait for their in-flight deliveries.
    pub fn has_cancels(&self) -> bool {
        !self.cancelled.is_empty()
    }

    /// After the connection has written every delivery that was on its way
    /// to the cancelled consumers: confirm the cancels.
    pub fn finish_cancels(&mut self, cx: &mut Ctx) {
        for (_, tag) in self.cancelled.drain(..) {
            if let Some(tag) = tag {
                basic::cancel_ok(cx, self.to.id, &tag);
            }
        }
    }

    /// The unacked count the flow control sees; kicks consumers that a
    /// global limit held back once there is room.
    fn unacked_changed(&mut self, cx: &Ctx) {
        use std::sync::atomic::Ordering;
        let before = self.flow.unacked.swap(self.unacked.len(), Ordering::SeqCst);
        if self.unacked.len() < before && self.flow.global_limit.load(Ordering::SeqCst) > 0 {
            for c in &self.consumers {
                if c.flow.take_starved() {
                    cx.amqp.broker.kick(&c.queue);
                }
            }
        }
    }

    /// Tells the consumers' flow control what was written this turn and
    /// kicks the queues of consumers that were refused deliveries.
    pub fn flush_flow(&mut self, cx: &Ctx) {
        let global = self
            .flow
            .global_limit
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0;
        let mut flushed = false;
        let all = self
            .consumers
            .iter_mut()
            .chain(self.cancelled.iter_mut().map(|(c, _)| c));
        for c in all {
            if c.written > 0 {
                flushed = true;
                c.flow.written(
                    std::mem::take(&mut c.written),
                    std::mem::take(&mut c.written_bytes),
                );
                if c.flow.take_starved() {
                    cx.amqp.broker.kick(&c.queue);
                }
            }
        }
        // Under a channel-wide limit, room made by one consumer is room
        // for the others too.
        if global && flushed {
            for c in &self.consumers {
                if c.flow.take_starved() {
                    cx.amqp.broker.kick(&c.queue);
                }
            }
        }
    }

    fn next_tag(&mut self) -> u64 {
        let t = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        t
    }
}

/// An event for a channel that is gone: a delivery goes back to its queue.
pub fn orphan(cx: &Ctx, ev: Event) {
    if let Event::Deliver {
        queue, delivery, ..
    } = ev
        && !delivery.auto_acked
        && let Some(q) = queue.upgrade()
    {
        let _ = cx.amqp.broker.nack(&q, delivery.lease, true);
    }
}

/// A queue name that clients may not take (RabbitMQ reserves `amq.`).
fn reserved(name: &str) -> bool {
    name.starts_with("amq.")
}
