//! Queue actions: create, delete, find, list, attributes, purge, tags,
//! dead-letter sources.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_core::queue::{DeadLetterTarget, QueueConfig};
use ferry_core::store::Commit;
use serde_json::{Map, Value, json};

use super::queue_name;
use crate::Sqs;
use crate::attributes::{self, Context, keys};
use crate::error::SqsError;
use crate::input::Input;
use crate::names;
use crate::wire::Request;

/// SQS allows one purge of a queue a minute, and the reuse of a deleted
/// queue's name after a minute.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);
const REUSE_AFTER: Duration = Duration::from_secs(60);
const MAX_TAGS: usize = 50;

impl Sqs {
    fn context(&self) -> (impl Fn(&str) -> Option<bool> + '_, &str, &str) {
        let exists = move |name: &str| self.queue(name).ok().map(|q| q.config().fifo);
        (exists, &self.config.region, &self.config.account_id)
    }

    fn url(&self, req: &Request, name: &str) -> String {
        names::queue_url(&req.host, &self.config.account_id, name)
    }

    fn now_secs(&self) -> u64 {
        self.broker.now().as_millis() / 1000
    }
}

pub async fn create(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let commit = create_now(sqs, input)?;
    super::durable(commit).await?;
    Ok(json!({ "QueueUrl": sqs.url(req, input.str("QueueName")?) }))
}

