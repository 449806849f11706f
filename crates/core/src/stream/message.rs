//! A core [`Message`] as a stream record and back: how a message routed
//! into a stream (an AMQP publish to a stream queue or to an exchange
//! bound to one) is stored, and how a stored record (from Kafka, say) is
//! delivered through a queue-shaped face. `docs/protocol-mapping.md`
//! writes the mapping down; the rules:
//!
//! - value <-> body; the record's timestamp is the broker's publish time.
//! - key <-> routing key (so a Kafka consumer sees the routing key as the
//!   key, and a keyed Kafka record reaches AMQP with it as routing key). A
//!   key that is not UTF-8 text of at most 255 bytes reaches the message as
//!   its routing key's lossy text and, whole, in the `x-stream-key` header.
//! - application headers <-> record headers of the same name. Text and
//!   bytes are the header's value as they are; any other type is written
//!   as readable text, with its exact typed value beside it in a header
//!   named `:t:` + the name, so the message reads back with its types.
//! - properties and the exchange ride in headers whose names start with
//!   `:` (HTTP/2's pseudo-header convention), so they come back as
//!   properties, not headers; an application header whose own name starts
//!   with `:` is stored with the colon doubled (`::name`).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::batch::Record;
use crate::clock::Timestamp;
use crate::message::{Headers, Message, Value};

/// Where an unrepresentable key goes, whole.
pub const KEY_HEADER: &str = "x-stream-key";
/// The prefix of the header carrying another header's exact type.
const TYPED: &str = ":t:";
/// Longest AMQP routing key (a short string).
const MAX_ROUTING_KEY: usize = 255;

/// The record `msg` is stored as (its offset is the log's to set).
pub fn record_of(msg: &Message) -> Record {
    let mut headers: Vec<(String, Option<Bytes>)> = Vec::with_capacity(msg.headers.len());
    // A dead letter's history goes as the headers RabbitMQ shows it with
    // (typed, so an AMQP consumer reads `x-death` back as a table).
    let deaths = crate::message::death_headers(&msg.deaths);
    // A republished dead letter may carry an old `x-death` of its own:
    // the history the broker kept replaces it, as on an AMQP delivery.
    let own = msg
        .headers
        .iter()
        .filter(|(name, _)| deaths.get(name).is_none());
    for (name, value) in own.chain(deaths.iter()) {
        // An application's own `:` name is escaped by doubling the colon,
        // so it never reads back as a property or a type.
        let escaped;
        let name = if name.starts_with(':') {
            escaped = format!(":{name}");
            escaped.as_str()
        } else {
            name
        };
        match value {
            Value::Str(s) => headers.push((name.to_owned(), Some(Bytes::from(s.clone())))),
            Value::Bytes(b) => headers.push((name.to_owned(), Some(b.clone()))),
            Value::Null => headers.push((name.to_owned(), None)),
            other => {
                headers.push((name.to_owned(), Some(Bytes::from(text_of(other)))));
                let mut typed = BytesMut::new();
                encode_value(other, &mut typed, 0);
                headers.push((format!("{TYPED}{name}"), Some(typed.freeze())));
            }
        }
    }
    let p = &msg.properties;
    let mut prop = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            headers.push((name.to_owned(), Some(Bytes::from(v))));
        }
    };
    prop(":exchange", msg.router.clone());
    prop(":content-type", p.content_type.clone());
    prop(":content-encoding", p.content_encoding.clone());
    prop(":correlation-id", p.correlation_id.clone());
    prop(":reply-to", p.reply_to.clone());
    prop(":expiration", p.ttl.map(|t| t.as_millis().to_string()));
    prop(":priority", p.priority.map(|v| v.to_string()));
    prop(":timestamp", p.timestamp.map(|v| v.to_string()));
    prop(":type", p.kind.clone());
    prop(":message-id", p.app_message_id.clone());
    prop(":user-id", p.user_id.clone());
    prop(":app-id", p.app_id.clone());
    prop(":trace-context", p.trace_context.clone());
    prop(":group-id", msg.group_id.clone());
    Record {
        offset: 0,
        timestamp: msg.published_at.as_millis() as i64,
        key: (!msg.routing_key.is_empty()).then(|| Bytes::from(msg.routing_key.clone())),
        value: Some(msg.body.clone()),
        headers,
    }
}

