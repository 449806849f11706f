//! The AMQP 0-9-1 face through lapin, and its half of the mapping: the
//! rows an AMQP publish goes through (`amqp.*` in
//! docs/protocol-mapping.md) and what an AMQP consumer is shown of a core
//! message (`to-amqp.*`).

use std::time::Duration;

use ferry_core::{Message, Value};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, Connection};

use super::face::{
    DeadLetterSpec, Depth, Effect, Expect, Expected, Face, Facts, Fut, Published, QueueSpec,
    Received, TestMessage, Unsupported, View, hex,
};
use super::{bounded, common};

/// What a publish is made of, built up by the rows.
#[derive(Default)]
struct Wire {
    props: BasicProperties,
    headers: FieldTable,
}

/// One documented row: how the publisher sets it, and what the core
/// message gets from it.
struct Row {
    id: &'static str,
    wire: fn(&mut Wire),
    core: fn(&mut Message),
}

fn prop(w: &mut Wire, f: impl FnOnce(BasicProperties) -> BasicProperties) {
    w.props = f(std::mem::take(&mut w.props));
}

fn header(w: &mut Wire, name: &str, v: AMQPValue) {
    w.headers.insert(name.into(), v);
}

/// Non-UTF-8 bytes in a long string.
const NOT_UTF8: &[u8] = &[0xff, 0xfe, 0x41];

