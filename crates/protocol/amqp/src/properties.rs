//! AMQP basic properties to and from the core's message, and the `x-death`
//! headers RabbitMQ adds to dead-lettered messages.

use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::FieldTable;
use bytes::Bytes;
use ferry_core::{Death, Message, Properties};

use crate::error::{Failure, Outcome, ReplyCode};
use crate::values::{headers_from_table, short, table_from_headers, value_to_amqp};

/// delivery-mode 2: the message is persistent.
const PERSISTENT: u8 = 2;

/// Builds the core message of a basic.publish. `user` is the connection's
/// user: a `user-id` property naming anyone else is refused, as RabbitMQ does.
pub fn message_from_publish(
    props: &AMQPProperties,
    body: Bytes,
    routing_key: &str,
    user: &str,
) -> Outcome<Message> {
    let mut msg = Message::new(body).with_routing_key(routing_key);
    if let Some(h) = props.headers() {
        msg.headers = headers_from_table(h);
    }
    msg.persistent = props.delivery_mode().is_some_and(|m| m == PERSISTENT);
    let p = &mut msg.properties;
    let text = |s: &Option<amq_protocol::types::ShortString>| s.as_ref().map(|s| s.to_string());
    p.content_type = text(props.content_type());
    p.content_encoding = text(props.content_encoding());
    p.correlation_id = text(props.correlation_id());
    p.reply_to = text(props.reply_to());
    p.app_message_id = text(props.message_id());
    p.kind = text(props.kind());
    p.app_id = text(props.app_id());
    p.priority = *props.priority();
    p.timestamp = *props.timestamp();
    if let Some(e) = props.expiration() {
        p.ttl = Some(parse_expiration(e.as_str())?);
    }
    if let Some(u) = props.user_id() {
        if u.as_str() != user {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!(
                    "user_id property set to '{}' but authenticated user was '{user}'",
                    u.as_str()
                ),
            ));
        }
        p.user_id = Some(user.to_owned());
    }
    Ok(msg)
}

/// `expiration` is a per-message TTL in milliseconds, written as a
/// non-negative decimal integer.
fn parse_expiration(s: &str) -> Outcome<Duration> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::channel(
            ReplyCode::PreconditionFailed,
            format!("invalid expiration '{s}': expected milliseconds as a non-negative integer"),
        ));
    }
    s.parse::<u64>().map(Duration::from_millis).map_err(|_| {
        Failure::channel(
            ReplyCode::PreconditionFailed,
            format!("invalid expiration '{s}': too large"),
        )
    })
}

/// The properties a consumer gets with `msg`.
pub fn properties_of(msg: &Message) -> AMQPProperties {
    let p: &Properties = &msg.properties;
    let mut out = AMQPProperties::default();
    if let Some(v) = &p.content_type {
        out = out.with_content_type(short(v));
    }
    if let Some(v) = &p.content_encoding {
        out = out.with_content_encoding(short(v));
    }
    if !msg.headers.is_empty() || !msg.deaths.is_empty() {
        let mut t = table_from_headers(&msg.headers);
        if !msg.deaths.is_empty() {
            add_deaths(&mut t, &msg.deaths);
        }
        out = out.with_headers(t);
    }
    out = out.with_delivery_mode(if msg.persistent { PERSISTENT } else { 1 });
    if let Some(v) = p.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = &p.correlation_id {
        out = out.with_correlation_id(short(v));
    }
    if let Some(v) = &p.reply_to {
        out = out.with_reply_to(short(v));
    }
    if let Some(ttl) = p.ttl {
        out = out.with_expiration(short(&ttl.as_millis().to_string()));
    }
    if let Some(v) = &p.app_message_id {
        out = out.with_message_id(short(v));
    }
    if let Some(v) = p.timestamp {
        out = out.with_timestamp(v);
    }
    if let Some(v) = &p.kind {
        out = out.with_type(short(v));
    }
    if let Some(v) = &p.user_id {
        out = out.with_user_id(short(v));
    }
    if let Some(v) = &p.app_id {
        out = out.with_app_id(short(v));
    }
    out
}

/// `x-death` and its summaries, as the core words them.
fn add_deaths(t: &mut FieldTable, deaths: &[Death]) {
    for (name, value) in ferry_core::message::death_headers(deaths).iter() {
        t.insert(short(name), value_to_amqp(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::AMQPValue;
    use ferry_core::{DeathReason, Timestamp};

    #[test]
    fn publish_properties_survive_the_round_trip() {
        let mut h = FieldTable::default();
        h.insert("k".into(), AMQPValue::LongString("v".into()));
        let props = AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2)
            .with_priority(5)
            .with_correlation_id("c1".into())
            .with_reply_to("r".into())
            .with_expiration("1500".into())
            .with_message_id("m1".into())
            .with_timestamp(1_700_000_000)
            .with_type("t".into())
            .with_app_id("app".into())
            .with_user_id("guest".into())
            .with_headers(h);
        let msg = message_from_publish(&props, Bytes::from_static(b"x"), "rk", "guest").unwrap();
        assert!(msg.persistent);
        assert_eq!(msg.properties.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(properties_of(&msg), props);
    }

    #[test]
    fn bad_expiration_and_foreign_user_id_are_refused() {
        for e in ["-1", "1.5", "", "soon"] {
            let props = AMQPProperties::default().with_expiration(e.into());
            let f = message_from_publish(&props, Bytes::new(), "", "guest").unwrap_err();
            assert_eq!(f.code, ReplyCode::PreconditionFailed, "{e}");
        }
        let props = AMQPProperties::default().with_user_id("admin".into());
        let f = message_from_publish(&props, Bytes::new(), "", "guest").unwrap_err();
        assert_eq!(f.code, ReplyCode::PreconditionFailed);
    }

    #[test]
    fn dead_lettered_messages_carry_x_death() {
        let m = Message::new("x")
            .with_routing_key("rk")
            .dead_lettered("q1", DeathReason::Rejected, Timestamp(5_000))
            .dead_lettered("q1", DeathReason::Rejected, Timestamp(9_000));
        let props = properties_of(&m);
        let h = props.headers().as_ref().unwrap().inner();
        let Some(AMQPValue::FieldArray(a)) = h.get("x-death") else {
            panic!("no x-death: {h:?}");
        };
        let Some(AMQPValue::FieldTable(e)) = a.as_slice().first() else {
            panic!("empty x-death");
        };
        assert_eq!(e.inner().get("count"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(e.inner().get("time"), Some(&AMQPValue::Timestamp(9)));
        assert_eq!(
            h.get("x-first-death-reason"),
            Some(&AMQPValue::LongString("rejected".into()))
        );
    }
}
