//! Message actions: send, receive, delete, change visibility.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::Timestamp;
use ferry_core::broker::{QueueHandle, Sent};
use ferry_core::message::Message;
use ferry_core::queue::{Delivery, Enqueued, Lease, LeaseMatch, ReceiveMode};
use serde_json::{Map, Value, json};

use super::queue_name;
use crate::Sqs;
use crate::attributes;
use crate::error::SqsError;
use crate::input::Input;
use crate::md5::{self, Attr, AttrValue};
use crate::message_attributes;
use crate::names;
use crate::receipt;
use crate::wire::Request;

const MAX_ID: usize = 128;
/// A lease may not end more than 12 hours after its receive (with a
/// second's grace, so 43200 right after a receive is accepted).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600 + 1);
/// How long a FIFO receive can be retried with its ReceiveRequestAttemptId.
const ATTEMPT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// A FIFO receive, kept so a retry with the same ReceiveRequestAttemptId
/// gets the same messages and receipt handles while they are still held.
pub(crate) struct Attempt {
    at: ferry_core::clock::Timestamp,
    leases: Vec<ferry_core::queue::Lease>,
    answer: Value,
}

/// FIFO group and deduplication ids: 1 to 128 letters, digits and punctuation.
fn check_id(name: &str, v: &str) -> Result<(), SqsError> {
    if v.is_empty() || v.len() > MAX_ID || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SqsError::invalid_parameter(&format!(
            "Value {v} for parameter {name} is invalid. Reason: {name} can only include alphanumeric and punctuation characters. 1 to 128 in length."
        )));
    }
    Ok(())
}

/// A send, checked and turned into a core message, with the digests to answer with.
pub(crate) struct Outgoing {
    pub message: Message,
    pub md5_body: String,
    pub md5_attributes: Option<String>,
    pub md5_system: Option<String>,
}

