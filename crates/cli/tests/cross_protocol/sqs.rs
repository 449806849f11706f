//! The SQS face through the AWS SDK for Rust, and its half of the
//! mapping: the rows a SendMessage goes through (`sqs.*` in
//! docs/protocol-mapping.md) and what ReceiveMessage shows of a core
//! message (`to-sqs.*`).

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::operation::send_message::builders::SendMessageFluentBuilder;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue, QueueAttributeName,
};
use base64::Engine;
use ferry_core::{Message, Value};
use serde_json::{Value as Json, json};

use super::face::{
    Depth, Effect, Expect, Expected, Face, Facts, Fut, Published, QueueSpec, Received, TestMessage,
    Unsupported, View, hex,
};
use super::{bounded, common};

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";
const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

fn arn(queue: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")
}

fn text_attr(data_type: &str, v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(v)
        .build()
        .expect("attribute")
}

fn binary_attr(data_type: &str, v: &[u8]) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .binary_value(Blob::new(v))
        .build()
        .expect("attribute")
}

fn labeled(label: &str, v: Value) -> Value {
    Value::Labeled {
        label: label.into(),
        value: Box::new(v),
    }
}

/// One documented row: how SendMessage sets it, and what the core message
/// gets from it.
struct Row {
    id: &'static str,
    wire: fn(SendMessageFluentBuilder) -> SendMessageFluentBuilder,
    core: fn(&mut Message),
}

