//! The exchange class: declare, delete, bind, unbind (exchange to exchange).

use amq_protocol::protocol::{AMQPClass, exchange};
use amq_protocol::types::{FieldTable, ShortString};
use ferry_auth::Access;
use ferry_core::CoreError;
use ferry_core::router::{Binding, DEFAULT_ROUTER, Destination};
use ferry_core::store::Commit;

use super::{Channel, reserved};
use crate::arguments::{ExchangeFlags, exchange_config, kind_name};
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::values::headers_from_table;

impl Channel {
    pub(super) fn on_exchange(&mut self, cx: &mut Ctx, m: exchange::AMQPMethod) -> Outcome {
        match m {
            exchange::AMQPMethod::Declare(d) => self.exchange_declare(cx, d),
            exchange::AMQPMethod::Delete(d) => self.exchange_delete(cx, d),
            exchange::AMQPMethod::Bind(b) => {
                let ends = (&b.destination, &b.source, &b.routing_key, &b.arguments);
                let commit = self.exchange_binding(cx, true, ends)?;
                let ok = (!b.nowait).then(|| ok(exchange::AMQPMethod::BindOk(exchange::BindOk {})));
                self.answer_when_durable(cx, commit, ok, (40, 30))
            }
            exchange::AMQPMethod::Unbind(b) => {
                let ends = (&b.destination, &b.source, &b.routing_key, &b.arguments);
                let commit = self.exchange_binding(cx, false, ends)?;
                let ok =
                    (!b.nowait).then(|| ok(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})));
                self.answer_when_durable(cx, commit, ok, (40, 40))
            }
            other => Err(super::basic::server_only(&AMQPClass::Exchange(other))),
        }
    }

    fn exchange_declare(&mut self, cx: &mut Ctx, d: exchange::Declare) -> Outcome {
        let name = d.exchange.as_str();
        let broker = &cx.amqp.broker;
        // What declare-ok waits for: a new exchange's record, or (when it
        // exists) whatever journaled it, which may be a moment old.
        let mut commit = Commit::done();
        if name == DEFAULT_ROUTER {
            if !d.passive {
                return Err(default_exchange_refused());
            }
        } else if d.passive {
            broker
                .router_config(&cx.vhost, name)
                .map_err(|e| Failure::from_core(e, &cx.vhost))?;
        } else {
            cx.check(Access::Configure, "exchange", name)?;
            // Unroutable messages go on to the alternate exchange.
            if let Some(ae) = d.arguments.inner().get("alternate-exchange")
                && let Some(ae) = crate::values::as_text(ae)
            {
                cx.check(Access::Read, "exchange", name)?;
                cx.check(Access::Write, "exchange", &ae)?;
            }
            let config = exchange_config(
                ExchangeFlags {
                    kind: d.kind.as_str(),
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                },
                &d.arguments,
            )?;
            let existing = broker.router_config(&cx.vhost, name).ok();
            match existing {
                Some(c) if c != config => {
                    return Err(Failure::channel(
                        ReplyCode::PreconditionFailed,
                        format!(
                            "inequivalent arg for exchange '{name}' in vhost '{}': received \
                             type '{}' durable {} auto_delete {} internal {}, but current is \
                             type '{}' durable {} auto_delete {} internal {}",
                            cx.vhost,
                            kind_name(config.kind),
                            config.durable,
                            config.auto_delete,
                            config.internal,
                            kind_name(c.kind),
                            c.durable,
                            c.auto_delete,
                            c.internal
                        ),
                    ));
                }
                Some(_) => commit = broker.barrier(),
                None if reserved(name) => {
                    return Err(Failure::channel(
                        ReplyCode::AccessRefused,
                        format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
                    ));
                }
                None => match broker.declare_router(&cx.vhost, name, config) {
                    Ok((_, c)) => commit = c,
                    // Declared by another connection meanwhile, differently.
                    Err(e @ CoreError::RouterExists { .. }) => {
                        return Err(Failure::from_core(e, &cx.vhost));
                    }
                    Err(e) => return Err(Failure::from_core(e, &cx.vhost)),
                },
            }
        }
        let ok = (!d.nowait).then(|| ok(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})));
        self.answer_when_durable(cx, commit, ok, (40, 10))
    }

    fn exchange_delete(&mut self, cx: &mut Ctx, d: exchange::Delete) -> Outcome {
        let name = d.exchange.as_str();
        if name == DEFAULT_ROUTER || reserved(name) {
            return Err(Failure::channel(
                ReplyCode::AccessRefused,
                format!(
                    "deleting exchange '{name}' in vhost '{}' is not allowed",
                    cx.vhost
                ),
            ));
        }
        cx.check(Access::Configure, "exchange", name)?;
        let broker = &cx.amqp.broker;
        let commit = match broker.delete_router(&cx.vhost, name, d.if_unused) {
            Ok(commit) => commit,
            // Deleting what is not there succeeds, as in RabbitMQ (after
            // whatever deleted it is durable).
            Err(CoreError::RouterNotFound(_)) => broker.barrier(),
            Err(CoreError::QueueInUse(_)) => {
                return Err(Failure::channel(
                    ReplyCode::PreconditionFailed,
                    format!("exchange '{name}' in vhost '{}' in use", cx.vhost),
                ));
            }
            Err(e) => return Err(Failure::from_core(e, &cx.vhost)),
        };
        let ok = (!d.nowait).then(|| ok(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})));
        self.answer_when_durable(cx, commit, ok, (40, 20))
    }

    /// exchange.bind (`add`) or exchange.unbind: messages flow from
    /// `source` to `destination`.
    fn exchange_binding(
        &mut self,
        cx: &mut Ctx,
        add: bool,
        ends: BindingEnds<'_>,
    ) -> Outcome<Commit> {
        let (destination, source, routing_key, args) = ends;
        let (src, dst) = (source.as_str(), destination.as_str());
        if src == DEFAULT_ROUTER || dst == DEFAULT_ROUTER {
            return Err(default_exchange_refused());
        }
        cx.check(Access::Write, "exchange", dst)?;
        cx.check(Access::Read, "exchange", src)?;
        let binding = Binding::new(src, Destination::router(dst), routing_key.as_str())
            .with_args(headers_from_table(args));
        let broker = &cx.amqp.broker;
        let r = if add {
            broker.bind(&cx.vhost, binding)
        } else {
            // Unbinding what is not bound, or from or to an exchange that
            // is gone, succeeds, as in RabbitMQ.
            match broker.unbind(&cx.vhost, binding) {
                Err(CoreError::RouterNotFound(_)) => Ok((false, broker.barrier())),
                r => r,
            }
        };
        r.map(|(_, commit)| commit)
            .map_err(|e| Failure::from_core(e, &cx.vhost))
    }
}

/// destination, source, routing key, arguments.
type BindingEnds<'a> = (
    &'a ShortString,
    &'a ShortString,
    &'a ShortString,
    &'a FieldTable,
);

fn ok(m: exchange::AMQPMethod) -> AMQPClass {
    AMQPClass::Exchange(m)
}

pub(super) fn default_exchange_refused() -> Failure {
    Failure::channel(
        ReplyCode::AccessRefused,
        "operation not permitted on the default exchange",
    )
}
