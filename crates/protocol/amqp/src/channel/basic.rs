//! The basic class, consuming side: qos, consume, cancel, get, deliveries,
//! and settling them (ack, nack, reject, recover).

use std::sync::{Arc, Weak};

use amq_protocol::protocol::{AMQPClass, basic};
use ferry_auth::Access;
use ferry_core::broker::QueueHandle;
use ferry_core::queue::{ConsumerSpec, Delivery, ReceiveMode};
use ferry_core::{Message, Value};

use super::{Channel, Consumer, Held, ReplyConsumer, Unacked};
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::events::ConsumerSink;
use crate::flow::ConsumerFlow;
use crate::properties::properties_of;
use crate::reply_to;
use crate::values::short;

/// How a delivery is settled.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
    /// Rejected without requeue: dead-lettered or dropped.
    Discard,
}

impl Channel {
    pub(super) fn on_basic(&mut self, cx: &mut Ctx, m: basic::AMQPMethod) -> Outcome {
        match m {
            basic::AMQPMethod::Publish(p) => self.start_publish(cx, p),
            basic::AMQPMethod::Qos(q) => self.qos(cx, q),
            basic::AMQPMethod::Consume(c) => self.consume(cx, c),
            basic::AMQPMethod::Cancel(c) => {
                self.cancel(cx, c.consumer_tag.as_str(), !c.nowait);
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.get(cx, g),
            basic::AMQPMethod::Ack(a) => self.settle(cx, a.delivery_tag, a.multiple, Settle::Ack),
            basic::AMQPMethod::Nack(n) => {
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(cx, n.delivery_tag, n.multiple, how)
            }
            basic::AMQPMethod::Reject(r) => {
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(cx, r.delivery_tag, false, how)
            }
            basic::AMQPMethod::Recover(r) => {
                if !r.requeue {
                    return Err(recover_without_requeue());
                }
                self.recover(cx);
                cx.out.method(
                    self.to.id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => {
                if !r.requeue {
                    return Err(recover_without_requeue());
                }
                self.recover(cx);
                Ok(())
            }
            other => Err(server_only(&AMQPClass::Basic(other))),
        }
    }

    /// basic.qos: a prefetch count for each consumer started after it
    /// (global=false), or for the channel's unacked deliveries together
    /// (global=true), as RabbitMQ 3 reads them. The codec drops
    /// prefetch-size, which RabbitMQ does not implement either.
    fn qos(&mut self, cx: &mut Ctx, q: basic::Qos) -> Outcome {
        let limit = (q.prefetch_count > 0).then_some(u32::from(q.prefetch_count));
        if q.global {
            let n = limit.map_or(0, |l| l as usize);
            self.flow
                .global_limit
                .store(n, std::sync::atomic::Ordering::SeqCst);
            self.unacked_changed(cx);
            for c in &self.consumers {
                if c.flow.take_starved() {
                    cx.amqp.broker.kick(&c.queue);
                }
            }
        } else {
            self.prefetch = limit;
        }
        cx.out.method(
            self.to.id,
            AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
        );
        Ok(())
    }

    fn consume(&mut self, cx: &mut Ctx, c: basic::Consume) -> Outcome {
        let seq = self.next_consumer;
        self.next_consumer += 1;
        let tag = if c.consumer_tag.as_str().is_empty() {
            format!("amq.ctag-{}-{}-{seq}", cx.conn_id, self.to.id)
        } else {
            c.consumer_tag.as_str().to_owned()
        };
        if self.consumers.iter().any(|k| k.tag == tag)
            || self.stream_consumers.iter().any(|k| k.tag == tag)
            || self.reply.as_ref().is_some_and(|r| r.tag == tag)
        {
            return Err(Failure::connection(
                ReplyCode::NotAllowed,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        if c.queue.as_str() == reply_to::PSEUDO_QUEUE {
            return self.consume_replies(cx, tag, c.no_ack, c.nowait);
        }
        if let Some((name, stream)) = self.stream_named(cx, &c.queue) {
            return self.consume_stream(cx, &c, tag, seq, name, stream);
        }
        let q = self.usable_queue(cx, &c.queue)?;
        cx.check(Access::Read, "queue", q.name())?;
        let priority = match c.arguments.inner().get("x-priority") {
            None => 0,
            Some(v) => match crate::values::value_from_amqp(v) {
                Value::Int(p) => p.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                _ => {
                    return Err(Failure::channel(
                        ReplyCode::PreconditionFailed,
                        "invalid arg 'x-priority': must be an integer",
                    ));
                }
            },
        };
        let flow = Arc::new(ConsumerFlow::new(Arc::clone(&self.flow)));
        let sink = ConsumerSink {
            events: cx.events.clone(),
            to: self.to,
            consumer: seq,
            queue: Arc::downgrade(&q),
            flow: Arc::clone(&flow),
        };
        let mut spec = ConsumerSpec::new(sink).priority(priority);
        spec.prefetch = self.prefetch;
        spec.auto_ack = c.no_ack;
        spec.exclusive = c.exclusive;
        // Registered before consume-ok is written, but its deliveries come
        // through the connection's events, handled after this method: the
        // client sees consume-ok first.
        let id = cx
            .amqp
            .broker
            .consume(&q, spec)
            .map_err(|e| Failure::from_core(e, &cx.vhost))?;
        cx.entry.consumer_added(ferry_face::ConsumerInfo {
            channel: self.to.id,
            tag: tag.clone(),
            queue: q.name().to_owned(),
            prefetch: self.prefetch,
            ack_required: !c.no_ack,
        });
        self.consumers.push(Consumer {
            seq,
            tag: tag.clone(),
            queue: q,
            id,
            flow,
            written: 0,
            written_bytes: 0,
        });
        if !c.nowait {
            consume_ok(cx, self.to.id, &tag);
        }
        Ok(())
    }

    fn consume_replies(
        &mut self,
        cx: &mut Ctx,
        tag: String,
        no_ack: bool,
        nowait: bool,
    ) -> Outcome {
        if !no_ack {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply.is_some() {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                "reply consumer already set",
            ));
        }
        let address = cx
            .amqp
            .replies
            .register(cx.events.clone(), self.to, cx.conn_id);
        self.reply = Some(ReplyConsumer {
            tag: tag.clone(),
            address,
        });
        if !nowait {
            consume_ok(cx, self.to.id, &tag);
        }
        Ok(())
    }

    /// Ends a consumer (unknown tags are fine, as in RabbitMQ). Deliveries
    /// already on their way to it are still written, then cancel-ok (the
    /// connection drains them first: see [`Channel::finish_cancels`]). Its
    /// unacked deliveries stay unacked until settled or the channel closes.
    fn cancel(&mut self, cx: &mut Ctx, tag: &str, reply: bool) {
        let reply_tag = reply.then(|| tag.to_owned());
        if let Some(at) = self.consumers.iter().position(|c| c.tag == tag) {
            let c = self.consumers.remove(at);
            let _ = cx.amqp.broker.cancel(&c.queue, c.id);
            cx.entry.consumer_removed(self.to.id, &c.tag);
            self.cancelled.push((c, reply_tag));
            cx.drain_events = true;
            return;
        }
        if self.cancel_stream(cx, tag) {
            if let Some(tag) = reply_tag {
                cancel_ok(cx, self.to.id, &tag);
            }
            return;
        }
        if self.reply.as_ref().is_some_and(|r| r.tag == tag)
            && let Some(r) = self.reply.take()
        {
            cx.amqp.replies.unregister(&r.address);
        }
        if let Some(tag) = reply_tag {
            cancel_ok(cx, self.to.id, &tag);
        }
    }

    fn get(&mut self, cx: &mut Ctx, g: basic::Get) -> Outcome {
        if let Some((name, _)) = self.stream_named(cx, &g.queue) {
            cx.check(Access::Read, "queue", &name)?;
            return Err(super::stream::not_for_streams(
                "basic.get",
                &name,
                &cx.vhost,
            ));
        }
        let q = self.usable_queue(cx, &g.queue)?;
        cx.check(Access::Read, "queue", q.name())?;
        let mode = if g.no_ack {
            ReceiveMode::AutoAck
        } else {
            ReceiveMode::Hold
        };
        let Some(d) = cx.amqp.broker.receive(&q, 1, mode).pop() else {
            cx.out.method(
                self.to.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let tag = self.next_tag();
        let remaining = q.stats().ready;
        let ok = basic::AMQPMethod::GetOk(basic::GetOk {
            delivery_tag: tag,
            redelivered: d.redelivered(),
            exchange: short(d.message.router.as_deref().unwrap_or("")),
            routing_key: short(&d.message.routing_key),
            message_count: u32::try_from(remaining).unwrap_or(u32::MAX),
        });
        send_message(cx, self.to.id, ok, &d.message);
        cx.traffic.delivered += 1;
        if !g.no_ack {
            self.unacked.push_back(Unacked {
                tag,
                held: Held::Lease {
                    queue: q,
                    lease: d.lease,
                },
            });
            self.unacked_changed(cx);
        }
        Ok(())
    }

    /// A delivery from a consumer's queue.
    pub(super) fn deliver(
        &mut self,
        cx: &mut Ctx,
        consumer: u64,
        queue: &Weak<QueueHandle>,
        d: Delivery,
    ) {
        let c = match self.consumers.iter_mut().find(|c| c.seq == consumer) {
            Some(c) => c,
            None => match self.cancelled.iter_mut().find(|(c, _)| c.seq == consumer) {
                Some((c, _)) => c,
                None => {
                    // Its channel was released meanwhile: back it goes.
                    if !d.auto_acked
                        && let Some(q) = queue.upgrade()
                    {
                        let _ = cx.amqp.broker.nack(&q, d.lease, true);
                    }
                    return;
                }
            },
        };
        c.written += 1;
        c.written_bytes += d.message.size() as usize;
        let q = Arc::clone(&c.queue);
        let delivery_tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        let m = &d.message;
        cx.out.deliver(
            self.to.id,
            &c.tag,
            delivery_tag,
            d.redelivered(),
            m.router.as_deref().unwrap_or(""),
            &m.routing_key,
        );
        cx.out
            .content(self.to.id, properties_of(m), &m.body, cx.frame_max);
        cx.traffic.delivered += 1;
        if !d.auto_acked {
            self.unacked.push_back(Unacked {
                tag: delivery_tag,
                held: Held::Lease {
                    queue: Arc::clone(&q),
                    lease: d.lease,
                },
            });
            self.unacked_changed(cx);
        }
    }

    /// A direct reply-to message for this channel's reply consumer.
    pub(super) fn deliver_reply(&mut self, cx: &mut Ctx, m: &Message) {
        let Some(r) = &self.reply else {
            return;
        };
        let consumer_tag = short(&r.tag);
        let tag = self.next_tag();
        let deliver = basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag,
            delivery_tag: tag,
            redelivered: false,
            exchange: short(""),
            routing_key: short(&m.routing_key),
        });
        send_message(cx, self.to.id, deliver, m);
        cx.traffic.delivered += 1;
    }

    /// The queue ended the consumer (it was deleted): tell the client if
    /// it understands basic.cancel from the server.
    pub(super) fn consumer_gone(&mut self, cx: &mut Ctx, consumer: u64) {
        if self.stream_gone(cx, consumer) {
            return;
        }
        let Some(at) = self.consumers.iter().position(|c| c.seq == consumer) else {
            return;
        };
        let c = self.consumers.remove(at);
        cx.entry.consumer_removed(self.to.id, &c.tag);
        // What was written for it this turn still counts off the channel's
        // flow counters.
        c.flow.written(c.written, c.written_bytes);
        if cx.cancel_notify {
            cx.out.method(
                self.to.id,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: short(&c.tag),
                    nowait: true,
                })),
            );
        }
    }

    /// basic.ack, nack and reject. Tag 0 with `multiple` means every
    /// outstanding delivery; an unknown tag (or one already settled, in
    /// this transaction too) is a channel error (406).
    pub(super) fn settle(
        &mut self,
        cx: &mut Ctx,
        tag: u64,
        multiple: bool,
        how: Settle,
    ) -> Outcome {
        let Some(tx) = &self.tx else {
            return self.settle_now(cx, tag, multiple, how);
        };
        let pending = |t: u64| tx.covers(t);
        let known = if multiple && tag == 0 {
            true
        } else {
            self.unacked.iter().any(|u| u.tag == tag) && !pending(tag)
        };
        if !known {
            return Err(unknown_tag(tag));
        }
        if let Some(tx) = &mut self.tx {
            tx.settle(tag, multiple, how);
        }
        Ok(())
    }

    pub(super) fn settle_now(
        &mut self,
        cx: &mut Ctx,
        tag: u64,
        multiple: bool,
        how: Settle,
    ) -> Outcome {
        let broker = &cx.amqp.broker;
        let apply = |u: Unacked| u.settle(broker, how);
        if multiple {
            if tag != 0 && !self.unacked.iter().any(|u| u.tag == tag) {
                return Err(unknown_tag(tag));
            }
            let upto = if tag == 0 { u64::MAX } else { tag };
            while self.unacked.front().is_some_and(|u| u.tag <= upto) {
                if let Some(u) = self.unacked.pop_front() {
                    apply(u);
                }
            }
        } else {
            let at = self
                .unacked
                .binary_search_by_key(&tag, |u| u.tag)
                .map_err(|_| unknown_tag(tag))?;
            if let Some(u) = self.unacked.remove(at) {
                apply(u);
            }
        }
        self.unacked_changed(cx);
        Ok(())
    }

    /// basic.recover: every unacked delivery goes back to its queue.
    fn recover(&mut self, cx: &mut Ctx) {
        for u in self.unacked.drain(..) {
            u.settle(&cx.amqp.broker, Settle::Requeue);
        }
        self.unacked_changed(cx);
    }
}

/// A method that carries a message (deliver, get-ok, return) and the
/// message's content frames.
pub(super) fn send_message(cx: &mut Ctx, channel: u16, method: basic::AMQPMethod, m: &Message) {
    cx.out.method(channel, AMQPClass::Basic(method));
    cx.out
        .content(channel, properties_of(m), &m.body, cx.frame_max);
}

pub(super) fn cancel_ok(cx: &mut Ctx, channel: u16, tag: &str) {
    cx.out.method(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
            consumer_tag: short(tag),
        })),
    );
}

fn recover_without_requeue() -> Failure {
    Failure::channel(ReplyCode::NotImplemented, "requeue=false is not supported")
}

pub(super) fn consume_ok(cx: &mut Ctx, channel: u16, tag: &str) {
    cx.out.method(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
            consumer_tag: short(tag),
        })),
    );
}

fn unknown_tag(tag: u64) -> Failure {
    Failure::channel(
        ReplyCode::PreconditionFailed,
        format!("unknown delivery tag {tag}"),
    )
}

/// A method only the server sends, received from a client.
pub(super) fn server_only(m: &AMQPClass) -> Failure {
    Failure::connection(
        ReplyCode::CommandInvalid,
        format!(
            "method {}.{} is sent by servers, not clients",
            m.get_amqp_class_id(),
            m.get_amqp_method_id()
        ),
    )
}