/// The rich message: every basic property, and a header of every field
/// type RabbitMQ clients send (`_`, the short string, is not one of them).
const RICH: &[Row] = &[
    Row {
        id: "amqp.content-type",
        wire: |w| prop(w, |p| p.with_content_type("application/json".into())),
        core: |m| m.properties.content_type = Some("application/json".into()),
    },
    Row {
        id: "amqp.content-encoding",
        wire: |w| prop(w, |p| p.with_content_encoding("identity".into())),
        core: |m| m.properties.content_encoding = Some("identity".into()),
    },
    Row {
        id: "amqp.delivery-mode",
        wire: |w| prop(w, |p| p.with_delivery_mode(2)),
        core: |m| m.persistent = true,
    },
    Row {
        id: "amqp.priority",
        wire: |w| prop(w, |p| p.with_priority(5)),
        core: |m| m.properties.priority = Some(5),
    },
    Row {
        id: "amqp.correlation-id",
        wire: |w| prop(w, |p| p.with_correlation_id("corr-1".into())),
        core: |m| m.properties.correlation_id = Some("corr-1".into()),
    },
    Row {
        id: "amqp.reply-to",
        wire: |w| prop(w, |p| p.with_reply_to("replies".into())),
        core: |m| m.properties.reply_to = Some("replies".into()),
    },
    Row {
        id: "amqp.message-id",
        wire: |w| prop(w, |p| p.with_message_id("app-msg-1".into())),
        core: |m| m.properties.app_message_id = Some("app-msg-1".into()),
    },
    Row {
        id: "amqp.timestamp",
        wire: |w| prop(w, |p| p.with_timestamp(1_700_000_000)),
        core: |m| m.properties.timestamp = Some(1_700_000_000),
    },
    Row {
        id: "amqp.type",
        wire: |w| prop(w, |p| p.with_type("order.created".into())),
        core: |m| m.properties.kind = Some("order.created".into()),
    },
    Row {
        id: "amqp.user-id",
        wire: |w| prop(w, |p| p.with_user_id("guest".into())),
        core: |m| m.properties.user_id = Some("guest".into()),
    },
    Row {
        id: "amqp.app-id",
        wire: |w| prop(w, |p| p.with_app_id("cross-protocol".into())),
        core: |m| m.properties.app_id = Some("cross-protocol".into()),
    },
    Row {
        id: "amqp.cluster-id",
        wire: |w| prop(w, |p| p.with_cluster_id("c1".into())),
        core: |_| {},
    },
    Row {
        id: "amqp.header.t",
        wire: |w| header(w, "h-bool", AMQPValue::Boolean(true)),
        core: |m| m.headers.insert("h-bool", Value::Bool(true)),
    },
    Row {
        id: "amqp.header.b",
        wire: |w| header(w, "h-i8", AMQPValue::ShortShortInt(-8)),
        core: |m| m.headers.insert("h-i8", Value::Int(-8)),
    },
    Row {
        id: "amqp.header.B",
        wire: |w| header(w, "h-u8", AMQPValue::ShortShortUInt(200)),
        core: |m| m.headers.insert("h-u8", Value::Int(200)),
    },
    Row {
        id: "amqp.header.s",
        wire: |w| header(w, "h-i16", AMQPValue::ShortInt(-16)),
        core: |m| m.headers.insert("h-i16", Value::Int(-16)),
    },
    Row {
        id: "amqp.header.u",
        wire: |w| header(w, "h-u16", AMQPValue::ShortUInt(60_000)),
        core: |m| m.headers.insert("h-u16", Value::Int(60_000)),
    },
    Row {
        id: "amqp.header.I",
        wire: |w| header(w, "h-i32", AMQPValue::LongInt(-32)),
        core: |m| m.headers.insert("h-i32", Value::Int(-32)),
    },
    Row {
        id: "amqp.header.i",
        wire: |w| header(w, "h-u32", AMQPValue::LongUInt(4_000_000_000)),
        core: |m| m.headers.insert("h-u32", Value::Int(4_000_000_000)),
    },
    Row {
        id: "amqp.header.l",
        wire: |w| header(w, "h-i64", AMQPValue::LongLongInt(-64)),
        core: |m| m.headers.insert("h-i64", Value::Int(-64)),
    },
    Row {
        id: "amqp.header.f",
        wire: |w| header(w, "h-f32", AMQPValue::Float(0.1)),
        core: |m| m.headers.insert("h-f32", Value::Float(f64::from(0.1f32))),
    },
    Row {
        id: "amqp.header.d",
        wire: |w| header(w, "h-f64", AMQPValue::Double(2.25)),
        core: |m| m.headers.insert("h-f64", Value::Float(2.25)),
    },
    Row {
        id: "amqp.header.d-nan",
        wire: |w| header(w, "h-nan", AMQPValue::Double(f64::NAN)),
        core: |m| m.headers.insert("h-nan", Value::Float(f64::NAN)),
    },
    Row {
        id: "amqp.header.D",
        wire: |w| {
            let d = DecimalValue {
                scale: 2,
                value: 12_345,
            };
            header(w, "h-decimal", AMQPValue::DecimalValue(d))
        },
        core: |m| {
            let d = Value::Decimal {
                scale: 2,
                value: 12_345,
            };
            m.headers.insert("h-decimal", d)
        },
    },
    Row {
        id: "amqp.header.D-large",
        wire: |w| {
            let d = DecimalValue {
                scale: 2,
                value: 3_000_000_000,
            };
            header(w, "h-decimal-large", AMQPValue::DecimalValue(d))
        },
        // The core keeps the 32 bits as a signed number.
        core: |m| {
            let d = Value::Decimal {
                scale: 2,
                value: 3_000_000_000u32 as i32,
            };
            m.headers.insert("h-decimal-large", d)
        },
    },
    Row {
        id: "amqp.header.S",
        wire: |w| header(w, "h-str", AMQPValue::LongString("text é".into())),
        core: |m| m.headers.insert("h-str", Value::Str("text é".into())),
    },
    Row {
        id: "amqp.header.S-not-utf8",
        wire: |w| header(w, "h-str-bytes", AMQPValue::LongString(NOT_UTF8.into())),
        core: |m| {
            let b = Value::Bytes(bytes::Bytes::from_static(NOT_UTF8));
            m.headers.insert("h-str-bytes", b)
        },
    },
    Row {
        id: "amqp.header.A",
        wire: |w| {
            let a = FieldArray::from(vec![
                AMQPValue::LongString("a".into()),
                AMQPValue::LongInt(1),
                AMQPValue::Boolean(false),
                AMQPValue::ByteArray(ByteArray::from(vec![1u8])),
            ]);
            header(w, "h-array", AMQPValue::FieldArray(a))
        },
        core: |m| {
            let a = Value::List(vec![
                Value::Str("a".into()),
                Value::Int(1),
                Value::Bool(false),
                Value::Bytes(bytes::Bytes::from_static(&[1])),
            ]);
            m.headers.insert("h-array", a)
        },
    },
    Row {
        id: "amqp.header.F",
        wire: |w| {
            let mut inner = FieldTable::default();
            inner.insert("k".into(), AMQPValue::LongString("v".into()));
            inner.insert("n".into(), AMQPValue::Timestamp(7));
            header(w, "h-table", AMQPValue::FieldTable(inner))
        },
        core: |m| {
            let inner: ferry_core::Headers = [
                ("k".to_owned(), Value::Str("v".into())),
                ("n".to_owned(), Value::Timestamp(7)),
            ]
            .into_iter()
            .collect();
            m.headers.insert("h-table", Value::Table(inner))
        },
    },
    Row {
        id: "amqp.header.T",
        wire: |w| header(w, "h-timestamp", AMQPValue::Timestamp(1_700_000_000)),
        core: |m| {
            m.headers
                .insert("h-timestamp", Value::Timestamp(1_700_000_000))
        },
    },
    Row {
        id: "amqp.header.x",
        wire: |w| header(w, "h-bytes", AMQPValue::ByteArray(vec![0u8, 1, 2].into())),
        core: |m| {
            let b = Value::Bytes(bytes::Bytes::from_static(&[0, 1, 2]));
            m.headers.insert("h-bytes", b)
        },
    },
    Row {
        id: "amqp.header.V",
        wire: |w| header(w, "h-void", AMQPValue::Void),
        core: |m| m.headers.insert("h-void", Value::Null),
    },
    Row {
        id: "amqp.header.name-not-sqs",
        wire: |w| header(w, "has space", AMQPValue::LongString("v".into())),
        core: |m| m.headers.insert("has space", Value::Str("v".into())),
    },
    Row {
        id: "amqp.header.x-delay",
        wire: |w| header(w, "x-delay", AMQPValue::LongInt(60_000)),
        core: |m| m.headers.insert("x-delay", Value::Int(60_000)),
    },
];