/// The message a stored record is delivered as. Streams keep everything,
/// so it is persistent.
pub fn message_of(r: &Record) -> Message {
    let mut msg = Message::new(r.value.clone().unwrap_or_default());
    msg.persistent = true;
    msg.published_at = Timestamp::from_millis(r.timestamp.max(0) as u64);
    if let Some(key) = &r.key {
        match std::str::from_utf8(key) {
            Ok(s) if s.len() <= MAX_ROUTING_KEY => msg.routing_key = s.to_owned(),
            _ => {
                let lossy = String::from_utf8_lossy(key);
                msg.routing_key = truncate(&lossy, MAX_ROUTING_KEY).to_owned();
                msg.headers.insert(KEY_HEADER, Value::Bytes(key.clone()));
            }
        }
    }
    // The typed twins, found once (most records have none): a lookup per
    // header would cost the square of the header count.
    let twins: std::collections::HashMap<&str, &Bytes> = r
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(TYPED)?, v.as_ref()?)))
        .collect();
    let typed = |name: &str| -> Option<Value> {
        twins
            .get(name)
            .and_then(|v| decode_value(&mut (*v).clone(), 0))
    };
    let mut out = Vec::with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        if name.starts_with(TYPED) {
            continue;
        }
        let text = || {
            value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let p = &mut msg.properties;
        match name.as_str() {
            ":exchange" => msg.router = text(),
            ":content-type" => p.content_type = text(),
            ":content-encoding" => p.content_encoding = text(),
            ":correlation-id" => p.correlation_id = text(),
            ":reply-to" => p.reply_to = text(),
            ":expiration" => {
                p.ttl = text()
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_millis)
            }
            ":priority" => p.priority = text().and_then(|t| t.parse().ok()),
            ":timestamp" => p.timestamp = text().and_then(|t| t.parse().ok()),
            ":type" => p.kind = text(),
            ":message-id" => p.app_message_id = text(),
            ":user-id" => p.user_id = text(),
            ":app-id" => p.app_id = text(),
            ":trace-context" => p.trace_context = text(),
            ":group-id" => msg.group_id = text(),
            _ => {
                // `::x` is the application's `:x` (see `record_of`).
                let own = if name.starts_with("::") {
                    name.get(1..).unwrap_or_default().to_owned()
                } else {
                    name.clone()
                };
                let v = match typed(name) {
                    Some(v) => v,
                    None => match value {
                        None => Value::Null,
                        Some(b) => match std::str::from_utf8(b) {
                            Ok(s) => Value::Str(s.to_owned()),
                            Err(_) => Value::Bytes(b.clone()),
                        },
                    },
                };
                out.push((own, v));
            }
        }
    }
    // Earlier headers (the key's) first, then the record's in its order.
    msg.headers.0.extend(out);
    msg
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// A header value as a reader of plain Kafka headers would want it.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal { scale, value } => {
            let s = value.unsigned_abs().to_string();
            let scale = *scale as usize;
            let sign = if *value < 0 { "-" } else { "" };
            if scale == 0 {
                format!("{sign}{s}")
            } else if s.len() > scale {
                let (int, frac) = s.split_at(s.len() - scale);
                format!("{sign}{int}.{frac}")
            } else {
                format!("{sign}0.{}{s}", "0".repeat(scale - s.len()))
            }
        }
        Value::Str(s) | Value::Number(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Timestamp(t) => t.to_string(),
        Value::List(l) => {
            let items: Vec<String> = l.iter().map(text_of).collect();
            format!("[{}]", items.join(","))
        }
        Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k}={}", text_of(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Labeled { value, .. } => text_of(value),
    }
}

/// Nesting deeper than this is written as null: a header set is small,
/// and a decoder must not recurse without bound on stored input.
const MAX_DEPTH: usize = 16;

