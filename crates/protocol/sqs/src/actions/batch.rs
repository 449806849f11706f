//! Batch actions: up to 10 entries, each succeeding or failing on its own.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::message::{change_one, delete_one, outgoing, sent_result};
use super::queue_name;
use crate::Sqs;
use crate::attributes;
use crate::error::SqsError;
use crate::input::Input;
use crate::wire::Request;

const MAX_ENTRIES: usize = 10;

/// The entries of a batch, checked as a whole: 1 to 10, ids well formed
/// and distinct. `kind` names them as AWS does in its errors
/// (`SendMessageBatchRequestEntry`).
fn entries<'a>(input: &Input<'a>, kind: &str) -> Result<Vec<Input<'a>>, SqsError> {
    let entries = input.object_list("Entries")?;
    if entries.is_empty() {
        return Err(crate::wording::empty_batch(kind));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(SqsError::too_many_entries(&format!(
            "Maximum number of entries per request are {MAX_ENTRIES}. You have sent {}.",
            entries.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let entry = Input(e);
        let id = entry.str("Id")?;
        let well_formed = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(SqsError::invalid_batch_entry_id(
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::batch_ids_not_distinct(&format!(
                "Id {id} repeated."
            )));
        }
        out.push(entry);
    }
    Ok(out)
}

/// What an entry weighs towards the batch limit: its body and its message
/// attributes' names, types and values, as SQS counts them.
fn raw_size(e: &Input<'_>) -> usize {
    let body = e.opt_str("MessageBody").ok().flatten().map_or(0, str::len);
    let attrs = e
        .object("MessageAttributes")
        .ok()
        .flatten()
        .map_or(0, |attrs| {
            attrs
                .iter()
                .map(|(name, v)| {
                    let field = |k: &str| v.get(k).and_then(Value::as_str).map_or(0, str::len);
                    // Binary values travel in base64; their bytes count.
                    let binary = v
                        .get("BinaryValue")
                        .and_then(Value::as_str)
                        .map_or(0, |b| (b.trim_end_matches('=').len() * 3) / 4);
                    name.len() + field("DataType") + field("StringValue") + binary
                })
                .sum()
        });
    body + attrs
}

fn failure(id: &str, e: &SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.sender_fault,
        "Code": e.query_code,
        "Message": e.message,
    })
}

/// SQS leaves `Failed` out when nothing failed (some SDKs treat its mere
/// presence as failure).
fn result(successful: Vec<Value>, failed: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert("Successful".into(), Value::Array(successful));
    if !failed.is_empty() {
        m.insert("Failed".into(), Value::Array(failed));
    }
    Value::Object(m)
}

pub async fn send(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let q = sqs.queue(queue_name(req, input)?)?;
    let entries = entries(input, "SendMessageBatchRequestEntry")?;
    let config = q.config();
    // What fails the whole request, as in SQS, before any entry is tried:
    // the batch's size (every entry's body and attributes, valid or not),
    // and a FIFO entry without its group or deduplication id.
    let total: usize = entries.iter().map(raw_size).sum();
    let limit = attributes::MAX_BATCH_SIZE;
    if total > limit {
        return Err(crate::wording::batch_too_long(limit, total));
    }
    if config.fifo {
        let content_based = config.dedup.as_ref().is_some_and(|d| d.content_based);
        for e in &entries {
            if e.opt_str("MessageGroupId")?.is_none() {
                return Err(SqsError::invalid_parameter(
                    "The request must contain the parameter MessageGroupId.",
                ));
            }
            if !content_based && e.opt_str("MessageDeduplicationId")?.is_none() {
                return Err(SqsError::invalid_parameter(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
        }
    }
    let mut checked = Vec::with_capacity(entries.len());
    let now = sqs.broker.now();
    for e in &entries {
        let id = e.str("Id")?;
        checked.push((id, outgoing(&q, e, now)));
    }
    let (ok, mut failed): (Vec<_>, Vec<_>) = checked.into_iter().partition(|(_, o)| o.is_ok());
    let mut failures: Vec<Value> = failed
        .drain(..)
        .filter_map(|(id, o)| o.err().map(|e| failure(id, &e)))
        .collect();
    let ok: Vec<_> = ok
        .into_iter()
        .filter_map(|(id, o)| o.ok().map(|o| (id, o)))
        .collect();
    let messages = ok.iter().map(|(_, o)| o.message.clone()).collect();
    let (results, commit) = sqs.broker.send_batch(&q, messages)?;
    commit
        .wait()
        .await
        .map_err(|e| SqsError::internal(&format!("The batch could not be stored: {e}")))?;
    let mut successful = Vec::new();
    for ((id, out), r) in ok.iter().zip(results) {
        match r {
            Ok(sent) => {
                let mut m = sent_result(out, &sent, config.fifo);
                m.insert("Id".into(), Value::String((*id).to_owned()));
                successful.push(Value::Object(m));
            }
            Err(e) => failures.push(failure(id, &e.into())),
        }
    }
    Ok(result(successful, failures))
}

pub fn delete(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let q = sqs.queue(queue_name(req, input)?)?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for e in entries(input, "DeleteMessageBatchRequestEntry")? {
        let id = e.str("Id")?;
        match e.str("ReceiptHandle").and_then(|h| delete_one(sqs, &q, h)) {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(err) => failed.push(failure(id, &err)),
        }
    }
    Ok(result(successful, failed))
}

pub fn change_visibility(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let q = sqs.queue(queue_name(req, input)?)?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for e in entries(input, "ChangeMessageVisibilityBatchRequestEntry")? {
        let id = e.str("Id")?;
        let outcome = e.str("ReceiptHandle").and_then(|h| {
            let t = e
                .opt_int("VisibilityTimeout", 0, 43_200)?
                .ok_or_else(|| SqsError::missing_parameter("VisibilityTimeout"))?;
            change_one(sqs, &q, h, t as u64)
        });
        match outcome {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(err) => failed.push(failure(id, &err)),
        }
    }
    Ok(result(successful, failed))
}
