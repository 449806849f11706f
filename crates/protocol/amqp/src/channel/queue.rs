//! The queue class: declare, bind, unbind, purge, delete.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, queue};
use amq_protocol::types::{FieldTable, ShortString};
use ferry_auth::Access;
use ferry_core::CoreError;
use ferry_core::broker::QueueHandle;
use ferry_core::router::{Binding, DEFAULT_ROUTER, Destination};
use ferry_core::store::Commit;

use super::exchange::default_exchange_refused;
use super::{Channel, reserved};
use crate::arguments::{QUEUE_TYPE_ATTRIBUTE, QueueFlags, check_equivalent, queue_config};
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::reply_to;
use crate::stream_queue::arguments::wants_stream;
use crate::values::{headers_from_table, short};

impl Channel {
    pub(super) fn on_queue(&mut self, cx: &mut Ctx, m: queue::AMQPMethod) -> Outcome {
        match m {
            queue::AMQPMethod::Declare(d) => self.queue_declare(cx, d),
            queue::AMQPMethod::Bind(b) => {
                let commit = self.queue_binding(
                    cx,
                    true,
                    &b.queue,
                    &b.exchange,
                    &b.routing_key,
                    &b.arguments,
                )?;
                let ok = (!b.nowait).then(|| ok(queue::AMQPMethod::BindOk(queue::BindOk {})));
                self.answer_when_durable(cx, commit, ok, (50, 20))
            }
            queue::AMQPMethod::Unbind(b) => {
                let commit = self.queue_binding(
                    cx,
                    false,
                    &b.queue,
                    &b.exchange,
                    &b.routing_key,
                    &b.arguments,
                )?;
                let ok = ok(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}));
                self.answer_when_durable(cx, commit, Some(ok), (50, 50))
            }
            queue::AMQPMethod::Purge(p) => {
                if let Some((name, _)) = self.stream_named(cx, &p.queue) {
                    cx.check(Access::Read, "queue", &name)?;
                    return Err(super::stream::not_for_streams(
                        "queue.purge",
                        &name,
                        &cx.vhost,
                    ));
                }
                let q = self.usable_queue(cx, &p.queue)?;
                cx.check(Access::Read, "queue", q.name())?;
                let (n, commit) = cx.amqp.broker.purge(&q, false);
                let ok = (!p.nowait).then(|| {
                    ok(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                        message_count: count(n),
                    }))
                });
                self.answer_when_durable(cx, commit, ok, (50, 30))
            }
            queue::AMQPMethod::Delete(d) => self.queue_delete(cx, d),
            other => Err(super::basic::server_only(&AMQPClass::Queue(other))),
        }
    }

    fn queue_declare(&mut self, cx: &mut Ctx, d: queue::Declare) -> Outcome {
        let broker = &cx.amqp.broker;
        if d.passive {
            let name = self.queue_name(&d.queue)?;
            if name == reply_to::PSEUDO_QUEUE {
                self.declare_ok(cx, &name, 0, 0, d.nowait);
                return Ok(());
            }
            if let Some((name, stream)) = self.stream_named(cx, &d.queue) {
                self.last_queue = Some(name.clone());
                let n = super::stream::records(&stream);
                if !d.nowait {
                    cx.out
                        .method(self.to.id, super::stream::declare_ok(&name, n));
                }
                return Ok(());
            }
            let q = self.usable_queue(cx, &d.queue)?;
            let s = q.stats();
            self.last_queue = Some(name.clone());
            self.declare_ok(cx, &name, s.ready, s.consumers as u64, d.nowait);
            return Ok(());
        }
        let name = if d.queue.as_str().is_empty() {
            server_named(cx.conn_id, self.to.id)
        } else if reserved(d.queue.as_str()) {
            return Err(Failure::channel(
                ReplyCode::AccessRefused,
                format!(
                    "queue name '{}' contains reserved prefix 'amq.*'",
                    d.queue.as_str()
                ),
            ));
        } else {
            d.queue.as_str().to_owned()
        };
        cx.check(Access::Configure, "queue", &name)?;
        let flags = QueueFlags {
            durable: d.durable,
            exclusive_owner: d.exclusive.then_some(cx.conn_id),
            auto_delete: d.auto_delete,
        };
        // A stream queue, asked for or already there under that name.
        match wants_stream(&d.arguments).transpose()? {
            Some(true) => return self.declare_stream(cx, &d, name, flags),
            None if broker.queue(&cx.vhost, &name).is_err()
                && broker.stream(&cx.vhost, &name).is_some() =>
            {
                return self.declare_stream(cx, &d, name, flags);
            }
            Some(false) if broker.stream(&cx.vhost, &name).is_some() => {
                let asked = d
                    .arguments
                    .inner()
                    .get("x-queue-type")
                    .and_then(crate::values::as_text)
                    .unwrap_or_default();
                return Err(Failure::channel(
                    ReplyCode::PreconditionFailed,
                    format!(
                        "inequivalent arg 'x-queue-type' for queue '{name}' in vhost '{}': received '{asked}' but current is 'stream'",
                        cx.vhost
                    ),
                ));
            }
            _ => {}
        }
        // A dead-letter exchange is written to through the queue (RabbitMQ
        // asks for read on the queue and write on the exchange).
        if let Some(dlx) = d.arguments.inner().get("x-dead-letter-exchange")
            && let Some(dlx) = crate::values::as_text(dlx)
        {
            cx.check(Access::Read, "queue", &name)?;
            cx.check(Access::Write, "exchange", &dlx)?;
        }
        let config = queue_config(&name, &cx.vhost, flags, &d.arguments)?;
        if d.exclusive
            && let Ok(existing) = broker.queue(&cx.vhost, &name)
            && existing.config().exclusive_owner.is_none()
        {
            // A shared queue cannot become one connection's: RabbitMQ
            // calls that a lock it cannot take.
            return Err(Failure::from_core(
                CoreError::ExclusiveQueue(name),
                &cx.vhost,
            ));
        }
        if let Ok(existing) = broker.queue(&cx.vhost, &name) {
            let current = existing.config();
            if !current.attributes.contains_key(QUEUE_TYPE_ATTRIBUTE) {
                // Made through another face: equivalent if nothing asked
                // for contradicts it (see `check_equivalent`).
                check_equivalent(&name, &cx.vhost, &current, &config, &d.arguments)?;
                let s = existing.stats();
                self.last_queue = Some(name.clone());
                let ok = (!d.nowait).then(|| declare_ok(&name, s.ready, s.consumers as u64));
                return self.answer_when_durable(cx, broker.barrier(), ok, (50, 10));
            }
        }
        let (declared, commit) = broker
            .declare_queue(&cx.vhost, &name, config)
            .map_err(|e| Failure::from_core(e, &cx.vhost))?;
        if declared.created && d.exclusive {
            cx.exclusive.push(name.clone());
        }
        let s = declared.queue.stats();
        self.last_queue = Some(name.clone());
        let ok = (!d.nowait).then(|| declare_ok(&name, s.ready, s.consumers as u64));
        self.answer_when_durable(cx, commit, ok, (50, 10))
    }

    fn declare_ok(&self, cx: &mut Ctx, name: &str, messages: u64, consumers: u64, nowait: bool) {
        if !nowait {
            cx.out
                .method(self.to.id, declare_ok(name, messages, consumers));
        }
    }

    fn queue_delete(&mut self, cx: &mut Ctx, d: queue::Delete) -> Outcome {
        let name = self.queue_name(&d.queue)?;
        cx.check(Access::Configure, "queue", &name)?;
        if let Some((name, stream)) = self.stream_named(cx, &d.queue) {
            return self.delete_stream(cx, name, stream, d.nowait);
        }
        let broker = &cx.amqp.broker;
        // Deleting what is not there succeeds, as in RabbitMQ (after
        // whatever deleted it is durable).
        let (n, commit) = match broker.queue(&cx.vhost, &name) {
            Err(CoreError::QueueNotFound(_)) => (0, broker.barrier()),
            Err(e) => return Err(Failure::from_core(e, &cx.vhost)),
            Ok(q) => {
                q.check_owner(Some(cx.conn_id))
                    .map_err(|e| Failure::from_core(e, &cx.vhost))?;
                match broker.delete_queue(&cx.vhost, &name, d.if_unused, d.if_empty) {
                    Ok(deleted) => deleted,
                    Err(CoreError::QueueNotFound(_)) => (0, broker.barrier()),
                    Err(e) => return Err(Failure::from_core(e, &cx.vhost)),
                }
            }
        };
        let ok = (!d.nowait).then(|| {
            ok(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                message_count: count(n),
            }))
        });
        self.answer_when_durable(cx, commit, ok, (50, 40))
    }

    fn queue_binding(
        &mut self,
        cx: &mut Ctx,
        add: bool,
        queue: &ShortString,
        exchange: &ShortString,
        routing_key: &ShortString,
        args: &FieldTable,
    ) -> Outcome<Commit> {
        if exchange.as_str() == DEFAULT_ROUTER {
            return Err(default_exchange_refused());
        }
        // Unbinding from a queue that is gone succeeds, as in RabbitMQ
        // (teardown code unbinds after an auto-delete queue went), once the
        // user may: permissions come first, as there. A name that names
        // nothing (no queue declared on the channel yet) is still 404.
        if !add {
            let name = self.queue_name(queue)?;
            if cx.amqp.broker.queue(&cx.vhost, &name).is_err() {
                cx.check(Access::Write, "queue", &name)?;
                cx.check(Access::Read, "exchange", exchange.as_str())?;
                return Ok(cx.amqp.broker.barrier());
            }
        }
        // A stream queue is bound by name, as a queue is.
        let target = match self.stream_named(cx, queue) {
            Some((name, _)) => name,
            None => self.usable_queue(cx, queue)?.name().to_owned(),
        };
        cx.check(Access::Write, "queue", &target)?;
        cx.check(Access::Read, "exchange", exchange.as_str())?;
        // An empty routing key with an empty queue name means the last
        // declared queue's name (the spec's shorthand).
        let key = if queue.as_str().is_empty() && routing_key.as_str().is_empty() {
            target.as_str()
        } else {
            routing_key.as_str()
        };
        let binding = Binding::new(exchange.as_str(), Destination::queue(&target), key)
            .with_args(headers_from_table(args));
        let broker = &cx.amqp.broker;
        let r = if add {
            broker.bind(&cx.vhost, binding)
        } else {
            match broker.unbind(&cx.vhost, binding) {
                // So does unbinding from an exchange that is gone.
                Err(CoreError::RouterNotFound(_)) => Ok((false, broker.barrier())),
                r => r,
            }
        };
        r.map(|(_, commit)| commit)
            .map_err(|e| Failure::from_core(e, &cx.vhost))
    }

    /// The queue a method names ("" is the last declared), which must exist
    /// and not be another connection's exclusive queue.
    pub(super) fn usable_queue(&self, cx: &Ctx, name: &ShortString) -> Outcome<Arc<QueueHandle>> {
        let name = self.queue_name(name)?;
        let q = cx
            .amqp
            .broker
            .queue(&cx.vhost, &name)
            .map_err(|e| Failure::from_core(e, &cx.vhost))?;
        q.check_owner(Some(cx.conn_id))
            .map_err(|e| Failure::from_core(e, &cx.vhost))?;
        Ok(q)
    }

    pub(super) fn queue_name(&self, name: &ShortString) -> Outcome<String> {
        if !name.as_str().is_empty() {
            return Ok(name.as_str().to_owned());
        }
        self.last_queue.clone().ok_or_else(|| {
            Failure::channel(
                ReplyCode::NotFound,
                "no previously declared queue on this channel to default to",
            )
        })
    }
}

/// A name for a queue declared without one, as RabbitMQ spells them.
fn server_named(conn: u64, channel: u16) -> String {
    use std::hash::BuildHasher;
    let nonce = std::collections::hash_map::RandomState::new().hash_one((conn, channel));
    format!("amq.gen-{conn:x}-{channel:x}-{nonce:016x}")
}

/// Counts on the wire are 32-bit.
fn count(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ok(m: queue::AMQPMethod) -> AMQPClass {
    AMQPClass::Queue(m)
}

fn declare_ok(name: &str, messages: u64, consumers: u64) -> AMQPClass {
    ok(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
        queue: short(name),
        message_count: count(messages),
        consumer_count: count(consumers),
    }))
}
