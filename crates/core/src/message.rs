//! The message model shared by every protocol.
//!
//! A message is immutable once published and travels as `Arc<Message>`: a
//! fanout to many queues shares one allocation, and the body is a
//! [`Bytes`] that was parsed once by the protocol decoder and is never copied.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;

/// The broker-assigned identity of a message, unique per broker.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl fmt::Display for MessageId {
    /// The UUID text form (8-4-4-4-12 hex digits), as SQS shows message ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A typed header value. The set covers AMQP field tables, SQS message
/// attributes and Kafka/MQTT user properties.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal {
        scale: u8,
        value: i32,
    },
    Str(String),
    Bytes(Bytes),
    Timestamp(u64),
    List(Vec<Value>),
    Table(Headers),
    /// A number as decimal text, exactly as sent (SQS `Number` attributes
    /// keep their spelling: `1.50` stays `1.50`).
    Number(String),
    /// A value with a protocol's own type label (SQS custom types such as
    /// `String.json` or `Number.float`).
    Labeled {
        label: String,
        value: Box<Value>,
    },
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// Ordered name/value pairs. A vector, not a map: header sets are small,
/// their order is part of some protocols, and an empty one costs nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headers(pub Vec<(String, Value)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets `name`, replacing an earlier value of the same name.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Headers(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// The standard properties every protocol knows some of. Each protocol maps
/// its own names onto these (AMQP basic properties, SQS system attributes,
/// MQTT 5 properties).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    /// Per-message time to live, from when the message enters a queue.
    pub ttl: Option<Duration>,
    /// Per-message delay before the message becomes visible.
    pub delay: Option<Duration>,
    /// 0 (lowest) to 255; queues cap it at their own maximum.
    pub priority: Option<u8>,
    /// The publisher's own timestamp (seconds or ms as the protocol says).
    pub timestamp: Option<u64>,
    /// The application's message type name (AMQP `type`).
    pub kind: Option<String>,
    /// The application's own message id (AMQP `message-id`).
    pub app_message_id: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    /// W3C trace context or AWS X-Ray header.
    pub trace_context: Option<String>,
}

/// Why a message was dead-lettered.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DeathReason {
    /// Nacked or rejected without requeue.
    Rejected,
    /// Its TTL or the queue's retention ran out.
    Expired,
    /// Pushed out by a queue's max length or max bytes.
    MaxLength,
    /// Delivered more times than the queue allows.
    DeliveryLimit,
}

impl DeathReason {
    /// The lower-case name RabbitMQ uses in `x-death`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLength => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// One entry of a message's dead-letter history: where it died and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Death {
    pub queue: String,
    pub reason: DeathReason,
    /// How many times it died in this queue for this reason.
    pub count: u64,
    /// The first time it died there for this reason.
    pub first_time: Timestamp,
    /// The latest time.
    pub last_time: Timestamp,
    /// The router and routing key it had been published with.
    pub router: Option<String>,
    pub routing_key: String,
    /// Its own TTL (AMQP `expiration`) when it died here, which dead
    /// lettering removes from the message (RabbitMQ's `original-expiration`).
    pub original_ttl: Option<Duration>,
}

/// A death history as RabbitMQ's headers show it: `x-death` (newest
/// first, one entry per queue and reason) and the `x-first-death-*` /
/// `x-last-death-*` summaries. Times are AMQP timestamps (seconds). For
/// faces that carry the history as headers (AMQP deliveries, and records
/// of a stream a dead letter was appended to).
pub fn death_headers(deaths: &[Death]) -> Headers {
    let mut h = Headers::new();
    if deaths.is_empty() {
        return h;
    }
    let entries = deaths
        .iter()
        .map(|d| {
            let mut e = Headers::new();
            e.insert("count", Value::Int(d.count as i64));
            e.insert("reason", Value::Str(d.reason.as_str().to_owned()));
            e.insert("queue", Value::Str(d.queue.clone()));
            e.insert("time", Value::Timestamp(d.last_time.as_millis() / 1000));
            e.insert("exchange", Value::Str(d.router.clone().unwrap_or_default()));
            e.insert(
                "routing-keys",
                Value::List(vec![Value::Str(d.routing_key.clone())]),
            );
            // The `expiration` it had, in milliseconds as published; the
            // property itself is gone from the dead letter.
            if let Some(ttl) = d.original_ttl {
                e.insert(
                    "original-expiration",
                    Value::Str(ttl.as_millis().to_string()),
                );
            }
            Value::Table(e)
        })
        .collect();
    h.insert("x-death", Value::List(entries));
    let mut summary = |which: &str, d: &Death| {
        h.insert(
            format!("x-{which}-death-reason"),
            Value::Str(d.reason.as_str().to_owned()),
        );
        h.insert(
            format!("x-{which}-death-queue"),
            Value::Str(d.queue.clone()),
        );
        h.insert(
            format!("x-{which}-death-exchange"),
            Value::Str(d.router.clone().unwrap_or_default()),
        );
    };
    if let Some(first) = deaths.iter().min_by_key(|d| d.first_time) {
        summary("first", first);
    }
    if let Some(last) = deaths.first() {
        summary("last", last);
    }
    h
}