/// The per-message TTL of a rich message (a scenario's own TTL replaces it).
const RICH_EXPIRATION_MS: u64 = 600_000;

/// Consumer-side rows: what every AMQP delivery carries.
const TO_AMQP: &[&str] = &[
    "to-amqp.exchange",
    "to-amqp.redelivered",
    "to-amqp.x-death",
    "to-amqp.x-first-death",
    "to-amqp.x-last-death",
];

const BODIES: &[(&str, &[u8])] = &[
    ("body.text", b"hello"),
    ("body.unicode", "gr\u{fc}\u{df}e \u{1f600}".as_bytes()),
    ("body.controls", b"tab\there\r\nnewline"),
    ("body.empty", b""),
    ("body.not-utf8", &[0xc3, 0x28, 0xff, 0x00]),
    ("body.nul", b"a\0b"),
];

/// A body larger than SQS's largest message (1 MiB).
const LARGE_BODY: usize = 1_100_000;

pub struct AmqpFace {
    _conn: Connection,
    ch: Channel,
    conn_for_depth: Connection,
}

impl AmqpFace {
    pub async fn connect(ferry: &common::Ferry) -> AmqpFace {
        let conn = ferry.amqp_guest().await;
        let ch = bounded("channel", conn.create_channel())
            .await
            .expect("channel");
        bounded(
            "confirm.select",
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .expect("confirms");
        let conn_for_depth = ferry.amqp_guest().await;
        AmqpFace {
            _conn: conn,
            ch,
            conn_for_depth,
        }
    }

    /// A round trip on the settling channel: the broker has applied every
    /// ack, nack and reject sent on it before (they have no answer of
    /// their own), as an SQS DeleteMessage has when it answers.
    async fn sync(&self, queue: &str) {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        bounded(
            "queue.declare (sync)",
            self.ch
                .queue_declare(queue.into(), passive, FieldTable::default()),
        )
        .await
        .expect("sync round trip");
    }

    fn tag(r: &Received) -> u64 {
        r.handle.parse().expect("delivery tag")
    }
}

impl Face for AmqpFace {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn declare<'a>(&'a self, q: &'a QueueSpec) -> Fut<'a, Result<(), Unsupported>> {
        Box::pin(async move {
            if q.fifo {
                return Err(Unsupported("AMQP 0-9-1 has no FIFO queues"));
            }
            if q.delay.is_some() {
                return Err(Unsupported("AMQP queues have no delay"));
            }
            let mut args = FieldTable::default();
            if let Some(ttl) = q.ttl {
                args.insert(
                    "x-message-ttl".into(),
                    AMQPValue::LongLongInt(ttl.as_millis() as i64),
                );
            }
            if let Some(dl) = &q.dead_letter {
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString("".into()),
                );
                args.insert(
                    "x-dead-letter-routing-key".into(),
                    AMQPValue::LongString(dl.target.as_str().into()),
                );
                if let Some(n) = dl.after_receives {
                    // A quorum queue's limit n allows n + 1 deliveries.
                    args.insert(
                        "x-queue-type".into(),
                        AMQPValue::LongString("quorum".into()),
                    );
                    args.insert(
                        "x-delivery-limit".into(),
                        AMQPValue::LongInt(i32::try_from(n).expect("limit") - 1),
                    );
                }
            }
            let ch = bounded("channel", self.conn_for_depth.create_channel())
                .await
                .expect("channel");
            bounded(
                "queue.declare",
                ch.queue_declare(q.name.as_str().into(), QueueDeclareOptions::durable(), args),
            )
            .await
            .expect("queue.declare");
            let _ = ch.close(200, "".into()).await;
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        queue: &'a str,
        m: &'a TestMessage,
    ) -> Fut<'a, Result<Published, Unsupported>> {
        Box::pin(async move {
            if m.delay.is_some() {
                return Err(Unsupported(
                    "AMQP has no per-message delay (x-delay is an ordinary header)",
                ));
            }
            let mut w = Wire::default();
            if m.rich {
                for row in RICH {
                    (row.wire)(&mut w);
                }
            }
            let ttl = m
                .ttl
                .or(m.rich.then(|| Duration::from_millis(RICH_EXPIRATION_MS)));
            if let Some(ttl) = ttl {
                let ms = ttl.as_millis().to_string();
                prop(&mut w, |p| p.with_expiration(ms.as_str().into()));
            }
            if !w.headers.inner().is_empty() {
                let h = std::mem::take(&mut w.headers);
                prop(&mut w, |p| p.with_headers(h));
            }
            let confirm = bounded(
                "basic.publish",
                self.ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &m.body,
                    w.props,
                ),
            )
            .await
            .expect("publish");
            let confirm = bounded("publisher confirm", confirm)
                .await
                .expect("confirm");
            assert!(confirm.is_ack(), "publish to {queue} confirmed with an ack");
            Ok(Published { id: None })
        })
    }

