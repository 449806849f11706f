//! SQS actions, dispatched by name.

pub(crate) use message::Attempt;

mod batch;
mod message;
mod move_tasks;
mod permissions;
mod queue;

use serde_json::Value;

use crate::Sqs;
use crate::error::SqsError;
use crate::input::Input;
use crate::wire::Request;

pub use move_tasks::task_source as move_task_source;

/// Runs the action `who` asked for, if they may.
pub async fn dispatch(
    sqs: &Sqs,
    who: &crate::access::Principal,
    req: &Request,
) -> Result<Value, SqsError> {
    let input = Input(&req.input);
    crate::access::authorize(sqs, who, req, &input)?;
    // While memory or disk is short, senders wait (SDKs retry throttling
    // with backoff); receiving and deleting go on and relieve the pressure.
    if matches!(req.action.as_str(), "SendMessage" | "SendMessageBatch")
        && let Some(reason) = sqs.alarm.borrow().clone()
    {
        return Err(SqsError::throttled(&format!(
            "The broker is short of a resource; retry later ({reason})."
        )));
    }
    match req.action.as_str() {
        "CreateQueue" => queue::create(sqs, req, &input).await,
        "DeleteQueue" => queue::delete(sqs, req, &input).await,
        "GetQueueUrl" => queue::get_url(sqs, req, &input),
        "ListQueues" => queue::list(sqs, who, req, &input),
        "GetQueueAttributes" => queue::get_attributes(sqs, req, &input),
        "SetQueueAttributes" => queue::set_attributes(sqs, req, &input).await,
        "PurgeQueue" => queue::purge(sqs, req, &input).await,
        "TagQueue" => queue::tag(sqs, req, &input).await,
        "UntagQueue" => queue::untag(sqs, req, &input).await,
        "ListQueueTags" => queue::list_tags(sqs, req, &input),
        "ListDeadLetterSourceQueues" => queue::dead_letter_sources(sqs, req, &input),
        "SendMessage" => message::send(sqs, req, &input).await,
        "ReceiveMessage" => message::receive(sqs, req, &input).await,
        "DeleteMessage" => message::delete(sqs, req, &input),
        "ChangeMessageVisibility" => message::change_visibility(sqs, req, &input),
        "SendMessageBatch" => batch::send(sqs, req, &input).await,
        "DeleteMessageBatch" => batch::delete(sqs, req, &input),
        "ChangeMessageVisibilityBatch" => batch::change_visibility(sqs, req, &input),
        "StartMessageMoveTask" => move_tasks::start(sqs, &input),
        "ListMessageMoveTasks" => move_tasks::list(sqs, &input),
        "CancelMessageMoveTask" => move_tasks::cancel(sqs, &input),
        "AddPermission" => permissions::add(sqs, req, &input).await,
        "RemovePermission" => permissions::remove(sqs, req, &input).await,
        other => Err(SqsError::invalid_action(&format!(
            "The action {other} is not valid for this endpoint."
        ))),
    }
}

/// Waits for a change to be durable before it is answered.
pub(crate) async fn durable(commit: ferry_core::store::Commit) -> Result<(), SqsError> {
    commit
        .wait()
        .await
        .map_err(|e| SqsError::internal(&format!("The change could not be stored: {e}")))
}

/// The queue a request names: its `QueueUrl`, or for the query protocol
/// the path it was sent to.
pub(crate) fn queue_name<'a>(req: &'a Request, input: &Input<'a>) -> Result<&'a str, SqsError> {
    match input.opt_str("QueueUrl")? {
        Some(url) => crate::names::name_from_url(url),
        None if req.path.trim_matches('/').contains('/') => crate::names::name_from_url(&req.path),
        None => Err(SqsError::missing_parameter("QueueUrl")),
    }
}
