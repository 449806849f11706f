//! One channel: its deliveries awaiting acks, its consumers, its publish
//! being assembled, its confirm or transaction mode; and the dispatch of
//! its methods to the files that implement them, one per spec class.

mod basic;
mod exchange;
mod publish;
mod queue;
mod tx;

use std::collections::VecDeque;
use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, access, channel, confirm};
use ferry_core::broker::QueueHandle;
use ferry_core::queue::{ConsumerId, Lease};

use crate::confirms::Confirms;
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::events::{ChannelRef, Event};

pub use publish::Content;

/// A delivery the client has not settled yet.
struct Unacked {
    tag: u64,
    queue: Arc<QueueHandle>,
    lease: Lease,
}

/// A consumer started on this channel.
struct Consumer {
    /// The channel's own number for it (events name it).
    seq: u64,
    tag: String,
    queue: Arc<QueueHandle>,
    id: ConsumerId,
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
    next_consumer: u64,
    /// basic.qos prefetch-count for consumers (None: unlimited).
    prefetch: Option<u32>,
    confirms: Option<Confirms>,
    tx: Option<tx::Tx>,
    /// The queue named by an empty queue name (the spec's "last declared").
    last_queue: Option<String>,
    reply: Option<ReplyConsumer>,
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
            next_consumer: 1,
            prefetch: None,
            confirms: None,
            tx: None,
            last_queue: None,
            reply: None,
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
            Event::TxCommitted { ok, .. } => self.tx_committed(cx, ok),
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
        }
        if let Some(r) = self.reply.take() {
            cx.amqp.replies.unregister(&r.address);
        }
        for u in self.unacked.drain(..) {
            let _ = broker.nack(&u.queue, u.lease, true);
        }
        self.content = None;
        self.confirms = None;
        self.tx = None;
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
