//! Messages, headers and values on disk.

use std::time::Duration;

use ferry_core::clock::Timestamp;
use ferry_core::message::{Death, DeathReason, Headers, Message, MessageId, Properties, Value};

use super::wire::{Dec, DecodeError, DecodeResult, Enc};

/// Values nested deeper than this are refused (a corrupt or hostile record
/// must not overflow the stack).
const MAX_DEPTH: usize = 32;

pub fn put_message(e: &mut Enc<'_>, m: &Message) {
    e.u128_le(m.id.0);
    e.var(m.published_at.as_millis());
    e.u8(u8::from(m.persistent));
    e.str(&m.routing_key);
    e.opt_str(m.router.as_deref());
    e.opt_str(m.group_id.as_deref());
    e.opt_str(m.dedup_id.as_deref());
    put_properties(e, &m.properties);
    put_headers(e, &m.headers, 0);
    e.var(m.deaths.len() as u64);
    for d in &m.deaths {
        e.str(&d.queue);
        // Format 3: the high bit says the message's own TTL follows.
        match d.original_ttl {
            Some(ttl) => {
                e.u8(reason_code(d.reason) | HAS_ORIGINAL_TTL);
                e.var(millis(ttl));
            }
            None => e.u8(reason_code(d.reason)),
        }
        e.var(d.count);
        e.var(d.first_time.as_millis());
        e.var(d.last_time.as_millis());
        e.opt_str(d.router.as_deref());
        e.str(&d.routing_key);
    }
    e.bytes(&m.body);
}

pub fn get_message(d: &mut Dec<'_>) -> DecodeResult<Message> {
    let id = MessageId(d.u128_le()?);
    let published_at = Timestamp(d.var()?);
    let persistent = d.u8()? & 1 == 1;
    let routing_key = d.str()?;
    let router = d.opt_str()?;
    let group_id = d.opt_str()?;
    let dedup_id = d.opt_str()?;
    let properties = get_properties(d)?;
    let headers = get_headers(d, 0)?;
    let n = d.len()?;
    let mut deaths = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let queue = d.str()?;
        let code = d.u8()?;
        let reason = reason_from(code & !HAS_ORIGINAL_TTL)?;
        let original_ttl = if code & HAS_ORIGINAL_TTL != 0 {
            Some(Duration::from_millis(d.var()?))
        } else {
            None
        };
        deaths.push(Death {
            queue,
            reason,
            count: d.var()?,
            first_time: Timestamp(d.var()?),
            last_time: Timestamp(d.var()?),
            router: d.opt_str()?,
            routing_key: d.str()?,
            original_ttl,
        });
    }
    let body = d.owned_bytes()?;
    Ok(Message {
        id,
        body,
        headers,
        properties,
        router,
        routing_key,
        group_id,
        dedup_id,
        persistent,
        published_at,
        deaths,
    })
}

/// Set on a death's reason code when its original TTL follows (format 3).
const HAS_ORIGINAL_TTL: u8 = 0x80;

fn reason_code(r: DeathReason) -> u8 {
    match r {
        DeathReason::Rejected => 1,
        DeathReason::Expired => 2,
        DeathReason::MaxLength => 3,
        DeathReason::DeliveryLimit => 4,
    }
}