    fn try_receive<'a>(&'a self, queue: &'a str) -> Fut<'a, Option<Received>> {
        Box::pin(async move {
            let got = bounded(
                "basic.get",
                self.ch
                    .basic_get(queue.into(), BasicGetOptions { no_ack: false }),
            )
            .await
            .expect("basic.get")?;
            let d = &got.delivery;
            let mut view = View::new();
            view.insert("exchange".into(), d.exchange.to_string());
            view.insert("routing-key".into(), d.routing_key.to_string());
            view.insert("redelivered".into(), d.redelivered.to_string());
            render_properties(&d.properties, &mut view);
            Some(Received {
                queue: queue.to_owned(),
                body: d.data.clone(),
                view,
                id: None,
                handle: d.delivery_tag.to_string(),
            })
        })
    }

    fn ack<'a>(&'a self, r: &'a Received) -> Fut<'a, ()> {
        Box::pin(async move {
            bounded(
                "basic.ack",
                self.ch.basic_ack(Self::tag(r), BasicAckOptions::default()),
            )
            .await
            .expect("ack");
            self.sync(&r.queue).await;
        })
    }

    fn requeue<'a>(&'a self, r: &'a Received) -> Fut<'a, ()> {
        Box::pin(async move {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            bounded("basic.nack", self.ch.basic_nack(Self::tag(r), requeue))
                .await
                .expect("nack");
            self.sync(&r.queue).await;
        })
    }