/// The rich message: an attribute of each data type (a standard one and a
/// custom one of each), and the trace header. At most 10 attributes, as
/// SQS allows.
const RICH: &[Row] = &[
    Row {
        id: "sqs.attr.String",
        wire: |b| b.message_attributes("a-string", text_attr("String", "hello é")),
        core: |m| m.headers.insert("a-string", Value::Str("hello é".into())),
    },
    Row {
        id: "sqs.attr.Number",
        wire: |b| b.message_attributes("a-number", text_attr("Number", "1.50")),
        core: |m| m.headers.insert("a-number", Value::Number("1.50".into())),
    },
    Row {
        id: "sqs.attr.Binary",
        wire: |b| b.message_attributes("a-binary", binary_attr("Binary", &[0, 1, 2, 255])),
        core: |m| {
            let v = Value::Bytes(bytes::Bytes::from_static(&[0, 1, 2, 255]));
            m.headers.insert("a-binary", v)
        },
    },
    Row {
        id: "sqs.attr.String.custom",
        wire: |b| b.message_attributes("a-json", text_attr("String.json", r#"{"k":1}"#)),
        core: |m| {
            let v = labeled("String.json", Value::Str(r#"{"k":1}"#.into()));
            m.headers.insert("a-json", v)
        },
    },
    Row {
        id: "sqs.attr.Number.custom",
        wire: |b| b.message_attributes("a-int", text_attr("Number.int", "42")),
        core: |m| {
            let v = labeled("Number.int", Value::Number("42".into()));
            m.headers.insert("a-int", v)
        },
    },
    Row {
        id: "sqs.attr.Binary.custom",
        wire: |b| b.message_attributes("a-gif", binary_attr("Binary.gif", b"GIF89a")),
        core: |m| {
            let v = labeled(
                "Binary.gif",
                Value::Bytes(bytes::Bytes::from_static(b"GIF89a")),
            );
            m.headers.insert("a-gif", v)
        },
    },
    Row {
        id: "sqs.AWSTraceHeader",
        wire: |b| {
            let v = MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(TRACE)
                .build()
                .expect("system attribute");
            b.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, v)
        },
        core: |m| m.properties.trace_context = Some(TRACE.into()),
    },
];

/// Sent with rich messages, and with every message to a FIFO queue.
const GROUP: Row = Row {
    id: "sqs.MessageGroupId",
    wire: |b| b.message_group_id("g1"),
    core: |m| m.group_id = Some("g1".into()),
};

/// Sent with rich messages to FIFO queues.
const DEDUP: Row = Row {
    id: "sqs.MessageDeduplicationId",
    wire: |b| b.message_deduplication_id("dedup-1"),
    core: |m| m.dedup_id = Some("dedup-1".into()),
};

/// Consumer-side rows: what every ReceiveMessage answer carries.
const TO_SQS: &[&str] = &[
    "to-sqs.MessageId",
    "to-sqs.SenderId",
    "to-sqs.SentTimestamp",
    "to-sqs.ApproximateReceiveCount",
    "to-sqs.ApproximateFirstReceiveTimestamp",
    "to-sqs.SequenceNumber",
    "to-sqs.DeadLetterQueueSourceArn",
];

/// SQS bodies are text, and only of SQS's characters.
const BODIES: &[(&str, &str)] = &[
    ("body.text", "hello"),
    ("body.unicode", "gr\u{fc}\u{df}e \u{1f600}"),
    ("body.controls", "tab\there\r\nnewline"),
];

pub struct SqsFace {
    client: Client,
    endpoint: String,
}

impl SqsFace {
    pub fn new(ferry: &common::Ferry) -> SqsFace {
        let endpoint = format!("http://{}", ferry.addr("aws"));
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        SqsFace {
            client: Client::from_conf(config),
            endpoint,
        }
    }

    /// Any queue of the namespace SQS serves has a URL, whoever declared it.
    fn url(&self, queue: &str) -> String {
        format!("{}/{ACCOUNT}/{queue}", self.endpoint)
    }

    fn rows(m: &TestMessage, queue: &str) -> Vec<&'static Row> {
        let fifo = queue.ends_with(".fifo");
        let mut rows = Vec::new();
        if m.rich {
            rows.extend(RICH);
        }
        if m.rich || fifo {
            rows.push(&GROUP);
        }
        if m.rich && fifo {
            rows.push(&DEDUP);
        }
        rows
    }
}

fn whole_seconds(d: Duration) -> Result<i32, Unsupported> {
    if d.subsec_nanos() != 0 {
        return Err(Unsupported("SQS delays are whole seconds"));
    }
    Ok(d.as_secs() as i32)
}

impl Face for SqsFace {
    fn name(&self) -> &'static str {
        "sqs"
    }

    fn declare<'a>(&'a self, q: &'a QueueSpec) -> Fut<'a, Result<(), Unsupported>> {
        Box::pin(async move {
            let mut b = self.client.create_queue().queue_name(&q.name);
            if q.fifo {
                b = b.attributes(QueueAttributeName::FifoQueue, "true");
                if q.content_dedup {
                    b = b.attributes(QueueAttributeName::ContentBasedDeduplication, "true");
                }
            }
            if let Some(d) = q.delay {
                b = b.attributes(
                    QueueAttributeName::DelaySeconds,
                    whole_seconds(d)?.to_string(),
                );
            }
            if q.ttl.is_some() {
                return Err(Unsupported("SQS retention is 60 s at least"));
            }
            if let Some(dl) = &q.dead_letter {
                let Some(n) = dl.after_receives else {
                    return Err(Unsupported(
                        "SQS dead-letters only after maxReceiveCount receives",
                    ));
                };
                let policy = json!({
                    "deadLetterTargetArn": arn(&dl.target),
                    "maxReceiveCount": n.to_string(),
                });
                b = b.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
            }
            bounded("CreateQueue", b.send())
                .await
                .unwrap_or_else(|e| panic!("CreateQueue {}: {e:?}", q.name));
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        queue: &'a str,
        m: &'a TestMessage,
    ) -> Fut<'a, Result<Published, Unsupported>> {
        Box::pin(async move {
            if m.ttl.is_some() {
                return Err(Unsupported("SQS has no per-message time to live"));
            }
            let Ok(body) = std::str::from_utf8(&m.body) else {
                return Err(Unsupported("SQS bodies are text"));
            };
            let mut b = self
                .client
                .send_message()
                .queue_url(self.url(queue))
                .message_body(body);
            if let Some(d) = m.delay {
                b = b.delay_seconds(whole_seconds(d)?);
            }
            for row in Self::rows(m, queue) {
                b = (row.wire)(b);
            }
            let sent = bounded("SendMessage", b.send())
                .await
                .unwrap_or_else(|e| panic!("SendMessage to {queue}: {e:?}"));
            Ok(Published {
                id: sent.message_id,
            })
        })
    }

    fn try_receive<'a>(&'a self, queue: &'a str) -> Fut<'a, Option<Received>> {
        Box::pin(async move {
            let got = bounded(
                "ReceiveMessage",
                self.client
                    .receive_message()
                    .queue_url(self.url(queue))
                    .max_number_of_messages(1)
                    .wait_time_seconds(0)
                    .message_attribute_names("All")
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send(),
            )
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage from {queue}: {e:?}"));
            let m = got.messages.unwrap_or_default().into_iter().next()?;
            let mut view = View::new();
            if let Some(id) = &m.message_id {
                view.insert("MessageId".into(), id.clone());
            }
            for (k, v) in m.attributes.iter().flatten() {
                view.insert(format!("Attributes.{}", k.as_str()), v.clone());
            }
            for (k, v) in m.message_attributes.iter().flatten() {
                let dt = v.data_type();
                let shown = match (v.string_value(), v.binary_value()) {
                    (Some(s), _) => format!("{dt}:{s}"),
                    (None, Some(b)) => format!("{dt}:x:{}", hex(b.as_ref())),
                    (None, None) => format!("{dt}:(no value)"),
                };
                view.insert(format!("MessageAttributes.{k}"), shown);
            }
            Some(Received {
                queue: queue.to_owned(),
                body: m.body.unwrap_or_default().into_bytes(),
                view,
                id: m.message_id,
                handle: m.receipt_handle.expect("receipt handle"),
            })
        })
    }

    fn ack<'a>(&'a self, r: &'a Received) -> Fut<'a, ()> {
        Box::pin(async move {
            bounded(
                "DeleteMessage",
                self.client
                    .delete_message()
                    .queue_url(self.url(&r.queue))
                    .receipt_handle(&r.handle)
                    .send(),
            )
            .await
            .expect("DeleteMessage");
        })
    }

    fn requeue<'a>(&'a self, r: &'a Received) -> Fut<'a, ()> {
        Box::pin(async move {
            bounded(
                "ChangeMessageVisibility",
                self.client
                    .change_message_visibility()
                    .queue_url(self.url(&r.queue))
                    .receipt_handle(&r.handle)
                    .visibility_timeout(0)
                    .send(),
            )
            .await
            .expect("ChangeMessageVisibility");
        })
    }

    fn reject<'a>(&'a self, _r: &'a Received) -> Fut<'a, Result<(), Unsupported>> {
        Box::pin(async {
            Err(Unsupported(
                "SQS has no reject: a message given back too often moves to the DLQ",
            ))
        })
    }

    fn depth<'a>(&'a self, queue: &'a str) -> Fut<'a, Depth> {
        Box::pin(async move {
            let got = bounded(
                "GetQueueAttributes",
                self.client
                    .get_queue_attributes()
                    .queue_url(self.url(queue))
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                    .send(),
            )
            .await
            .expect("GetQueueAttributes");
            let attrs = got.attributes.unwrap_or_default();
            let n = |k: QueueAttributeName| -> u64 {
                attrs
                    .get(&k)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{k:?} of {queue}"))
            };
            Depth {
                ready: n(QueueAttributeName::ApproximateNumberOfMessages),
                in_flight: Some(n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)),
                delayed: Some(n(QueueAttributeName::ApproximateNumberOfMessagesDelayed)),
            }
        })
    }

    fn visible_after_ms(&self, r: &Received) -> Option<u64> {
        let t = |k: &str| -> u64 {
            r.view[&format!("Attributes.{k}")]
                .parse()
                .expect("a timestamp")
        };
        Some(t("ApproximateFirstReceiveTimestamp").saturating_sub(t("SentTimestamp")))
    }

    fn model_publish(&self, m: &TestMessage, queue: &str) -> Vec<Effect> {
        let mut out = vec![
            // SendMessage names a queue, not a route: the core message's
            // routing key stays empty.
            Effect {
                row: "sqs.queue-url",
                apply: Box::new(|_: &mut Message| {}),
            },
            Effect {
                row: "sqs.persistent",
                apply: Box::new(|c: &mut Message| c.persistent = true),
            },
        ];
        out.extend(Self::rows(m, queue).into_iter().map(|r| Effect {
            row: r.id,
            apply: Box::new(r.core),
        }));
        if let Some(d) = m.delay {
            out.push(Effect {
                row: "sqs.DelaySeconds",
                apply: Box::new(move |c: &mut Message| c.properties.delay = Some(d)),
            });
        }
        out
    }

    fn dead_letters_rejects_on_limited_queue(&self) -> bool {
        // A redrive policy moves only messages received too often.
        false
    }

    fn expect_view(&self, m: &Message, f: &Facts) -> Expected {
        let mut e = Expected::new();
        let mut put = |k: &str, v: Expect, row: Option<&'static str>| {
            e.insert(k.to_owned(), (v, row));
        };
        let id = f.id.clone().map_or(Expect::Uuid, Expect::Eq);
        put("MessageId", id, Some("to-sqs.MessageId"));
        let a = |k: &str| format!("Attributes.{k}");
        put(&a("SenderId"), Expect::eq(ACCOUNT), Some("to-sqs.SenderId"));
        put(
            &a("SentTimestamp"),
            Expect::Between(f.window.0, f.window.1),
            Some("to-sqs.SentTimestamp"),
        );
        put(
            &a("ApproximateReceiveCount"),
            Expect::eq(f.count.to_string()),
            Some("to-sqs.ApproximateReceiveCount"),
        );
        put(
            &a("ApproximateFirstReceiveTimestamp"),
            Expect::Between(f.window.0, f.window.1),
            Some("to-sqs.ApproximateFirstReceiveTimestamp"),
        );
        if let Some(g) = &m.group_id {
            put(&a("MessageGroupId"), Expect::eq(g), None);
        }
        if let Some(d) = &m.dedup_id {
            put(&a("MessageDeduplicationId"), Expect::eq(d), None);
        }
        if f.fifo {
            put(
                &a("SequenceNumber"),
                Expect::Digits(25),
                Some("to-sqs.SequenceNumber"),
            );
        }
        if let Some(t) = &m.properties.trace_context {
            put(&a("AWSTraceHeader"), Expect::eq(t), None);
        }
        if let Some(d) = m.deaths.first() {
            put(
                &a("DeadLetterQueueSourceArn"),
                Expect::Eq(arn(&d.queue)),
                Some("to-sqs.DeadLetterQueueSourceArn"),
            );
        }
        for (k, v) in m.headers.iter() {
            if let Some(shown) = attribute(v) {
                put(&format!("MessageAttributes.{k}"), Expect::Eq(shown), None);
            }
        }
        e
    }

    fn expect_body(&self, body: &[u8]) -> Vec<u8> {
        // SQS bodies are strings: bytes that are not UTF-8 are replaced.
        String::from_utf8_lossy(body).into_owned().into_bytes()
    }

    fn bodies(&self) -> Vec<(&'static str, Vec<u8>)> {
        BODIES
            .iter()
            .map(|(r, b)| (*r, b.as_bytes().to_vec()))
            .collect()
    }

    fn row_ids(&self) -> Vec<&'static str> {
        let mut ids = vec![
            "sqs.queue-url",
            "sqs.persistent",
            "sqs.DelaySeconds",
            GROUP.id,
            DEDUP.id,
        ];
        ids.extend(RICH.iter().map(|r| r.id));
        ids.extend(TO_SQS);
        ids.extend(BODIES.iter().map(|(r, _)| *r));
        ids
    }
}

