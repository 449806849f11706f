//! Queue attributes: SQS's names, ranges and defaults, and where each one
//! lives (the core's queue settings, or the queue's protocol attributes).

use std::time::Duration;

use ferry_core::queue::{
    DeadLetterPolicy, DeadLetterTarget, DedupConfig, DedupScope, QueueConfig, QueueStats,
};
use serde_json::{Map, Value, json};

use crate::error::SqsError;
use crate::names;

pub const DEFAULT_VISIBILITY: u64 = 30;
pub const DEFAULT_RETENTION: u64 = 345_600;
pub const MAX_MESSAGE_SIZE: u64 = 1_048_576;
/// SQS raised the default from 256 KiB to 1 MiB in 2025.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1_048_576;
/// A whole SendMessageBatch request's messages may not exceed this.
pub const MAX_BATCH_SIZE: usize = 1_048_576;

/// Where the SQS-only settings are kept in `QueueConfig::attributes`.
pub mod keys {
    pub const MAX_MESSAGE_SIZE: &str = "MaximumMessageSize";
    pub const WAIT_TIME: &str = "ReceiveMessageWaitTimeSeconds";
    pub const REDRIVE_ALLOW: &str = "RedriveAllowPolicy";
    pub const THROUGHPUT: &str = "FifoThroughputLimit";
    pub const POLICY: &str = "Policy";
    pub const KMS_KEY: &str = "KmsMasterKeyId";
    pub const KMS_REUSE: &str = "KmsDataKeyReusePeriodSeconds";
    pub const SSE: &str = "SqsManagedSseEnabled";
    pub const CREATED: &str = "CreatedTimestamp";
    pub const MODIFIED: &str = "LastModifiedTimestamp";
    pub const TAG_PREFIX: &str = "tag:";
}

/// What attribute checks need to know beyond the queue itself.
pub struct Context<'a> {
    pub region: &'a str,
    pub account: &'a str,
    /// Whether a queue of this name exists (dead-letter targets must).
    pub queue_exists: &'a dyn Fn(&str) -> Option<bool>,
    /// Whether the broker holds a key of this name to seal a queue with.
    pub key_exists: &'a dyn Fn(&str) -> bool,
}

fn bad_value(name: &str, why: &str) -> SqsError {
    SqsError::invalid_attribute_value(&format!("Invalid value for the parameter {name}. {why}"))
}

fn int_in(name: &str, v: &str, lo: u64, hi: u64) -> Result<u64, SqsError> {
    match v.trim().parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(bad_value(
            name,
            &format!("It must be an integer from {lo} to {hi}."),
        )),
    }
}

fn boolean(name: &str, v: &str) -> Result<bool, SqsError> {
    match v {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(bad_value(name, "It must be true or false.")),
    }
}

fn fifo_only_named(c: &QueueConfig, name: &str) -> Result<(), SqsError> {
    if c.fifo {
        Ok(())
    } else {
        Err(SqsError::invalid_attribute_name(&format!(
            "You can specify the {name} only when FifoQueue is set to true."
        )))
    }
}

/// The ferry key (`ferry serve --encryption-queue-key NAME=FILE`) that a
/// KmsMasterKeyId names: an alias (`alias/NAME`, or its ARN) or a key id
/// (or its ARN) is the name. `alias/aws/sqs`, the AWS-managed key, is the
/// journal's own key: `None`.
pub fn kms_key_name(id: &str) -> Option<String> {
    let id = id.trim();
    let tail = if id.starts_with("arn:") {
        // arn:aws:kms:REGION:ACCOUNT:alias/NAME or ...:key/ID
        id.splitn(6, ':').nth(5).unwrap_or(id)
    } else {
        id
    };
    let name = tail
        .strip_prefix("alias/")
        .or_else(|| tail.strip_prefix("key/").filter(|_| tail != id))
        .unwrap_or(tail);
    (name != "aws/sqs").then(|| name.to_owned())
}

