//! The basic class, publishing side: a publish's content (header and body
//! frames) assembled, routed, returned if unroutable and mandatory, and
//! confirmed once durable.

use std::sync::Arc;

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{AMQPClass, basic};
use bytes::{Bytes, BytesMut};
use ferry_auth::Access;
use ferry_core::Message;
use ferry_core::store::Commit;

use super::Channel;
use crate::codec::CLASS_BASIC;
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::properties::message_from_publish;
use crate::reply_to;
use crate::values::short;

/// A publish whose content is still arriving.
pub struct Content {
    publish: basic::Publish,
    header: Option<(AMQPProperties, u64)>,
    body: Body,
    received: u64,
}

/// Most bodies come in one frame: keep that frame's bytes as they are.
enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    fn push(&mut self, part: Bytes, total: u64) {
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty => Body::One(part),
            Body::One(first) => {
                // The announced size is the client's word: reserve it only
                // up to a bound, and grow as the frames arrive.
                let mut all = BytesMut::with_capacity((total as usize).min(1 << 20));
                all.extend_from_slice(&first);
                all.extend_from_slice(&part);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&part);
                Body::Many(all)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        }
    }
}

impl Channel {
    pub(super) fn start_publish(&mut self, cx: &mut Ctx, p: basic::Publish) -> Outcome {
        if p.immediate {
            return Err(Failure::connection(
                ReplyCode::NotImplemented,
                "immediate=true is not supported",
            ));
        }
        cx.published = true;
        self.content = Some(Content {
            publish: p,
            header: None,
            body: Body::Empty,
            received: 0,
        });
        Ok(())
    }

    pub fn on_header(&mut self, cx: &mut Ctx, h: AMQPContentHeader) -> Outcome {
        let Some(c) = self.content.as_mut().filter(|c| c.header.is_none()) else {
            return Err(unexpected(
                "a content header without a basic.publish before it",
            ));
        };
        if h.class_id != CLASS_BASIC {
            return Err(unexpected("a content header of a class other than basic"));
        }
        let max = cx.amqp.config.max_message_size;
        if h.body_size > max {
            self.content = None;
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!(
                    "message size {} is larger than configured max size {max}",
                    h.body_size
                ),
            ));
        }
        c.header = Some((h.properties, h.body_size));
        if h.body_size == 0 {
            return self.finish_publish(cx);
        }
        Ok(())
    }

    pub fn on_body(&mut self, cx: &mut Ctx, part: Bytes) -> Outcome {
        let Some(c) = self.content.as_mut() else {
            return Err(unexpected(
                "a content body without a basic.publish before it",
            ));
        };
        let Some((_, size)) = c.header else {
            return Err(unexpected("a content body before its content header"));
        };
        c.received += part.len() as u64;
        if c.received > size {
            return Err(Failure::connection(
                ReplyCode::FrameError,
                format!("content body longer than the {size} bytes its header announced"),
            ));
        }
        c.body.push(part, size);
        if c.received == size {
            return self.finish_publish(cx);
        }
        Ok(())
    }

    fn finish_publish(&mut self, cx: &mut Ctx) -> Outcome {
        let Some(Content {
            publish,
            header: Some((props, _)),
            body,
            ..
        }) = self.content.take()
        else {
            return Ok(());
        };
        let mut msg = message_from_publish(
            &props,
            body.into_bytes(),
            publish.routing_key.as_str(),
            &cx.user,
        )?;
        if msg.properties.reply_to.as_deref() == Some(reply_to::PSEUDO_QUEUE) {
            let Some(r) = &self.reply else {
                return Err(Failure::channel(
                    ReplyCode::PreconditionFailed,
                    "fast reply consumer does not exist",
                ));
            };
            msg.properties.reply_to = Some(r.address.clone());
        }
        let exchange = publish.exchange.as_str();
        // Checked once per exchange name in a row (a publisher keeps to one).
        if self.may_write.as_deref() != Some(exchange) {
            cx.check(Access::Write, "exchange", exchange)?;
            self.may_write = Some(exchange.to_owned());
        }
        if let Some(tx) = &mut self.tx {
            tx.publishes
                .push((exchange.to_owned(), publish.mandatory, msg));
            return Ok(());
        }
        let (commit, accepted) = self.publish(cx, exchange, publish.mandatory, msg)?;
        if let Some(c) = &mut self.confirms {
            c.push(commit, accepted);
        }
        Ok(())
    }

    /// Routes a message; returns its commit and whether every queue took it.
    pub(super) fn publish(
        &mut self,
        cx: &mut Ctx,
        exchange: &str,
        mandatory: bool,
        msg: Message,
    ) -> Outcome<(Commit, bool)> {
        if exchange.is_empty() && msg.routing_key.starts_with(reply_to::PREFIX) {
            let returned = mandatory.then(|| msg.clone());
            let key = msg.routing_key.clone();
            if !cx.amqp.replies.send(&key, Arc::new(msg))
                && let Some(m) = returned
            {
                self.write_return(cx, exchange, &m);
            }
            return Ok((Commit::done(), true));
        }
        let returned = mandatory.then(|| msg.clone());
        let published = match cx.amqp.broker.publish(&cx.vhost, exchange, msg) {
            Ok(p) => p,
            Err(e) => return Err(Failure::from_core(e, &cx.vhost)),
        };
        cx.traffic.published += 1;
        if published.queues == 0
            && let Some(m) = returned
        {
            self.write_return(cx, exchange, &m);
        }
        Ok((published.commit, published.refused == 0))
    }

    /// basic.return of an unroutable mandatory message.
    fn write_return(&self, cx: &mut Ctx, exchange: &str, m: &Message) {
        let ret = basic::AMQPMethod::Return(basic::Return {
            reply_code: ReplyCode::NoRoute.code(),
            reply_text: short(ReplyCode::NoRoute.name()),
            exchange: short(exchange),
            routing_key: short(&m.routing_key),
        });
        super::basic::send_message(cx, self.to.id, ret, m);
    }
}

/// Writes a publisher confirm.
pub fn confirm(cx: &mut Ctx, channel: u16, tag: u64, multiple: bool, ack: bool) {
    let m = if ack {
        basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: tag,
            multiple,
        })
    } else {
        basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: tag,
            multiple,
            requeue: false,
        })
    };
    cx.out.method(channel, AMQPClass::Basic(m));
}

fn unexpected(what: &str) -> Failure {
    Failure::connection(
        ReplyCode::UnexpectedFrame,
        format!("unexpected frame: {what}"),
    )
}
