//! The `x-` arguments of queue.declare and exchange.declare, checked and
//! turned into core settings, with RabbitMQ's errors for bad ones.

use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable};
use ferry_core::queue::{DeadLetterPolicy, DeadLetterTarget, Overflow, QueueConfig};
use ferry_core::router::{RouterConfig, RouterKind};

use crate::error::{Failure, Outcome, ReplyCode};
use crate::values::{as_int, as_text};

/// The delivery limit of a quorum queue declared without one (RabbitMQ 4).
pub const DEFAULT_QUORUM_DELIVERY_LIMIT: u32 = 20;
/// Where the queue type is kept among a queue's protocol attributes (so
/// a redeclaration with another type is inequivalent).
pub const QUEUE_TYPE_ATTRIBUTE: &str = "amqp.queue-type";

/// The flags of a queue.declare.
pub struct QueueFlags {
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
}

/// A queue's settings from its declare flags and arguments.
pub fn queue_config(
    name: &str,
    vhost: &str,
    flags: QueueFlags,
    args: &FieldTable,
) -> Outcome<QueueConfig> {
    let bad = |arg: &str, why: &str| {
        Failure::channel(
            ReplyCode::PreconditionFailed,
            format!("invalid arg '{arg}' for queue '{name}' in vhost '{vhost}': {why}"),
        )
    };
    let mut c = QueueConfig {
        durable: flags.durable,
        exclusive_owner: flags.exclusive_owner,
        auto_delete: flags.auto_delete,
        ..QueueConfig::default()
    };
    let get = |k: &str| args.inner().get(k);
    let non_negative = |k: &str| -> Outcome<Option<u64>> {
        match get(k) {
            None => Ok(None),
            Some(v) => match as_int(v) {
                Some(i) if i >= 0 => Ok(Some(i as u64)),
                Some(_) => Err(bad(k, "must be a non-negative integer")),
                None => Err(bad(k, "must be an integer")),
            },
        }
    };
    if let Some(ms) = non_negative("x-message-ttl")? {
        c.message_ttl = Some(Duration::from_millis(ms));
    }
    if let Some(ms) = non_negative("x-expires")? {
        if ms == 0 {
            return Err(bad("x-expires", "must be positive"));
        }
        c.expires = Some(Duration::from_millis(ms));
    }
    c.max_length = non_negative("x-max-length")?;
    c.max_bytes = non_negative("x-max-length-bytes")?;
    if let Some(v) = get("x-overflow") {
        c.overflow = match as_text(v).as_deref() {
            Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDeadLetter,
            _ => {
                return Err(bad(
                    "x-overflow",
                    "expected drop-head, reject-publish or reject-publish-dlx",
                ));
            }
        };
    }
    if let Some(p) = non_negative("x-max-priority")? {
        if p > 255 {
            return Err(bad("x-max-priority", "must be at most 255"));
        }
        c.max_priority = p as u8;
    }
    if let Some(v) = get("x-single-active-consumer") {
        c.single_active_consumer = match v {
            AMQPValue::Boolean(b) => *b,
            _ => return Err(bad("x-single-active-consumer", "must be a boolean")),
        };
    }
    // ferry's own: seal this queue's messages at rest with the named key
    // (`ferry serve --encryption-queue-key NAME=FILE`) instead of the
    // journal's. The broker refuses a name it holds no key for.
    if let Some(v) = get("x-encryption-key") {
        c.encryption_key =
            Some(as_text(v).ok_or_else(|| bad("x-encryption-key", "must be a string"))?);
    }
    let dlx = match get("x-dead-letter-exchange") {
        None => None,
        Some(v) => {
            Some(as_text(v).ok_or_else(|| bad("x-dead-letter-exchange", "must be a string"))?)
        }
    };
    let dlrk = match get("x-dead-letter-routing-key") {
        None => None,
        Some(v) => {
            Some(as_text(v).ok_or_else(|| bad("x-dead-letter-routing-key", "must be a string"))?)
        }
    };
    if dlrk.is_some() && dlx.is_none() {
        return Err(bad(
            "x-dead-letter-routing-key",
            "x-dead-letter-exchange must also be set",
        ));
    }
    if let Some(router) = dlx {
        c.dead_letter = Some(DeadLetterPolicy::all_reasons(DeadLetterTarget::Router {
            router,
            routing_key: dlrk,
        }));
    }
    let kind = match get("x-queue-type") {
        None => "classic".to_owned(),
        Some(v) => as_text(v).ok_or_else(|| bad("x-queue-type", "must be a string"))?,
    };
    match kind.as_str() {
        "classic" => {
            if get("x-delivery-limit").is_some() {
                return Err(bad(
                    "x-delivery-limit",
                    "only quorum queues have a delivery limit",
                ));
            }
        }
        "quorum" => {
            if !c.durable {
                return Err(quorum_property(name, vhost, "non-durable"));
            }
            if c.exclusive_owner.is_some() {
                return Err(quorum_property(name, vhost, "exclusive"));
            }
            if c.auto_delete {
                return Err(quorum_property(name, vhost, "auto-delete"));
            }
            let limit = match non_negative("x-delivery-limit")? {
                // A limit of n lets a message be delivered n + 1 times: the
                // n-th return is the last one allowed.
                Some(n) => u32::try_from(n + 1).unwrap_or(u32::MAX),
                None => DEFAULT_QUORUM_DELIVERY_LIMIT + 1,
            };
            let policy = c.dead_letter.get_or_insert(DeadLetterPolicy {
                target: DeadLetterTarget::Discard,
                max_deliveries: None,
                on_rejected: false,
                on_expired: false,
                on_overflow: false,
            });
            policy.max_deliveries = Some(limit);
        }
        // A stream queue is not a queue of the queue engine: declare takes
        // it to `stream_queue::arguments::stream_config` before this.
        "stream" => {
            return Err(Failure::channel(
                ReplyCode::InternalError,
                format!(
                    "queue '{name}' in vhost '{vhost}': a stream queue reached the queue engine"
                ),
            ));
        }
        other => {
            return Err(bad(
                "x-queue-type",
                &format!("unknown queue type '{other}'"),
            ));
        }
    }
    c.attributes.insert(QUEUE_TYPE_ATTRIBUTE.to_owned(), kind);
    Ok(c)
}