fn reason_from(c: u8) -> DecodeResult<DeathReason> {
    Ok(match c {
        1 => DeathReason::Rejected,
        2 => DeathReason::Expired,
        3 => DeathReason::MaxLength,
        4 => DeathReason::DeliveryLimit,
        tag => {
            return Err(DecodeError::Tag {
                what: "death reason",
                tag,
            });
        }
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// Property tags; 0 ends the list.
const CONTENT_TYPE: u8 = 1;
const CONTENT_ENCODING: u8 = 2;
const CORRELATION_ID: u8 = 3;
const REPLY_TO: u8 = 4;
const TTL: u8 = 5;
const DELAY: u8 = 6;
const PRIORITY: u8 = 7;
const TIMESTAMP: u8 = 8;
const KIND: u8 = 9;
const APP_MESSAGE_ID: u8 = 10;
const USER_ID: u8 = 11;
const APP_ID: u8 = 12;
const TRACE_CONTEXT: u8 = 13;

fn put_properties(e: &mut Enc<'_>, p: &Properties) {
    let strings = [
        (CONTENT_TYPE, &p.content_type),
        (CONTENT_ENCODING, &p.content_encoding),
        (CORRELATION_ID, &p.correlation_id),
        (REPLY_TO, &p.reply_to),
        (KIND, &p.kind),
        (APP_MESSAGE_ID, &p.app_message_id),
        (USER_ID, &p.user_id),
        (APP_ID, &p.app_id),
        (TRACE_CONTEXT, &p.trace_context),
    ];
    for (tag, v) in strings {
        if let Some(s) = v {
            e.field(tag, |e| e.str(s));
        }
    }
    if let Some(t) = p.ttl {
        e.field(TTL, |e| e.var(millis(t)));
    }
    if let Some(t) = p.delay {
        e.field(DELAY, |e| e.var(millis(t)));
    }
    if let Some(v) = p.priority {
        e.field(PRIORITY, |e| e.u8(v));
    }
    if let Some(v) = p.timestamp {
        e.field(TIMESTAMP, |e| e.var(v));
    }
    e.end_fields();
}

fn get_properties(d: &mut Dec<'_>) -> DecodeResult<Properties> {
    let mut p = Properties::default();
    d.fields(|tag, d| {
        match tag {
            CONTENT_TYPE => p.content_type = Some(d.str()?),
            CONTENT_ENCODING => p.content_encoding = Some(d.str()?),
            CORRELATION_ID => p.correlation_id = Some(d.str()?),
            REPLY_TO => p.reply_to = Some(d.str()?),
            KIND => p.kind = Some(d.str()?),
            APP_MESSAGE_ID => p.app_message_id = Some(d.str()?),
            USER_ID => p.user_id = Some(d.str()?),
            APP_ID => p.app_id = Some(d.str()?),
            TRACE_CONTEXT => p.trace_context = Some(d.str()?),
            TTL => p.ttl = Some(Duration::from_millis(d.var()?)),
            DELAY => p.delay = Some(Duration::from_millis(d.var()?)),
            PRIORITY => p.priority = Some(d.u8()?),
            TIMESTAMP => p.timestamp = Some(d.var()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

pub fn put_headers(e: &mut Enc<'_>, h: &Headers, depth: usize) {
    e.var(h.len() as u64);
    for (k, v) in h.iter() {
        e.str(k);
        put_value(e, v, depth + 1);
    }
}

pub fn get_headers(d: &mut Dec<'_>, depth: usize) -> DecodeResult<Headers> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep(MAX_DEPTH));
    }
    let n = d.len()?;
    let mut v = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = d.str()?;
        v.push((k, get_value(d, depth + 1)?));
    }
    Ok(Headers(v))
}

fn put_value(e: &mut Enc<'_>, v: &Value, depth: usize) {
    match v {
        Value::Null => e.u8(0),
        Value::Bool(b) => {
            e.u8(1);
            e.bool(*b);
        }
        Value::Int(i) => {
            e.u8(2);
            e.zigzag(*i);
        }
        Value::Float(f) => {
            e.u8(3);
            e.f64(*f);
        }
        Value::Decimal { scale, value } => {
            e.u8(4);
            e.u8(*scale);
            e.zigzag(i64::from(*value));
        }
        Value::Str(s) => {
            e.u8(5);
            e.str(s);
        }
        Value::Bytes(b) => {
            e.u8(6);
            e.bytes(b);
        }
        Value::Timestamp(t) => {
            e.u8(7);
            e.var(*t);
        }
        Value::List(items) => {
            e.u8(8);
            e.var(items.len() as u64);
            for i in items {
                put_value(e, i, depth + 1);
            }
        }
        Value::Table(h) => {
            e.u8(9);
            put_headers(e, h, depth + 1);
        }
        Value::Number(n) => {
            e.u8(10);
            e.str(n);
        }
        Value::Labeled { label, value } => {
            e.u8(11);
            e.str(label);
            put_value(e, value, depth + 1);
        }
    }
}

fn get_value(d: &mut Dec<'_>, depth: usize) -> DecodeResult<Value> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep(MAX_DEPTH));
    }
    Ok(match d.u8()? {
        0 => Value::Null,
        1 => Value::Bool(d.bool()?),
        2 => Value::Int(d.zigzag()?),
        3 => Value::Float(d.f64()?),
        4 => {
            let scale = d.u8()?;
            let value = i32::try_from(d.zigzag()?).map_err(|_| DecodeError::Tag {
                what: "decimal",
                tag: scale,
            })?;
            Value::Decimal { scale, value }
        }
        5 => Value::Str(d.str()?),
        6 => Value::Bytes(d.owned_bytes()?),
        7 => Value::Timestamp(d.var()?),
        8 => {
            let n = d.len()?;
            let mut items = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                items.push(get_value(d, depth + 1)?);
            }
            Value::List(items)
        }
        9 => Value::Table(get_headers(d, depth + 1)?),
        10 => Value::Number(d.str()?),
        11 => Value::Labeled {
            label: d.str()?,
            value: Box::new(get_value(d, depth + 1)?),
        },
        tag => return Err(DecodeError::Tag { what: "value", tag }),
    })
}
