//! AddPermission and RemovePermission: statements in the queue's Policy.
//! (Who may do what is enforced by ferry's own users and permissions; the
//! policy is kept and shown as SQS keeps and shows it.)

use serde_json::{Value, json};

use super::queue_name;
use crate::Sqs;
use crate::attributes::keys;
use crate::error::SqsError;
use crate::input::Input;
use crate::names;
use crate::wire::Request;

const MAX_ACTIONS: usize = 7;

/// What AddPermission may share with another account (AWS's list; the
/// batch actions come with their single forms). Everything else, the
/// owner-only actions among it, AWS refuses by the same words.
const SHAREABLE: &[&str] = &[
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ListQueueTags",
];

fn label_invalid(label: &str, why: &str) -> SqsError {
    SqsError::invalid_parameter(&format!(
        "Value {label} for parameter Label is invalid. Reason: {why}"
    ))
}

pub async fn add(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let label = input.str("Label")?;
    let well_formed = !label.is_empty()
        && label.len() <= 80
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(label_invalid(
            label,
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    let accounts = input.string_list("AWSAccountIds")?;
    let actions = input.string_list("Actions")?;
    if accounts.is_empty() {
        return Err(SqsError::missing_parameter("AWSAccountIds"));
    }
    if actions.is_empty() {
        return Err(SqsError::missing_parameter("Actions"));
    }
    if actions.len() > MAX_ACTIONS {
        return Err(SqsError::over_limit(&format!(
            "{} Actions were found, maximum allowed is {MAX_ACTIONS}.",
            actions.len()
        )));
    }
    if let Some(owner_only) = actions.iter().find(|a| !SHAREABLE.contains(a)) {
        return Err(SqsError::invalid_parameter(&format!(
            "Value SQS:{owner_only} for parameter ActionName is invalid. Reason: Only the queue owner is allowed to invoke this action."
        )));
    }
    let arn = names::queue_arn(&sqs.config.region, &sqs.config.account_id, name);
    let mut config = q.config();
    let mut policy: Value = config
        .attributes
        .get(keys::POLICY)
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_else(|| json!({"Version": "2008-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": []}));
    let statements = policy
        .get_mut("Statement")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| SqsError::invalid_parameter("The queue's Policy has no Statement list."))?;
    if statements.iter().any(|s| s["Sid"] == label) {
        return Err(label_invalid(label, "Already exists."));
    }
    let principals: Vec<String> = accounts
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:root"))
        .collect();
    let actions: Vec<String> = actions.iter().map(|a| format!("SQS:{a}")).collect();
    // One principal or action is written as a plain string, as AWS does.
    let one_or_list = |v: Vec<String>| match <[String; 1]>::try_from(v) {
        Ok([one]) => Value::String(one),
        Err(v) => json!(v),
    };
    statements.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": one_or_list(principals)},
        "Action": one_or_list(actions),
        "Resource": arn,
    }));
    config
        .attributes
        .insert(keys::POLICY.into(), policy.to_string());
    super::durable(sqs.broker.reconfigure_queue(&q, config)?).await?;
    Ok(json!({}))
}

pub async fn remove(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Value, SqsError> {
    let name = queue_name(req, input)?;
    let q = sqs.queue(name)?;
    let label = input.str("Label")?;
    let mut config = q.config();
    let mut policy: Value = config
        .attributes
        .get(keys::POLICY)
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or_else(|| label_invalid(label, "can't find label."))?;
    let statements = policy
        .get_mut("Statement")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| label_invalid(label, "can't find label."))?;
    let before = statements.len();
    statements.retain(|s| s["Sid"] != label);
    if statements.len() == before {
        return Err(label_invalid(label, "can't find label."));
    }
    if statements.is_empty() {
        config.attributes.remove(keys::POLICY);
    } else {
        config
            .attributes
            .insert(keys::POLICY.into(), policy.to_string());
    }
    super::durable(sqs.broker.reconfigure_queue(&q, config)?).await?;
    Ok(json!({}))
}