    fn reject<'a>(&'a self, r: &'a Received) -> Fut<'a, Result<(), Unsupported>> {
        Box::pin(async move {
            let options = BasicRejectOptions { requeue: false };
            bounded("basic.reject", self.ch.basic_reject(Self::tag(r), options))
                .await
                .expect("reject");
            self.sync(&r.queue).await;
            Ok(())
        })
    }

    fn depth<'a>(&'a self, queue: &'a str) -> Fut<'a, Depth> {
        Box::pin(async move {
            // A channel of its own: a failed passive declare closes it.
            let ch = bounded("channel", self.conn_for_depth.create_channel())
                .await
                .expect("channel");
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let q = bounded(
                "queue.declare (passive)",
                ch.queue_declare(queue.into(), passive, FieldTable::default()),
            )
            .await
            .expect("passive declare");
            let _ = ch.close(200, "".into()).await;
            // RabbitMQ's message count: ready messages only.
            Depth {
                ready: u64::from(q.message_count()),
                in_flight: None,
                delayed: None,
            }
        })
    }

    fn model_publish(&self, m: &TestMessage, queue: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        let queue = queue.to_owned();
        out.push(Effect {
            row: "amqp.routing-key",
            apply: Box::new(move |c: &mut Message| c.routing_key = queue.clone()),
        });
        if m.rich {
            out.extend(RICH.iter().map(|r| Effect {
                row: r.id,
                apply: Box::new(r.core),
            }));
        }
        let ttl = m
            .ttl
            .or(m.rich.then(|| Duration::from_millis(RICH_EXPIRATION_MS)));
        if let Some(ttl) = ttl {
            out.push(Effect {
                row: "amqp.expiration",
                apply: Box::new(move |c: &mut Message| c.properties.ttl = Some(ttl)),
            });
        }
        out
    }

    fn model_dead_letter(&self, m: &mut Message, spec: &DeadLetterSpec) {
        // x-dead-letter-routing-key replaces the message's routing key.
        m.routing_key = spec.target.clone();
    }

    fn dead_letters_rejects_on_limited_queue(&self) -> bool {
        // The limited queue is a quorum queue with a dead-letter exchange,
        // which also takes rejections and expiries.
        true
    }