/// Whether a declare that asks for `requested` (with these flags and
/// `args`) may take `current`, a queue made through another face (SQS, the
/// admin API: it has no AMQP queue type). Only what AMQP can say is
/// compared: the flags, and each argument the declare gives. Settings AMQP
/// has no argument for (an SQS queue's visibility timeout, its attributes)
/// and settings the declare leaves out (an SQS retention period is the
/// queue's message TTL) are the queue's own, as `docs/protocol-mapping.md`
/// describes. Refused as RabbitMQ refuses an inequivalent redeclare.
pub fn check_equivalent(
    name: &str,
    vhost: &str,
    current: &QueueConfig,
    requested: &QueueConfig,
    args: &FieldTable,
) -> Outcome<()> {
    let inequivalent = |what: &str, received: String, now: String| {
        Failure::channel(
            ReplyCode::PreconditionFailed,
            format!(
                "inequivalent arg '{what}' for queue '{name}' in vhost '{vhost}': received '{received}' but current is '{now}'"
            ),
        )
    };
    let flag = |what: &str, r: bool, c: bool| {
        if r == c {
            Ok(())
        } else {
            Err(inequivalent(what, r.to_string(), c.to_string()))
        }
    };
    flag("durable", requested.durable, current.durable)?;
    flag("auto_delete", requested.auto_delete, current.auto_delete)?;
    flag(
        "exclusive",
        requested.exclusive_owner.is_some(),
        current.exclusive_owner.is_some(),
    )?;
    let given = |k: &str| args.inner().contains_key(k);
    let differs = |k: &str, r: String, c: String| {
        if given(k) && r != c {
            Err(inequivalent(k, r, c))
        } else {
            Ok(())
        }
    };
    let ms = |d: Option<Duration>| d.map_or("none".into(), |d| d.as_millis().to_string());
    let n = |v: Option<u64>| v.map_or("none".into(), |v| v.to_string());
    differs(
        "x-message-ttl",
        ms(requested.message_ttl),
        ms(current.message_ttl),
    )?;
    differs("x-expires", ms(requested.expires), ms(current.expires))?;
    differs(
        "x-max-length",
        n(requested.max_length),
        n(current.max_length),
    )?;
    differs(
        "x-max-length-bytes",
        n(requested.max_bytes),
        n(current.max_bytes),
    )?;
    let overflow = |o: Overflow| match o {
        Overflow::DropHead => "drop-head".to_owned(),
        Overflow::RejectPublish => "reject-publish".to_owned(),
        Overflow::RejectPublishDeadLetter => "reject-publish-dlx".to_owned(),
    };
    differs(
        "x-overflow",
        overflow(requested.overflow),
        overflow(current.overflow),
    )?;
    differs(
        "x-max-priority",
        requested.max_priority.to_string(),
        current.max_priority.to_string(),
    )?;
    differs(
        "x-single-active-consumer",
        requested.single_active_consumer.to_string(),
        current.single_active_consumer.to_string(),
    )?;
    let text = |v: Option<&str>| v.unwrap_or("none").to_owned();
    differs(
        "x-encryption-key",
        text(requested.encryption_key.as_deref()),
        text(current.encryption_key.as_deref()),
    )?;
    // Each dead-letter argument against its own part of the policy: an
    // SQS redrive policy (to a queue) has no exchange, and its receive
    // count is a delivery limit one higher than RabbitMQ's.
    let router = |c: &QueueConfig| match c.dead_letter.as_ref().map(|p| &p.target) {
        Some(DeadLetterTarget::Router { router, .. }) => router.clone(),
        _ => "none".to_owned(),
    };
    let routing_key = |c: &QueueConfig| match c.dead_letter.as_ref().map(|p| &p.target) {
        Some(DeadLetterTarget::Router {
            routing_key: Some(k),
            ..
        }) => k.clone(),
        _ => "none".to_owned(),
    };
    let limit = |c: &QueueConfig| {
        n(c.dead_letter
            .as_ref()
            .and_then(|p| p.max_deliveries)
            .map(|m| u64::from(m.saturating_sub(1))))
    };
    differs("x-dead-letter-exchange", router(requested), router(current))?;
    differs(
        "x-dead-letter-routing-key",
        routing_key(requested),
        routing_key(current),
    )?;
    differs("x-delivery-limit", limit(requested), limit(current))?;
    Ok(())
}