/// A message as the broker holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub body: Bytes,
    pub headers: Headers,
    pub properties: Properties,
    /// The router it was published to, if any.
    pub router: Option<String>,
    pub routing_key: String,
    /// FIFO message group (SQS MessageGroupId); standard queues carry it too.
    pub group_id: Option<String>,
    /// Explicit deduplication id (SQS MessageDeduplicationId).
    pub dedup_id: Option<String>,
    /// Persistent messages on durable queues are journaled; transient ones never touch disk.
    pub persistent: bool,
    /// Set by the broker when the message is accepted.
    pub published_at: Timestamp,
    /// Dead-letter history, newest first.
    pub deaths: Vec<Death>,
}

impl Message {
    /// A transient message with the given body and nothing else; the broker
    /// assigns `id` and `published_at` when it accepts it.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            id: MessageId(0),
            body: body.into(),
            headers: Headers::new(),
            properties: Properties::default(),
            router: None,
            routing_key: String::new(),
            group_id: None,
            dedup_id: None,
            persistent: false,
            published_at: Timestamp(0),
            deaths: Vec::new(),
        }
    }

    pub fn with_routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = key.into();
        self
    }

    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    pub fn with_dedup_id(mut self, id: impl Into<String>) -> Self {
        self.dedup_id = Some(id.into());
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn with_priority(mut self, p: u8) -> Self {
        self.properties.priority = Some(p);
        self
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.properties.ttl = Some(ttl);
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.properties.delay = Some(delay);
        self
    }

    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// The size that counts against max-bytes limits: the body.
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    /// The queue this message was dead-lettered from most recently.
    pub fn last_death_queue(&self) -> Option<&str> {
        self.deaths.first().map(|d| d.queue.as_str())
    }

    /// A copy with one more death recorded, as RabbitMQ's `x-death` does it:
    /// an existing (queue, reason) entry is counted up and moved to the
    /// front; otherwise a new entry is added at the front. The per-message
    /// TTL and delay are dropped: they were spent in the queue it died in.
    pub fn dead_lettered(&self, queue: &str, reason: DeathReason, now: Timestamp) -> Message {
        let mut m = self.clone();
        let original_ttl = m.properties.ttl.take();
        m.properties.delay = None;
        let prior = m
            .deaths
            .iter()
            .position(|d| d.queue == queue && d.reason == reason);
        let death = match prior {
            Some(i) => {
                let mut d = m.deaths.remove(i);
                d.count += 1;
                d.last_time = now;
                d.original_ttl = original_ttl.or(d.original_ttl);
                d
            }
            None => Death {
                queue: queue.to_owned(),
                reason,
                count: 1,
                first_time: now,
                last_time: now,
                router: m.router.clone(),
                routing_key: m.routing_key.clone(),
                original_ttl,
            },
        };
        m.deaths.insert(0, death);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_displays_as_uuid() {
        let id = MessageId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
    }

    #[test]
    fn dead_letter_history_counts_repeats_and_keeps_newest_first() {
        let m = Message::new("x").with_routing_key("rk");
        let t = Timestamp(10);
        let m = m.dead_lettered("a", DeathReason::Rejected, t);
        let m = m.dead_lettered("b", DeathReason::Expired, Timestamp(20));
        let m = m.dead_lettered("a", DeathReason::Rejected, Timestamp(30));
        assert_eq!(m.deaths.len(), 2);
        assert_eq!(m.deaths[0].queue, "a");
        assert_eq!(m.deaths[0].count, 2);
        assert_eq!(m.deaths[0].first_time, t);
        assert_eq!(m.deaths[0].last_time, Timestamp(30));
        assert_eq!(m.deaths[1].queue, "b");
        assert_eq!(m.body, Bytes::from("x"));
    }

    #[test]
    fn headers_insert_replaces() {
        let mut h = Headers::new();
        h.insert("a", 1i64);
        h.insert("a", "two");
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("a").and_then(Value::as_str), Some("two"));
    }
}