/// A new queue's settings with SQS's defaults.
pub fn defaults(fifo: bool, now_secs: u64) -> QueueConfig {
    let mut c = QueueConfig {
        durable: true,
        fifo,
        dedup: fifo.then(DedupConfig::default),
        visibility_timeout: Duration::from_secs(DEFAULT_VISIBILITY),
        message_ttl: Some(Duration::from_secs(DEFAULT_RETENTION)),
        ..QueueConfig::default()
    };
    c.attributes.insert(
        keys::MAX_MESSAGE_SIZE.into(),
        DEFAULT_MAX_MESSAGE_SIZE.to_string(),
    );
    c.attributes.insert(keys::WAIT_TIME.into(), "0".into());
    c.attributes.insert(keys::SSE.into(), "true".into());
    c.attributes
        .insert(keys::CREATED.into(), now_secs.to_string());
    c.attributes
        .insert(keys::MODIFIED.into(), now_secs.to_string());
    c
}

/// Applies attribute `name` = `value` to `c`. `creating`: FifoQueue may be
/// given only when the queue is created.
pub fn set(
    c: &mut QueueConfig,
    name: &str,
    value: &str,
    creating: bool,
    ctx: &Context<'_>,
) -> Result<(), SqsError> {
    let fifo_only = |c: &QueueConfig| {
        if c.fifo {
            Ok(())
        } else {
            Err(SqsError::invalid_attribute_name(&format!(
                "Unknown Attribute {name}."
            )))
        }
    };
    match name {
        "DelaySeconds" => c.delay = Duration::from_secs(int_in(name, value, 0, 900)?),
        "MaximumMessageSize" => {
            let n = int_in(name, value, 1024, MAX_MESSAGE_SIZE)?;
            c.attributes
                .insert(keys::MAX_MESSAGE_SIZE.into(), n.to_string());
        }
        "MessageRetentionPeriod" => {
            c.message_ttl = Some(Duration::from_secs(int_in(name, value, 60, 1_209_600)?));
        }
        "ReceiveMessageWaitTimeSeconds" => {
            let n = int_in(name, value, 0, 20)?;
            c.attributes.insert(keys::WAIT_TIME.into(), n.to_string());
        }
        "VisibilityTimeout" => {
            c.visibility_timeout = Duration::from_secs(int_in(name, value, 0, 43_200)?);
        }
        "RedrivePolicy" => c.dead_letter = redrive_policy(value, c.fifo, ctx)?,
        "RedriveAllowPolicy" => {
            if value.is_empty() {
                c.attributes.remove(keys::REDRIVE_ALLOW);
            } else {
                check_redrive_allow(value)?;
                c.attributes
                    .insert(keys::REDRIVE_ALLOW.into(), value.to_owned());
            }
        }
        "FifoQueue" => {
            // A standard queue knows no such attribute, even `false`.
            fifo_only(c)?;
            if !boolean(name, value)? {
                return Err(bad_value(
                    name,
                    if creating {
                        "Reason: A FIFO queue's name must end in .fifo."
                    } else {
                        "Reason: Modifying queue type is not supported."
                    },
                ));
            }
        }
        "ContentBasedDeduplication" => {
            fifo_only(c)?;
            let on = boolean(name, value)?;
            c.dedup
                .get_or_insert_with(DedupConfig::default)
                .content_based = on;
        }
        "DeduplicationScope" => {
            fifo_only_named(c, name)?;
            let scope = match value {
                "messageGroup" => DedupScope::Group,
                "queue" => DedupScope::Queue,
                _ => return Err(bad_value(name, "It must be messageGroup or queue.")),
            };
            c.dedup.get_or_insert_with(DedupConfig::default).scope = scope;
        }
        "FifoThroughputLimit" => {
            fifo_only_named(c, name)?;
            if !matches!(value, "perQueue" | "perMessageGroupId") {
                return Err(bad_value(name, "It must be perQueue or perMessageGroupId."));
            }
            c.attributes
                .insert(keys::THROUGHPUT.into(), value.to_owned());
        }
        "Policy" => {
            if value.is_empty() {
                c.attributes.remove(keys::POLICY);
            } else {
                if !serde_json::from_str::<Value>(value).is_ok_and(|v| v.is_object()) {
                    return Err(bad_value(name, "It must be a JSON policy document."));
                }
                c.attributes.insert(keys::POLICY.into(), value.to_owned());
            }
        }
        "KmsMasterKeyId" => {
            if value.is_empty() {
                c.attributes.remove(keys::KMS_KEY);
                c.encryption_key = None;
            } else {
                c.attributes.insert(keys::KMS_KEY.into(), value.to_owned());
                c.attributes.insert(keys::SSE.into(), "false".into());
                // Any id is taken, as AWS takes it; one that names a key
                // this broker holds seals the queue under it, any other is
                // kept and reported while the journal's key (if any) seals
                // the queue (docs/security.md).
                let named = kms_key_name(value);
                let held = named.clone().filter(|n| (ctx.key_exists)(n));
                if named.is_some() && held.is_none() {
                    // A queue sealed under a key of its own does not lose it
                    // to an id that names none: that would quietly lower
                    // its protection while still reporting a KMS key.
                    if let Some(current) = &c.encryption_key {
                        return Err(bad_value(
                            name,
                            &format!(
                                "The queue is sealed under key '{current}'; '{value}' names no key this broker holds."
                            ),
                        ));
                    }
                    tracing::warn!(
                        kms_master_key_id = value,
                        "KmsMasterKeyId names no key this broker holds: kept and reported; the queue is sealed as the journal is"
                    );
                }
                c.encryption_key = held;
            }
        }
        "KmsDataKeyReusePeriodSeconds" => {
            let n = int_in(name, value, 60, 86_400)?;
            c.attributes.insert(keys::KMS_REUSE.into(), n.to_string());
        }
        "SqsManagedSseEnabled" => {
            let on = boolean(name, value)?;
            c.attributes.insert(keys::SSE.into(), on.to_string());
        }
        _ => {
            return Err(SqsError::invalid_attribute_name(&format!(
                "Unknown Attribute {name}."
            )));
        }
    }
    Ok(())
}