/// Checks one message of a send (or batch entry) against `q`'s rules.
pub(crate) fn outgoing(
    q: &QueueHandle,
    entry: &Input<'_>,
    now: Timestamp,
) -> Result<Outgoing, SqsError> {
    let config = q.config();
    let body = entry.str("MessageBody")?;
    if body.is_empty() {
        return Err(SqsError::missing_parameter("MessageBody"));
    }
    if !message_attributes::valid_text(body) {
        return Err(SqsError::invalid_message_contents(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        ));
    }
    let (headers, attr_size) = message_attributes::parse(entry.object("MessageAttributes")?)?;
    let limit = attributes::max_message_size(&config);
    if body.len() + attr_size > limit {
        return Err(SqsError::invalid_parameter(&format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
        )));
    }
    let delay = entry.opt_int("DelaySeconds", 0, 900)?;
    let group = entry.opt_str("MessageGroupId")?;
    let dedup = entry.opt_str("MessageDeduplicationId")?;
    if config.fifo {
        if let Some(d) = delay.filter(|d| *d != 0) {
            return Err(SqsError::invalid_parameter(&format!(
                "Value {d} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type."
            )));
        }
        let group = group.ok_or_else(|| SqsError::missing_parameter("MessageGroupId"))?;
        check_id("MessageGroupId", group)?;
        let content_based = config.dedup.as_ref().is_some_and(|d| d.content_based);
        match dedup {
            Some(d) => check_id("MessageDeduplicationId", d)?,
            None if !content_based => {
                return Err(SqsError::invalid_parameter(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
            None => {}
        }
    } else {
        if dedup.is_some() {
            return Err(SqsError::invalid_parameter(
                "Value for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.",
            ));
        }
        if let Some(g) = group {
            check_id("MessageGroupId", g)?;
        }
    }
    let mut message = Message::new(Bytes::copy_from_slice(body.as_bytes())).persistent();
    message.headers = headers;
    message.group_id = group.map(str::to_owned);
    message.dedup_id = dedup.map(str::to_owned);
    message.properties.delay = delay
        .filter(|_| !config.fifo)
        .map(|d| Duration::from_secs(d as u64));
    let mut md5_system = None;
    if let Some(system) = entry.object("MessageSystemAttributes")? {
        for (name, spec) in system {
            if name != "AWSTraceHeader" {
                return Err(SqsError::invalid_parameter(&format!(
                    "Message system attribute name '{name}' is invalid."
                )));
            }
            let value = spec
                .get("StringValue")
                .and_then(Value::as_str)
                .filter(|_| spec.get("DataType").and_then(Value::as_str) == Some("String"))
                .ok_or_else(|| {
                    SqsError::invalid_parameter("AWSTraceHeader must be a String attribute.")
                })?;
            md5_system = md5::attributes(vec![Attr {
                name: "AWSTraceHeader",
                data_type: "String",
                value: AttrValue::Text(value),
            }]);
            message.properties.trace_context = Some(value.to_owned());
        }
    }
    // Stamped here, not by the broker: the sequence number in the answer
    // is made of it.
    message.published_at = now;
    Ok(Outgoing {
        md5_body: md5::hex(body.as_bytes()),
        md5_attributes: message_attributes::digest(&message.headers),
        md5_system,
        message,
    })
}

/// The answer to one accepted send.
pub(crate) fn sent_result(out: &Outgoing, sent: &Sent, fifo: bool) -> Map<String, Value> {
    let (id, seq) = match sent.outcome {
        Enqueued::Duplicate(original) => (original.id, Some((original.published_at, original.seq))),
        Enqueued::Accepted { seq } => (sent.id, Some((out.message.published_at, seq))),
        Enqueued::Dropped => (sent.id, None),
    };
    let mut r = Map::new();
    r.insert("MessageId".into(), Value::String(id.to_string()));
    r.insert(
        "MD5OfMessageBody".into(),
        Value::String(out.md5_body.clone()),
    );
    if let Some(m) = &out.md5_attributes {
        r.insert("MD5OfMessageAttributes".into(), Value::String(m.clone()));
    }
    if let Some(m) = &out.md5_system {
        r.insert(
            "MD5OfMessageSystemAttributes".into(),
            Value::String(m.clone()),
        );
    }
    if fifo && let Some((at, seq)) = seq {
        r.insert(
            "SequenceNumber".into(),
            Value::String(sequence_number(at, seq)),
        );
    }
    r
}

/// SQS sequence numbers are large decimal strings that only grow, across
/// restarts too: the publish time (ms) then the queue's sequence number
/// (which restarts from the highest surviving one, so alone it could go
/// back after a restart that found the queue empty).
fn sequence_number(published_at: Timestamp, seq: u64) -> String {
    format!(
        "{:013}{:012}",
        published_at.as_millis(),
        seq % 1_000_000_000_000
    )
}

pub async fn send(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let q = sqs.queue(queue_name(req, input)?)?;
    let out = outgoing(&q, input, sqs.broker.now())?;
    let fifo = q.config().fifo;
    let (sent, commit) = sqs.broker.send(&q, out.message.clone())?;
    commit
        .wait()
        .await
        .map_err(|e| SqsError::internal(&format!("The message could not be stored: {e}")))?;
    Ok(Value::Object(sent_result(&out, &sent, fifo)))
}

pub async fn receive(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let config = q.config();
    let max = input.opt_int("MaxNumberOfMessages", 1, 10)?.unwrap_or(1) as usize;
    let visibility = input
        .opt_int("VisibilityTimeout", 0, 43_200)?
        .map_or(config.visibility_timeout, |v| Duration::from_secs(v as u64));
    let wait = input
        .opt_int("WaitTimeSeconds", 0, 20)?
        .map_or_else(|| attributes::wait_time(&config), |w| w as u64);
    let mut system_names = input.string_list("AttributeNames")?;
    system_names.extend(input.string_list("MessageSystemAttributeNames")?);
    let attribute_names = input.string_list("MessageAttributeNames")?;
    let attempt = match input.opt_str("ReceiveRequestAttemptId")? {
        Some(a) if config.fifo => {
            check_id("ReceiveRequestAttemptId", a)?;
            Some((name.to_owned(), a.to_owned()))
        }
        _ => None,
    };
    if let Some(key) = &attempt
        && let Some(answer) = retried(sqs, &q, key)
    {
        return Ok(answer);
    }
    let got = sqs
        .broker
        .receive_wait(
            &q,
            max,
            ReceiveMode::Lease(visibility),
            Duration::from_secs(wait),
        )
        .await;
    let messages: Vec<Value> = got
        .iter()
        .map(|d| render_message(sqs, &q, d, &system_names, &attribute_names))
        .collect();
    let answer = if messages.is_empty() {
        json!({})
    } else {
        json!({ "Messages": messages })
    };
    // An empty answer is not kept: a retry should wait for messages again.
    if let Some(key) = attempt.filter(|_| !got.is_empty()) {
        let mut attempts = sqs
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = sqs.broker.now();
        attempts.retain(|_, a| now.since(a.at) < ATTEMPT_WINDOW);
        attempts.insert(
            key,
            Attempt {
                at: now,
                leases: got.iter().map(|d| d.lease).collect(),
                answer: answer.clone(),
            },
        );
    }
    Ok(answer)
}

/// The answer to an earlier receive with the same attempt id, if it is
/// recent and every message it gave is still held under its lease.
fn retried(sqs: &Sqs, q: &Arc<QueueHandle>, key: &(String, String)) -> Option<Value> {
    let attempts = sqs
        .attempts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = attempts.get(key)?;
    let fresh = sqs.broker.now().since(a.at) < ATTEMPT_WINDOW;
    let held = a.leases.iter().all(|l| sqs.broker.lease_is_current(q, *l));
    (fresh && held).then(|| a.answer.clone())
}

fn render_message(
    sqs: &Sqs,
    q: &Arc<QueueHandle>,
    d: &Delivery,
    system_names: &[&str],
    attribute_names: &[&str],
) -> Value {
    let m = &d.message;
    let body = String::from_utf8_lossy(&m.body);
    let mut out = Map::new();
    out.insert("MessageId".into(), Value::String(m.id.to_string()));
    out.insert(
        "ReceiptHandle".into(),
        Value::String(receipt::encode(q.id(), d.lease)),
    );
    out.insert("MD5OfBody".into(), Value::String(md5::hex(body.as_bytes())));
    out.insert("Body".into(), Value::String(body.into_owned()));
    let want = |n: &str| system_names.iter().any(|w| *w == "All" || *w == n);
    let mut system = Map::new();
    let mut put = |k: &str, v: String| {
        if want(k) {
            system.insert(k.to_owned(), Value::String(v));
        }
    };
    put("SenderId", sqs.config.account_id.clone());
    put("SentTimestamp", m.published_at.as_millis().to_string());
    put("ApproximateReceiveCount", d.delivery_count.to_string());
    put(
        "ApproximateFirstReceiveTimestamp",
        d.first_delivered_at.as_millis().to_string(),
    );
    if let Some(g) = &m.group_id {
        put("MessageGroupId", g.clone());
    }
    if let Some(dd) = &m.dedup_id {
        put("MessageDeduplicationId", dd.clone());
    }
    if q.config().fifo {
        put(
            "SequenceNumber",
            sequence_number(d.message.published_at, d.lease.seq),
        );
    }
    if let Some(t) = &m.properties.trace_context {
        put("AWSTraceHeader", t.clone());
    }
    if let Some(src) = m.last_death_queue() {
        put(
            "DeadLetterQueueSourceArn",
            names::queue_arn(&sqs.config.region, &sqs.config.account_id, src),
        );
    }
    if !system.is_empty() {
        out.insert("Attributes".into(), Value::Object(system));
    }
    if !attribute_names.is_empty() {
        let (attrs, md5) = message_attributes::render(&m.headers, attribute_names);
        if !attrs.is_empty() {
            out.insert("MessageAttributes".into(), Value::Object(attrs));
        }
        if let Some(md5) = md5 {
            out.insert("MD5OfMessageAttributes".into(), Value::String(md5));
        }
    }
    Value::Object(out)
}

pub fn delete(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let q = sqs.queue(queue_name(req, input)?)?;
    let handle = input.str("ReceiptHandle")?;
    delete_one(sqs, &q, handle)?;
    Ok(json!({}))
}

/// Deletes by receipt handle. A well-formed handle of this queue succeeds
/// even if the message is gone (as in SQS); on a standard queue one from
/// an earlier receive deletes the message too.
pub(crate) fn delete_one(sqs: &Sqs, q: &Arc<QueueHandle>, handle: &str) -> Result<(), SqsError> {
    let lease = lease_of(q, handle)?;
    match sqs.broker.ack_matching(q, lease, handle_match(q)) {
        Ok(()) | Err(ferry_core::CoreError::LeaseNotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The lease a receipt handle of `q` names, or SQS's error for a handle
/// that never was one.
fn lease_of(q: &Arc<QueueHandle>, handle: &str) -> Result<Lease, SqsError> {
    receipt::decode(q.id(), handle).ok_or_else(|| crate::wording::receipt_handle_is_invalid(handle))
}

/// Which leases a handle may name: on a standard queue, any the message
/// was given (SQS applies an older handle of a message received again, or
/// whose visibility ran out); on a FIFO queue only the latest.
fn handle_match(q: &Arc<QueueHandle>) -> LeaseMatch {
    if q.config().fifo {
        LeaseMatch::Current
    } else {
        LeaseMatch::AnyOfMessage
    }
}

pub fn change_visibility(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let q = sqs.queue(queue_name(req, input)?)?;
    let handle = input.str("ReceiptHandle")?;
    let timeout = input
        .opt_int("VisibilityTimeout", 0, 43_200)?
        .ok_or_else(|| SqsError::missing_parameter("VisibilityTimeout"))?;
    change_one(sqs, &q, handle, timeout as u64)?;
    Ok(json!({}))
}

pub(crate) fn change_one(
    sqs: &Sqs,
    q: &Arc<QueueHandle>,
    handle: &str,
    timeout: u64,
) -> Result<(), SqsError> {
    let lease = lease_of(q, handle)?;
    sqs.broker
        .set_visibility_matching(
            q,
            lease,
            handle_match(q),
            Duration::from_secs(timeout),
            Some(MAX_VISIBILITY),
        )
        .map(|_| ())
        .map_err(|e| match e {
            ferry_core::CoreError::LeaseNotFound => SqsError::invalid_parameter(&format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
            )),
            ferry_core::CoreError::LeaseTooLong { limit_secs } => SqsError::invalid_parameter(&format!(
                "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [{limit_secs} seconds]"
            )),
            other => other.into(),
        })
}