    fn expect_view(&self, m: &Message, f: &Facts) -> Expected {
        let mut e = Expected::new();
        let mut put = |k: &str, v: String, row: Option<&'static str>| {
            e.insert(k.to_owned(), (Expect::Eq(v), row));
        };
        put(
            "exchange",
            m.router.clone().unwrap_or_default(),
            Some("to-amqp.exchange"),
        );
        put("routing-key", m.routing_key.clone(), None);
        put(
            "redelivered",
            (f.count > 1).to_string(),
            Some("to-amqp.redelivered"),
        );
        put(
            "delivery-mode",
            if m.persistent { "2" } else { "1" }.into(),
            None,
        );
        let p = &m.properties;
        let text = [
            ("content-type", &p.content_type),
            ("content-encoding", &p.content_encoding),
            ("correlation-id", &p.correlation_id),
            ("reply-to", &p.reply_to),
            ("message-id", &p.app_message_id),
            ("type", &p.kind),
            ("user-id", &p.user_id),
            ("app-id", &p.app_id),
        ];
        for (k, v) in text {
            if let Some(v) = v {
                put(k, v.clone(), None);
            }
        }
        if let Some(v) = p.priority {
            put("priority", v.to_string(), None);
        }
        if let Some(v) = p.timestamp {
            put("timestamp", v.to_string(), None);
        }
        if let Some(ttl) = p.ttl {
            put("expiration", ttl.as_millis().to_string(), None);
        }
        for (k, v) in m.headers.iter() {
            expect_value(&format!("headers.{k}"), v, None, &mut e);
        }
        if !m.deaths.is_empty() {
            expect_deaths(m, f, &mut e);
        }
        e
    }

    fn expect_body(&self, body: &[u8]) -> Vec<u8> {
        body.to_vec()
    }

    fn bodies(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out: Vec<_> = BODIES.iter().map(|(r, b)| (*r, b.to_vec())).collect();
        out.push(("body.large", vec![b'a'; LARGE_BODY]));
        out
    }

    fn row_ids(&self) -> Vec<&'static str> {
        let mut ids = vec!["amqp.routing-key", "amqp.expiration"];
        ids.extend(RICH.iter().map(|r| r.id));
        ids.extend(TO_AMQP);
        ids.extend(BODIES.iter().map(|(r, _)| *r));
        ids.push("body.large");
        ids
    }
}

/// `x-death` and the first/last summaries, as ferry documents them.
fn expect_deaths(m: &Message, f: &Facts, e: &mut Expected) {
    let secs = (f.window.0 / 1000, f.window.1 / 1000 + 1);
    let mut put = |k: String, v: Expect, row: &'static str| {
        e.insert(k, (v, Some(row)));
    };
    put(
        "headers.x-death".into(),
        Expect::eq(format!("A[{}]", m.deaths.len())),
        "to-amqp.x-death",
    );
    for (i, d) in m.deaths.iter().enumerate() {
        let k = |f: &str| format!("headers.x-death[{i}]{f}");
        let row = "to-amqp.x-death";
        let fields = 6 + usize::from(d.original_ttl.is_some());
        put(k(""), Expect::eq(format!("F{{{fields}}}")), row);
        if let Some(ttl) = d.original_ttl {
            put(
                k(".original-expiration"),
                Expect::eq(format!("S:{}", ttl.as_millis())),
                row,
            );
        }
        put(k(".count"), Expect::eq(format!("l:{}", d.count)), row);
        put(
            k(".reason"),
            Expect::eq(format!("S:{}", d.reason.as_str())),
            row,
        );
        put(k(".queue"), Expect::eq(format!("S:{}", d.queue)), row);
        put(k(".time"), Expect::Time(secs.0, secs.1), row);
        put(
            k(".exchange"),
            Expect::eq(format!("S:{}", d.router.clone().unwrap_or_default())),
            row,
        );
        put(k(".routing-keys"), Expect::eq("A[1]"), row);
        put(
            k(".routing-keys[0]"),
            Expect::eq(format!("S:{}", d.routing_key)),
            row,
        );
    }
    let first = m
        .deaths
        .iter()
        .min_by_key(|d| d.first_time)
        .expect("a death");
    let last = &m.deaths[0];
    for (which, d, row) in [
        ("first", first, "to-amqp.x-first-death"),
        ("last", last, "to-amqp.x-last-death"),
    ] {
        let k = |f: &str| format!("headers.x-{which}-death-{f}");
        put(
            k("reason"),
            Expect::eq(format!("S:{}", d.reason.as_str())),
            row,
        );
        put(k("queue"), Expect::eq(format!("S:{}", d.queue)), row);
        put(
            k("exchange"),
            Expect::eq(format!("S:{}", d.router.clone().unwrap_or_default())),
            row,
        );
    }
}