fn redrive_policy(
    value: &str,
    fifo: bool,
    ctx: &Context<'_>,
) -> Result<Option<DeadLetterPolicy>, SqsError> {
    const NAME: &str = "RedrivePolicy";
    if value.is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(value)
        .map_err(|_| bad_value(NAME, "Reason: the policy is not valid JSON."))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_value(NAME, "Reason: deadLetterTargetArn is missing."))?;
    let max = match v.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or_else(|| {
        bad_value(
            NAME,
            "Reason: maxReceiveCount must be an integer from 1 to 1000.",
        )
    })?;
    let target = names::name_from_arn(arn)?;
    match (ctx.queue_exists)(target) {
        None => {
            return Err(bad_value(
                NAME,
                "Reason: Dead letter target does not exist.",
            ));
        }
        Some(target_fifo) if target_fifo != fifo => {
            return Err(bad_value(
                NAME,
                "Reason: The dead letter queue of a FIFO queue must be a FIFO queue, and of a standard queue a standard queue.",
            ));
        }
        Some(_) => {}
    }
    Ok(Some(DeadLetterPolicy::after_deliveries(
        DeadLetterTarget::Queue(target.to_owned()),
        max as u32,
    )))
}

fn check_redrive_allow(value: &str) -> Result<(), SqsError> {
    let v: Value = serde_json::from_str(value)
        .map_err(|_| bad_value("RedriveAllowPolicy", "It is not valid JSON."))?;
    let permission = v.get("redrivePermission").and_then(Value::as_str);
    let sources = v.get("sourceQueueArns").and_then(Value::as_array);
    let ok = match permission {
        Some("allowAll") | Some("denyAll") => sources.is_none_or(|s| s.is_empty()),
        Some("byQueue") => sources.is_some_and(|s| !s.is_empty() && s.len() <= 10),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad_value(
            "RedriveAllowPolicy",
            "redrivePermission must be allowAll, denyAll or byQueue (byQueue with 1 to 10 sourceQueueArns).",
        ))
    }
}

/// Every attribute name `GetQueueAttributes` knows.
const ALL: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "Policy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// The attributes `names` asks for (`All`: every one that has a value).
pub fn get(
    name: &str,
    c: &QueueConfig,
    stats: &QueueStats,
    names_wanted: &[&str],
    ctx: &Context<'_>,
) -> Result<Map<String, Value>, SqsError> {
    let all = names_wanted.contains(&"All");
    for n in names_wanted {
        if *n != "All" && !ALL.contains(n) {
            return Err(SqsError::invalid_attribute_name(&format!(
                "Unknown Attribute {n}."
            )));
        }
    }
    let mut out = Map::new();
    for attr in ALL {
        if !all && !names_wanted.contains(attr) {
            continue;
        }
        if let Some(v) = value_of(attr, name, c, stats, ctx) {
            out.insert((*attr).to_owned(), Value::String(v));
        }
    }
    Ok(out)
}