/// CreateQueue up to its answer, which waits for the returned commit (an
/// existing queue's may be a moment old: it covers everything before).
fn create_now(sqs: &Sqs, input: &Input<'_>) -> Result<Commit, SqsError> {
    let name = input.str("QueueName")?;
    names::check_queue_name(name)?;
    let requested = input.string_map("Attributes")?;
    // The JSON protocol names CreateQueue's tags `tags` (TagQueue's are
    // `Tags`); the query protocol sends `Tag.N.*`, folded into `Tags`.
    let mut tags = input.string_map("tags")?;
    tags.extend(input.string_map("Tags")?);
    let fifo_attr = requested
        .iter()
        .any(|(k, v)| *k == "FifoQueue" && v == "true");
    let fifo_name = name.ends_with(".fifo");
    if fifo_attr != fifo_name {
        return Err(SqsError::invalid_parameter(
            "The name of a FIFO queue must end with the .fifo suffix, and FifoQueue must be true for such a queue.",
        ));
    }
    let (exists, region, account) = sqs.context();
    let ctx = Context {
        region,
        account,
        queue_exists: &exists,
        key_exists: &|k: &str| sqs.broker.has_key(k),
    };
    if let Ok(existing) = sqs.queue(name) {
        // Same name: fine if what was asked for is what is there.
        let current = existing.config();
        let mut wanted = current.clone();
        for (k, v) in &requested {
            attributes::set(&mut wanted, k, v, true, &ctx)?;
        }
        if wanted != current {
            return Err(SqsError::queue_name_exists(&format!(
                "A queue already exists with the same name and a different value for attribute(s) {}",
                requested
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Ok(sqs.broker.barrier());
    }
    {
        let now = sqs.broker.now();
        let mut deleted = sqs
            .deleted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        deleted.retain(|_, at| now.since(*at) < REUSE_AFTER);
        if deleted.contains_key(name) {
            return Err(SqsError::queue_deleted_recently(
                "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
            ));
        }
    }
    let mut config = attributes::defaults(fifo_name, sqs.now_secs());
    for (k, v) in &requested {
        attributes::set(&mut config, k, v, true, &ctx)?;
    }
    if tags.len() > MAX_TAGS {
        return Err(SqsError::invalid_parameter(
            "A queue may have at most 50 tags.",
        ));
    }
    for (k, v) in tags {
        config
            .attributes
            .insert(format!("{}{k}", keys::TAG_PREFIX), v);
    }
    match sqs
        .broker
        .declare_queue(&sqs.config.namespace, name, config)
    {
        Ok((_, commit)) => Ok(commit),
        // Lost a race with another create of the same name.
        Err(ferry_core::CoreError::QueueExists { .. }) => Err(SqsError::queue_name_exists(
            "A queue already exists with the same name and different attributes.",
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let (_, commit) = sqs
        .broker
        .delete_queue(&sqs.config.namespace, name, false, false)
        .map_err(|_| SqsError::no_queue())?;
    sqs.deleted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_owned(), sqs.broker.now());
    super::durable(commit).await?;
    Ok(json!({}))
}

pub fn get_url(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = input.str("QueueName")?;
    if let Some(owner) = input.opt_str("QueueOwnerAWSAccountId")?
        && owner != sqs.config.account_id
    {
        return Err(SqsError::no_queue());
    }
    sqs.queue(name)?;
    Ok(json!({ "QueueUrl": sqs.url(req, name) }))
}

/// The queues `who` may see (a user: those it has any permission on).
pub fn list(
    sqs: &Sqs,
    who: &crate::access::Principal,
    req: &Request,
    input: &Input<'_>,
) -> Result<Value, SqsError> {
    let prefix = input.opt_str("QueueNamePrefix")?.unwrap_or("");
    let max = input.opt_int("MaxResults", 1, 1000)?;
    let after = match input.opt_str("NextToken")? {
        None => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid_parameter("Invalid NextToken."))?,
        ),
    };
    let names: Vec<String> = sqs
        .broker
        .queue_names(&sqs.config.namespace)?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .filter(|n| who.sees(&sqs.config.namespace, n))
        .collect();
    let limit = max.map_or(1000, |m| m as usize);
    let mut out = Map::new();
    let page: Vec<Value> = names
        .iter()
        .take(limit)
        .map(|n| Value::String(sqs.url(req, n)))
        .collect();
    if max.is_some()
        && names.len() > limit
        && let Some(last) = limit.checked_sub(1).and_then(|i| names.get(i))
    {
        out.insert(
            "NextToken".into(),
            Value::String(URL_SAFE_NO_PAD.encode(last.as_bytes())),
        );
    }
    if !page.is_empty() {
        out.insert("QueueUrls".into(), Value::Array(page));
    }
    Ok(Value::Object(out))
}

pub fn get_attributes(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let wanted = input.string_list("AttributeNames")?;
    let (exists, region, account) = sqs.context();
    let ctx = Context {
        region,
        account,
        queue_exists: &exists,
        key_exists: &|k: &str| sqs.broker.has_key(k),
    };
    let attrs = attributes::get(name, &q.config(), &q.stats(), &wanted, &ctx)?;
    if attrs.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": attrs }))
}

pub async fn set_attributes(
    sqs: &Sqs,
    req: &Request,
    input: &Input<'_>,
) -> Result<Value, SqsError> {
    super::durable(set_attributes_now(sqs, req, input)?).await?;
    Ok(json!({}))
}

fn set_attributes_now(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Commit, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let requested = input.string_map("Attributes")?;
    let (exists, region, account) = sqs.context();
    let ctx = Context {
        region,
        account,
        queue_exists: &exists,
        key_exists: &|k: &str| sqs.broker.has_key(k),
    };
    let mut config = q.config();
    for (k, v) in &requested {
        attributes::set(&mut config, k, v, false, &ctx)?;
    }
    config
        .attributes
        .insert(keys::MODIFIED.into(), sqs.now_secs().to_string());
    Ok(sqs.broker.reconfigure_queue(&q, config)?)
}

pub async fn purge(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let now = sqs.broker.now();
    {
        let mut purges = sqs
            .purges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(last) = purges.get(name)
            && now.since(*last) < PURGE_INTERVAL
        {
            return Err(SqsError::purge_queue_in_progress(&format!(
                "Only one PurgeQueue operation on {name} is allowed every 60 seconds."
            )));
        }
        purges.insert(name.to_owned(), now);
    }
    let (_, commit) = sqs.broker.purge(&q, true);
    super::durable(commit).await?;
    Ok(json!({}))
}

pub async fn tag(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let tags = input.string_map("Tags")?;
    if tags.is_empty() {
        return Err(SqsError::missing_parameter("Tags"));
    }
    let mut config = q.config();
    for (k, v) in tags {
        config
            .attributes
            .insert(format!("{}{k}", keys::TAG_PREFIX), v);
    }
    if attributes::tags(&config).len() > MAX_TAGS {
        return Err(SqsError::invalid_parameter(
            "A queue may have at most 50 tags.",
        ));
    }
    super::durable(sqs.broker.reconfigure_queue(&q, config)?).await?;
    Ok(json!({}))
}

pub async fn untag(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let keys_to_drop = input.string_list("TagKeys")?;
    if keys_to_drop.is_empty()
        || keys_to_drop
            .iter()
            .any(|k| k.is_empty() || k.chars().count() > 128)
    {
        return Err(crate::wording::invalid_parameter_value::tag_key_length());
    }
    let mut config = q.config();
    for k in keys_to_drop {
        config
            .attributes
            .remove(&format!("{}{k}", keys::TAG_PREFIX));
    }
    super::durable(sqs.broker.reconfigure_queue(&q, config)?).await?;
    Ok(json!({}))
}

pub fn list_tags(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let tags = attributes::tags(&q.config());
    if tags.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Tags": tags }))
}

pub fn dead_letter_sources(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    sqs.queue(name)?;
    let sources: Vec<Value> = sqs
        .broker
        .queue_names(&sqs.config.namespace)?
        .into_iter()
        .filter(|n| {
            sqs.queue(n).is_ok_and(|q| {
                let c: QueueConfig = q.config();
                matches!(c.dead_letter.map(|p| p.target), Some(DeadLetterTarget::Queue(t)) if t == name)
            })
        })
        .map(|n| Value::String(sqs.url(req, &n)))
        .collect();
    Ok(json!({ "queueUrls": sources }))
}
