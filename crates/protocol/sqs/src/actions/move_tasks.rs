//! Message move tasks: redrive a dead-letter queue's messages back to their
//! sources or to another queue, at a chosen rate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_core::broker::{MoveStatus, MoveTaskInfo};
use ferry_core::queue::DeadLetterTarget;
use serde_json::{Map, Value, json};

use crate::Sqs;
use crate::error::SqsError;
use crate::input::Input;
use crate::names;

impl Sqs {
    fn arn(&self, queue: &str) -> String {
        names::queue_arn(&self.config.region, &self.config.account_id, queue)
    }

    /// Whether some queue dead-letters into `queue`.
    fn is_dead_letter_queue(&self, queue: &str) -> bool {
        self.broker
            .queue_names(&self.config.namespace)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| self.queue(n).ok())
            .any(|q| {
                matches!(q.config().dead_letter.map(|p| p.target),
                    Some(DeadLetterTarget::Queue(t)) if t == queue)
            })
    }
}

/// Task handles name the source and the task, as SQS's do.
fn handle(info: &MoveTaskInfo, source_arn: &str) -> String {
    STANDARD.encode(json!({"taskId": info.id, "sourceArn": source_arn}).to_string())
}

/// The source queue of the task a handle names, if the task exists.
pub fn task_source(sqs: &Sqs, handle: &str) -> Option<String> {
    let id = task_id(handle)?;
    sqs.broker
        .move_tasks(&sqs.config.namespace, None)
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.source)
}

fn task_id(handle: &str) -> Option<String> {
    let raw = STANDARD.decode(handle.trim()).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("taskId")?.as_str().map(str::to_owned)
}

fn status(s: &MoveStatus) -> &'static str {
    match s {
        MoveStatus::Running => "RUNNING",
        MoveStatus::Completed => "COMPLETED",
        MoveStatus::Cancelling => "CANCELLING",
        MoveStatus::Cancelled => "CANCELLED",
        MoveStatus::Failed(_) => "FAILED",
    }
}

fn source_of(sqs: &Sqs, arn: &str) -> Result<String, SqsError> {
    let name = names::name_from_arn(arn).map_err(|_| {
        SqsError::resource_not_found(
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        )
    })?;
    sqs.queue(name).map_err(|_| {
        SqsError::resource_not_found(
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        )
    })?;
    Ok(name.to_owned())
}

pub fn start(sqs: &Sqs, input: &Input<'_>) -> Result<Value, SqsError> {
    let source_arn = input.str("SourceArn")?;
    let source = source_of(sqs, source_arn)?;
    let destination = match input.opt_str("DestinationArn")? {
        None => None,
        Some(arn) => {
            let name = names::name_from_arn(arn)
                .ok()
                .filter(|n| sqs.queue(n).is_ok())
                .ok_or_else(|| {
                    SqsError::resource_not_found(
                        "The resource that you specified for the DestinationArn parameter doesn't exist.",
                    )
                })?;
            Some(name.to_owned())
        }
    };
    let rate = input
        .opt_int("MaxNumberOfMessagesPerSecond", 1, 500)?
        .map(|r| r as u32);
    if !sqs.is_dead_letter_queue(&source) {
        return Err(SqsError::invalid_parameter(
            "Source queue must be configured as a Dead Letter Queue.",
        ));
    }
    let id = sqs
        .broker
        .start_move_task(&sqs.config.namespace, &source, destination.as_deref(), rate)
        .map_err(|e| match e {
            ferry_core::CoreError::TaskRunning(_) => SqsError::invalid_parameter(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
            ),
            other => other.into(),
        })?;
    let info = sqs
        .broker
        .move_tasks(&sqs.config.namespace, Some(&source))
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| SqsError::internal("the task vanished"))?;
    Ok(json!({ "TaskHandle": handle(&info, source_arn) }))
}

pub fn list(sqs: &Sqs, input: &Input<'_>) -> Result<Value, SqsError> {
    let source_arn = input.str("SourceArn")?;
    let source = source_of(sqs, source_arn)?;
    let max = input.opt_int("MaxResults", 1, 10)?.unwrap_or(1) as usize;
    let results: Vec<Value> = sqs
        .broker
        .move_tasks(&sqs.config.namespace, Some(&source))
        .iter()
        .take(max)
        .map(|t| {
            let mut m = Map::new();
            if t.status == MoveStatus::Running {
                m.insert("TaskHandle".into(), json!(handle(t, source_arn)));
            }
            m.insert("Status".into(), json!(status(&t.status)));
            m.insert("SourceArn".into(), json!(source_arn));
            if let Some(d) = &t.destination {
                m.insert("DestinationArn".into(), json!(sqs.arn(d)));
            }
            if let Some(r) = t.rate {
                m.insert("MaxNumberOfMessagesPerSecond".into(), json!(r));
            }
            m.insert("ApproximateNumberOfMessagesMoved".into(), json!(t.moved));
            m.insert("ApproximateNumberOfMessagesToMove".into(), json!(t.to_move));
            if let MoveStatus::Failed(why) = &t.status {
                m.insert("FailureReason".into(), json!(why));
            }
            m.insert("StartedTimestamp".into(), json!(t.started_at.as_millis()));
            Value::Object(m)
        })
        .collect();
    Ok(json!({ "Results": results }))
}

pub fn cancel(sqs: &Sqs, input: &Input<'_>) -> Result<Value, SqsError> {
    let id = task_id(input.str("TaskHandle")?)
        .ok_or_else(|| SqsError::invalid_parameter("Value for parameter TaskHandle is invalid."))?;
    let info = sqs
        .broker
        .cancel_move_task(&id)
        .map_err(|_| SqsError::resource_not_found("Task does not exist."))?;
    Ok(json!({ "ApproximateNumberOfMessagesMoved": info.moved }))
}