/// The exact typed value: one tag byte, then the payload (lengths u32).
fn encode_value(v: &Value, out: &mut BytesMut, depth: usize) {
    if depth >= MAX_DEPTH {
        out.put_u8(b'N');
        return;
    }
    let put_bytes = |out: &mut BytesMut, b: &[u8]| {
        out.put_u32(b.len() as u32);
        out.put_slice(b);
    };
    match v {
        Value::Null => out.put_u8(b'N'),
        Value::Bool(b) => {
            out.put_u8(b'b');
            out.put_u8(u8::from(*b));
        }
        Value::Int(i) => {
            out.put_u8(b'i');
            out.put_i64(*i);
        }
        Value::Float(f) => {
            out.put_u8(b'f');
            out.put_f64(*f);
        }
        Value::Decimal { scale, value } => {
            out.put_u8(b'd');
            out.put_u8(*scale);
            out.put_i32(*value);
        }
        Value::Str(s) => {
            out.put_u8(b's');
            put_bytes(out, s.as_bytes());
        }
        Value::Number(s) => {
            out.put_u8(b'n');
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.put_u8(b'x');
            put_bytes(out, b);
        }
        Value::Timestamp(t) => {
            out.put_u8(b'T');
            out.put_u64(*t);
        }
        Value::List(l) => {
            out.put_u8(b'L');
            out.put_u32(l.len() as u32);
            for item in l {
                encode_value(item, out, depth + 1);
            }
        }
        Value::Table(t) => {
            out.put_u8(b'F');
            out.put_u32(t.len() as u32);
            for (k, v) in t.iter() {
                put_bytes(out, k.as_bytes());
                encode_value(v, out, depth + 1);
            }
        }
        Value::Labeled { label, value } => {
            out.put_u8(b'l');
            put_bytes(out, label.as_bytes());
            encode_value(value, out, depth + 1);
        }
    }
}