pub(crate) fn quorum_property(name: &str, vhost: &str, what: &str) -> Failure {
    Failure::channel(
        ReplyCode::PreconditionFailed,
        format!("invalid property '{what}' for queue '{name}' in vhost '{vhost}'"),
    )
}

/// The flags of an exchange.declare.
pub struct ExchangeFlags<'a> {
    pub kind: &'a str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
}

/// An exchange's settings from its declare flags and arguments. An unknown
/// type is a connection error (503), as in RabbitMQ.
pub fn exchange_config(flags: ExchangeFlags<'_>, args: &FieldTable) -> Outcome<RouterConfig> {
    let kind = match flags.kind {
        "direct" => RouterKind::Direct,
        "fanout" => RouterKind::Fanout,
        "topic" => RouterKind::Topic,
        "headers" => RouterKind::Headers,
        // A channel error since RabbitMQ 3.12 (it closed the connection).
        other => {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!("unknown exchange type '{other}'"),
            ));
        }
    };
    let mut c = RouterConfig::new(kind);
    c.durable = flags.durable;
    c.auto_delete = flags.auto_delete;
    c.internal = flags.internal;
    if let Some(v) = args.inner().get("alternate-exchange") {
        c.alternate = Some(as_text(v).ok_or_else(|| {
            Failure::channel(
                ReplyCode::PreconditionFailed,
                "invalid arg 'alternate-exchange': must be a string",
            )
        })?);
    }
    Ok(c)
}

/// The name of a router kind as exchange.declare spells it.
pub fn kind_name(kind: RouterKind) -> &'static str {
    match kind {
        RouterKind::Direct => "direct",
        RouterKind::Fanout => "fanout",
        RouterKind::Topic => "topic",
        RouterKind::Headers => "headers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> QueueFlags {
        QueueFlags {
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
        }
    }

    fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn rabbitmq_arguments_become_queue_settings() {
        let a = args(&[
            ("x-message-ttl", AMQPValue::LongInt(1000)),
            ("x-expires", AMQPValue::ShortInt(500)),
            ("x-max-length", AMQPValue::LongLongInt(10)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
            ("x-max-priority", AMQPValue::ShortShortUInt(9)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString("dlx".into()),
            ),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString("dead".into()),
            ),
            ("x-single-active-consumer", AMQPValue::Boolean(true)),
        ]);
        let c = queue_config("q", "/", flags(), &a).unwrap();
        assert_eq!(c.message_ttl, Some(Duration::from_secs(1)));
        assert_eq!(c.expires, Some(Duration::from_millis(500)));
        assert_eq!(c.max_length, Some(10));
        assert_eq!(c.overflow, Overflow::RejectPublish);
        assert_eq!(c.max_priority, 9);
        assert!(c.single_active_consumer);
        let dl = c.dead_letter.unwrap();
        assert_eq!(
            dl.target,
            DeadLetterTarget::Router {
                router: "dlx".into(),
                routing_key: Some("dead".into())
            }
        );
        assert!(dl.on_rejected && dl.on_expired && dl.on_overflow);
    }

    #[test]
    fn bad_arguments_are_precondition_failures() {
        for a in [
            args(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
            args(&[("x-message-ttl", AMQPValue::LongString("10".into()))]),
            args(&[("x-overflow", AMQPValue::LongString("explode".into()))]),
            args(&[("x-max-priority", AMQPValue::LongInt(256))]),
            args(&[("x-queue-type", AMQPValue::LongString("weird".into()))]),
            args(&[(
                "x-dead-letter-routing-key",
                AMQPValue::LongString("k".into()),
            )]),
        ] {
            let f = queue_config("q", "/", flags(), &a).unwrap_err();
            assert_eq!(f.code, ReplyCode::PreconditionFailed, "{a:?}");
        }
    }

    #[test]
    fn quorum_queues_get_a_delivery_limit_and_refuse_transient_flags() {
        let q = args(&[
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ("x-delivery-limit", AMQPValue::LongInt(3)),
        ]);
        let c = queue_config("q", "/", flags(), &q).unwrap();
        let dl = c.dead_letter.unwrap();
        assert_eq!(dl.target, DeadLetterTarget::Discard);
        assert_eq!(dl.max_deliveries, Some(4));
        let transient = QueueFlags {
            durable: false,
            ..flags()
        };
        assert!(queue_config("q", "/", transient, &q).is_err());
    }
}