/// The documented core value -> SQS message attribute mapping, as
/// `<DataType>:<StringValue>` or `<DataType>:x:<hex of BinaryValue>`.
/// `None`: not shown.
fn attribute(v: &Value) -> Option<String> {
    Some(match v {
        Value::Str(s) => format!("String:{s}"),
        Value::Number(n) => format!("Number:{n}"),
        Value::Bytes(b) => format!("Binary:x:{}", hex(b)),
        Value::Int(i) => format!("Number:{i}"),
        Value::Float(f) => format!("Number:{f}"),
        Value::Timestamp(t) => format!("Number:{t}"),
        Value::Decimal { scale, value } => format!("Number:{}", decimal(*scale, *value)),
        Value::Bool(b) => format!("String:{b}"),
        Value::Null => return None,
        Value::List(_) | Value::Table(_) => format!("String:{}", to_json(v)),
        Value::Labeled { label, value } => {
            let inner = attribute(value)?;
            let (_, rest) = inner.split_once(':')?;
            format!("{label}:{rest}")
        }
    })
}

/// `value` scaled down by 10^`scale`, as decimal text.
fn decimal(scale: u8, value: i32) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let text = if scale == 0 {
        digits
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    };
    if value < 0 { format!("-{text}") } else { text }
}

/// Lists and tables as JSON: bytes as base64 strings, decimals and SQS
/// numbers as strings, NaN as null.
fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Str(s) | Value::Number(s) => json!(s),
        Value::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Timestamp(t) => json!(t),
        Value::Decimal { scale, value } => json!(decimal(*scale, *value)),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Table(h) => {
            Json::Object(h.iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
        }
        Value::Labeled { value, .. } => to_json(value),
    }
}