/// The inverse of [`encode_value`]; `None` for anything malformed (the
/// header then reads as its plain text).
fn decode_value(b: &mut Bytes, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH || !b.has_remaining() {
        return None;
    }
    fn take(b: &mut Bytes) -> Option<Bytes> {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        (b.remaining() >= n).then(|| b.split_to(n))
    }
    fn text(b: &mut Bytes) -> Option<String> {
        String::from_utf8(take(b)?.to_vec()).ok()
    }
    let need = |b: &Bytes, n: usize| (b.remaining() >= n).then_some(());
    Some(match b.get_u8() {
        b'N' => Value::Null,
        b'b' => {
            need(b, 1)?;
            Value::Bool(b.get_u8() != 0)
        }
        b'i' => {
            need(b, 8)?;
            Value::Int(b.get_i64())
        }
        b'f' => {
            need(b, 8)?;
            Value::Float(b.get_f64())
        }
        b'd' => {
            need(b, 5)?;
            let scale = b.get_u8();
            Value::Decimal {
                scale,
                value: b.get_i32(),
            }
        }
        b's' => Value::Str(text(b)?),
        b'n' => Value::Number(text(b)?),
        b'x' => Value::Bytes(take(b)?),
        b'T' => {
            need(b, 8)?;
            Value::Timestamp(b.get_u64())
        }
        b'L' => {
            need(b, 4)?;
            let n = b.get_u32() as usize;
            // Each item takes at least its tag byte.
            need(b, n)?;
            // Grown as items decode, not sized by a count from the record.
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(decode_value(b, depth + 1)?);
            }
            Value::List(items)
        }
        b'F' => {
            need(b, 4)?;
            let n = b.get_u32() as usize;
            need(b, n)?;
            let mut t = Headers::new();
            for _ in 0..n {
                let k = text(b)?;
                let v = decode_value(b, depth + 1)?;
                t.0.push((k, v));
            }
            Value::Table(t)
        }
        b'l' => {
            let label = text(b)?;
            Value::Labeled {
                label,
                value: Box::new(decode_value(b, depth + 1)?),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Properties;

    fn sample() -> Message {
        let mut m = Message::new(&b"hello"[..]).with_routing_key("orders.eu");
        m.router = Some("orders".into());
        m.published_at = Timestamp::from_millis(1_700_000_000_123);
        m.persistent = true;
        m.headers = Headers(vec![
            ("text".into(), Value::Str("v".into())),
            ("n".into(), Value::Int(-5)),
            ("ok".into(), Value::Bool(true)),
            ("f".into(), Value::Float(1.5)),
            (
                "d".into(),
                Value::Decimal {
                    scale: 2,
                    value: -1234,
                },
            ),
            ("raw".into(), Value::Bytes(Bytes::from_static(&[0xff, 0]))),
            ("nothing".into(), Value::Null),
            (":exchange".into(), Value::Str("not the exchange".into())),
            (":t:n".into(), Value::Int(7)),
            (
                "nested".into(),
                Value::List(vec![Value::Table(Headers(vec![(
                    "k".into(),
                    Value::Timestamp(7),
                )]))]),
            ),
        ]);
        m.properties = Properties {
            content_type: Some("application/json".into()),
            content_encoding: Some("gzip".into()),
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
            ttl: Some(Duration::from_millis(60_000)),
            delay: None,
            priority: Some(3),
            timestamp: Some(1_700_000_000),
            kind: Some("order.created".into()),
            app_message_id: Some("m-1".into()),
            user_id: Some("guest".into()),
            app_id: Some("shop".into()),
            trace_context: Some("00-abc-def-01".into()),
        };
        m
    }

    #[test]
    fn a_message_comes_back_as_it_went_in() {
        let m = sample();
        let back = message_of(&record_of(&m));
        assert_eq!(back.body, m.body);
        assert_eq!(back.headers, m.headers);
        assert_eq!(back.properties, m.properties);
        assert_eq!(back.router, m.router);
        assert_eq!(back.routing_key, m.routing_key);
        assert_eq!(back.published_at, m.published_at);
    }

    #[test]
    fn kafka_readers_see_plain_headers_and_the_routing_key_as_key() {
        let r = record_of(&sample());
        assert_eq!(r.key.as_deref(), Some(&b"orders.eu"[..]));
        assert_eq!(r.timestamp, 1_700_000_000_123);
        let get = |k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get("text").as_deref(), Some(&b"v"[..]));
        assert_eq!(get("n").as_deref(), Some(&b"-5"[..]));
        assert_eq!(get("d").as_deref(), Some(&b"-12.34"[..]));
        assert_eq!(
            get(":content-type").as_deref(),
            Some(&b"application/json"[..])
        );
    }

    #[test]
    fn a_kafka_record_reads_as_text_headers_and_keeps_odd_keys_whole() {
        let r = Record {
            offset: 9,
            timestamp: 5,
            key: Some(Bytes::from_static(&[0xc3, 0x28])),
            value: None,
            headers: vec![
                ("trace".into(), Some(Bytes::from_static(b"t-1"))),
                ("bin".into(), Some(Bytes::from_static(&[0xff]))),
                ("gone".into(), None),
                // A malformed type beside a header: the text wins.
                (":t:trace".into(), Some(Bytes::from_static(b"i\x00"))),
            ],
        };
        let m = message_of(&r);
        assert!(m.body.is_empty());
        assert_eq!(
            m.headers.get(KEY_HEADER),
            Some(&Value::Bytes(Bytes::from_static(&[0xc3, 0x28])))
        );
        assert_eq!(m.headers.get("trace"), Some(&Value::Str("t-1".into())));
        assert_eq!(
            m.headers.get("bin"),
            Some(&Value::Bytes(Bytes::from_static(&[0xff])))
        );
        assert_eq!(m.headers.get("gone"), Some(&Value::Null));
        assert!(m.headers.get(":t:trace").is_none());
    }

    proptest::proptest! {
        #[test]
        fn typed_values_decode_any_bytes_without_panicking(data: Vec<u8>) {
            let _ = decode_value(&mut Bytes::from(data), 0);
        }
    }
}