fn value_of(
    attr: &str,
    name: &str,
    c: &QueueConfig,
    s: &QueueStats,
    ctx: &Context<'_>,
) -> Option<String> {
    let kept = |k: &str| c.attributes.get(k).cloned();
    let fifo = |v: String| c.fifo.then_some(v);
    Some(match attr {
        "ApproximateNumberOfMessages" => s.ready.to_string(),
        "ApproximateNumberOfMessagesDelayed" => s.delayed.to_string(),
        "ApproximateNumberOfMessagesNotVisible" => s.leased.to_string(),
        "CreatedTimestamp" => kept(keys::CREATED)?,
        "LastModifiedTimestamp" => kept(keys::MODIFIED)?,
        "DelaySeconds" => c.delay.as_secs().to_string(),
        "MaximumMessageSize" => kept(keys::MAX_MESSAGE_SIZE)?,
        "MessageRetentionPeriod" => c
            .message_ttl
            .map_or(DEFAULT_RETENTION, |t| t.as_secs())
            .to_string(),
        "QueueArn" => names::queue_arn(ctx.region, ctx.account, name),
        "ReceiveMessageWaitTimeSeconds" => kept(keys::WAIT_TIME)?,
        "VisibilityTimeout" => c.visibility_timeout.as_secs().to_string(),
        "RedrivePolicy" => {
            let p = c.dead_letter.as_ref()?;
            let DeadLetterTarget::Queue(q) = &p.target else {
                return None;
            };
            json!({
                "deadLetterTargetArn": names::queue_arn(ctx.region, ctx.account, q),
                "maxReceiveCount": p.max_deliveries?,
            })
            .to_string()
        }
        "RedriveAllowPolicy" => kept(keys::REDRIVE_ALLOW)?,
        "Policy" => kept(keys::POLICY)?,
        "KmsMasterKeyId" => kept(keys::KMS_KEY)?,
        "KmsDataKeyReusePeriodSeconds" => kept(keys::KMS_REUSE).or_else(|| {
            c.attributes
                .contains_key(keys::KMS_KEY)
                .then(|| "300".into())
        })?,
        "SqsManagedSseEnabled" => kept(keys::SSE)?,
        "FifoQueue" => fifo("true".into())?,
        "ContentBasedDeduplication" => fifo(
            c.dedup
                .as_ref()
                .is_some_and(|d| d.content_based)
                .to_string(),
        )?,
        "DeduplicationScope" => fifo(
            match c.dedup.as_ref().map(|d| d.scope) {
                Some(DedupScope::Group) => "messageGroup",
                _ => "queue",
            }
            .into(),
        )?,
        "FifoThroughputLimit" => fifo(kept(keys::THROUGHPUT).unwrap_or_else(|| "perQueue".into()))?,
        _ => return None,
    })
}

/// The queue's tags.
pub fn tags(c: &QueueConfig) -> Map<String, Value> {
    c.attributes
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(keys::TAG_PREFIX)
                .map(|t| (t.to_owned(), Value::String(v.clone())))
        })
        .collect()
}

/// The largest message (body plus attributes) the queue accepts.
pub fn max_message_size(c: &QueueConfig) -> usize {
    c.attributes
        .get(keys::MAX_MESSAGE_SIZE)
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE as usize)
}

/// The queue's default long-poll wait.
pub fn wait_time(c: &QueueConfig) -> u64 {
    c.attributes
        .get(keys::WAIT_TIME)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::kms_key_name;

    #[test]
    fn kms_key_ids_name_ferry_keys() {
        let name = |id| kms_key_name(id);
        assert_eq!(name("alias/aws/sqs"), None, "the AWS-managed key");
        assert_eq!(name("alias/orders").as_deref(), Some("orders"));
        assert_eq!(name("orders").as_deref(), Some("orders"));
        assert_eq!(
            name("arn:aws:kms:us-east-1:000000000000:alias/orders").as_deref(),
            Some("orders")
        );
        assert_eq!(
            name("arn:aws:kms:us-east-1:000000000000:key/1234abcd").as_deref(),
            Some("1234abcd")
        );
        assert_eq!(name("arn:aws:kms:eu-west-1:1:alias/aws/sqs"), None);
    }
}