/// The documented core value -> AMQP field value mapping, flattened as
/// [`render_value`] flattens what lapin decoded.
fn expect_value(key: &str, v: &Value, row: Option<&'static str>, e: &mut Expected) {
    let s = match v {
        Value::Null => "V".to_owned(),
        Value::Bool(b) => format!("t:{b}"),
        Value::Int(i) => format!("l:{i}"),
        Value::Float(f) => format!("d:{f}"),
        Value::Decimal { scale, value } => format!("D:{scale}:{}", *value as u32),
        Value::Str(s) | Value::Number(s) => format!("S:{s}"),
        Value::Bytes(b) => format!("x:{}", hex(b)),
        Value::Timestamp(t) => format!("T:{t}"),
        Value::List(items) => {
            for (i, x) in items.iter().enumerate() {
                expect_value(&format!("{key}[{i}]"), x, row, e);
            }
            format!("A[{}]", items.len())
        }
        Value::Table(h) => {
            for (k, x) in h.iter() {
                expect_value(&format!("{key}.{k}"), x, row, e);
            }
            format!("F{{{}}}", h.len())
        }
        Value::Labeled { value, .. } => return expect_value(key, value, row, e),
    };
    e.insert(key.to_owned(), (Expect::Eq(s), row));
}

fn render_properties(p: &BasicProperties, view: &mut View) {
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            view.insert(k.to_owned(), v);
        }
    };
    let s = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|v| v.to_string());
    put("content-type", s(p.content_type()));
    put("content-encoding", s(p.content_encoding()));
    put("delivery-mode", p.delivery_mode().map(|v| v.to_string()));
    put("priority", p.priority().map(|v| v.to_string()));
    put("correlation-id", s(p.correlation_id()));
    put("reply-to", s(p.reply_to()));
    put("expiration", s(p.expiration()));
    put("message-id", s(p.message_id()));
    put("timestamp", p.timestamp().map(|v| v.to_string()));
    put("type", s(p.kind()));
    put("user-id", s(p.user_id()));
    put("app-id", s(p.app_id()));
    put("cluster-id", s(p.cluster_id()));
    if let Some(h) = p.headers() {
        for (k, v) in h.inner() {
            render_value(&format!("headers.{k}"), v, view);
        }
    }
}

/// A field value as `<type tag>:<value>`; arrays and tables as their size,
/// with their items under `key[i]` / `key.name`.
fn render_value(key: &str, v: &AMQPValue, view: &mut View) {
    let s = match v {
        AMQPValue::Boolean(b) => format!("t:{b}"),
        AMQPValue::ShortShortInt(i) => format!("b:{i}"),
        AMQPValue::ShortShortUInt(i) => format!("B:{i}"),
        AMQPValue::ShortInt(i) => format!("s:{i}"),
        AMQPValue::ShortUInt(i) => format!("u:{i}"),
        AMQPValue::LongInt(i) => format!("I:{i}"),
        AMQPValue::LongUInt(i) => format!("i:{i}"),
        AMQPValue::LongLongInt(i) => format!("l:{i}"),
        AMQPValue::Float(f) => format!("f:{f}"),
        AMQPValue::Double(f) => format!("d:{f}"),
        AMQPValue::DecimalValue(d) => format!("D:{}:{}", d.scale, d.value),
        AMQPValue::ShortString(s) => format!("_:{s}"),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => format!("S:{t}"),
            Err(_) => format!("S(not UTF-8):{}", hex(s.as_bytes())),
        },
        AMQPValue::FieldArray(a) => {
            for (i, x) in a.as_slice().iter().enumerate() {
                render_value(&format!("{key}[{i}]"), x, view);
            }
            format!("A[{}]", a.as_slice().len())
        }
        AMQPValue::Timestamp(t) => format!("T:{t}"),
        AMQPValue::FieldTable(t) => {
            for (k, x) in t.inner() {
                render_value(&format!("{key}.{k}"), x, view);
            }
            format!("F{{{}}}", t.inner().len())
        }
        AMQPValue::ByteArray(b) => format!("x:{}", hex(b.as_slice())),
        AMQPValue::Void => "V".to_owned(),
    };
    view.insert(key.to_owned(), s);
}
