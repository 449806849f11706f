//! Who sent a request, and whether they may do it.
//!
//! An access key is the broker's own (`--aws-access-key-id`: everything
//! allowed) or a user's (`access-keys` in the config file). A user's key
//! gets what the user's permissions on the queue allow, as an AMQP client
//! would: writing is sending, reading is receiving and settling,
//! configuring is creating, deleting and changing a queue. With no key
//! configured anywhere, anyone may do anything (a development broker);
//! once a key exists, requests must be signed for the life of the process,
//! so removing the last key never opens the broker.

use axum::http::{HeaderMap, Method};
use ferry_auth::{Access, User};

use std::sync::atomic::Ordering;

use ferry_core::queue::DeadLetterTarget;

use crate::Sqs;
use crate::error::SqsError;
use crate::input::Input;
use crate::names;
use crate::sigv4;
use crate::wire::Request;

/// Who a request comes from.
pub enum Principal {
    /// No key is configured: requests are not signed.
    Anyone,
    /// The broker's own key.
    Root,
    User(User),
}

impl Principal {
    /// Whether a listing shows queue `name` to them: a user sees the
    /// queues it may do anything with.
    pub fn sees(&self, namespace: &str, name: &str) -> bool {
        match self {
            Principal::Anyone | Principal::Root => true,
            Principal::User(u) => [Access::Configure, Access::Write, Access::Read]
                .into_iter()
                .any(|a| u.may(namespace, a, name)),
        }
    }
}

/// Checks the signature (when keys are configured) and says whose key it is.
pub fn authenticate(
    sqs: &Sqs,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal, SqsError> {
    let users = sqs.users.current();
    let root = &sqs.config.credentials;
    if !sqs.signed.load(Ordering::Acquire) {
        if root.is_empty() && !users.has_access_keys() {
            return Ok(Principal::Anyone);
        }
        sqs.signed.store(true, Ordering::Release);
    }
    let secret_of = |id: &str| {
        root.0
            .get(id)
            .cloned()
            .or_else(|| users.access_key(id).map(|(_, s)| s.to_owned()))
    };
    let now = (sqs.broker.now().as_millis() / 1000) as i64;
    let key = sigv4::verify(&secret_of, method, path, query, headers, body, now)?;
    if root.0.contains_key(&key) {
        return Ok(Principal::Root);
    }
    match users.access_key(&key) {
        Some((user, _)) => Ok(Principal::User(user.clone())),
        None => Err(SqsError::invalid_client_token_id(
            "The security token included in the request is invalid.",
        )),
    }
}

/// What an action does to which queue.
enum Needs {
    /// Nothing beyond being a user of the namespace.
    Entry,
    Queue(Access, String),
    /// Any of configure, write and read (finding a queue's URL).
    AnyOn(String),
    /// Configure a queue; with a dead-letter target in its attributes,
    /// also read it and write the target (what AMQP asks of a DLX).
    Configure(String, Option<String>),
    /// A move task: read its source, write where the messages go (the
    /// destination, or each queue that dead-letters into the source).
    Move(String, Option<String>),
}

/// The queue a RedrivePolicy in the request's attributes names.
fn dead_letter_target(input: &Input<'_>) -> Result<Option<String>, SqsError> {
    let attrs = input.string_map("Attributes")?;
    let Some((_, policy)) = attrs.iter().find(|(k, _)| *k == "RedrivePolicy") else {
        return Ok(None);
    };
    let arn = serde_json::from_str::<serde_json::Value>(policy)
        .ok()
        .and_then(|v| v.get("deadLetterTargetArn")?.as_str().map(str::to_owned));
    // A malformed policy is the action's own error to give.
    Ok(arn.and_then(|a| names::name_from_arn(&a).ok().map(str::to_owned)))
}

fn needs(sqs: &Sqs, req: &Request, input: &Input<'_>) -> Result<Needs, SqsError> {
    let url_queue = || crate::actions::queue_name(req, input).map(str::to_owned);
    let arn_queue = |name: &str| -> Result<Option<String>, SqsError> {
        match input.opt_str(name)? {
            Some(arn) => names::name_from_arn(arn).map(|n| Some(n.to_owned())),
            None => Ok(None),
        }
    };
    Ok(match req.action.as_str() {
        "ListQueues" => Needs::Entry,
        "CreateQueue" => Needs::Configure(
            input.str("QueueName")?.to_owned(),
            dead_letter_target(input)?,
        ),
        "SetQueueAttributes" => Needs::Configure(url_queue()?, dead_letter_target(input)?),
        // A producer looks its queue up before sending to it.
        "GetQueueUrl" => Needs::AnyOn(input.str("QueueName")?.to_owned()),
        "DeleteQueue" | "TagQueue" | "UntagQueue" | "AddPermission" | "RemovePermission" => {
            Needs::Queue(Access::Configure, url_queue()?)
        }
        "SendMessage" | "SendMessageBatch" => Needs::Queue(Access::Write, url_queue()?),
        "StartMessageMoveTask" => match arn_queue("SourceArn")? {
            Some(source) => Needs::Move(source, arn_queue("DestinationArn")?),
            None => return Err(SqsError::missing_parameter("SourceArn")),
        },
        "ListMessageMoveTasks" => match arn_queue("SourceArn")? {
            Some(source) => Needs::Queue(Access::Read, source),
            None => return Err(SqsError::missing_parameter("SourceArn")),
        },
        // The task's real source, not what the handle claims.
        // The task's real source, not what the handle claims; an unknown
        // task is the action's own error to give.
        "CancelMessageMoveTask" => {
            match crate::actions::move_task_source(sqs, input.str("TaskHandle")?) {
                Some(source) => Needs::Queue(Access::Read, source),
                None => Needs::Entry,
            }
        }
        // Receiving, settling, purging, reading attributes and tags.
        "ReceiveMessage"
        | "DeleteMessage"
        | "DeleteMessageBatch"
        | "ChangeMessageVisibility"
        | "ChangeMessageVisibilityBatch"
        | "PurgeQueue"
        | "GetQueueAttributes"
        | "ListQueueTags"
        | "ListDeadLetterSourceQueues" => Needs::Queue(Access::Read, url_queue()?),
        // Unknown actions: the action's own error (InvalidAction) follows.
        _ => Needs::Entry,
    })
}

/// Refuses the request (AccessDenied) unless `who` may do it.
pub fn authorize(
    sqs: &Sqs,
    who: &Principal,
    req: &Request,
    input: &Input<'_>,
) -> Result<(), SqsError> {
    let Principal::User(user) = who else {
        return Ok(());
    };
    let ns = &sqs.config.namespace;
    let denied = |resource: &str| {
        SqsError::access_denied(&format!(
            "User: {} is not authorized to perform: sqs:{} on resource: {}",
            user.name,
            req.action,
            names::queue_arn(&sqs.config.region, &sqs.config.account_id, resource)
        ))
    };
    if !user.may_enter(ns) {
        return Err(denied("*"));
    }
    match needs(sqs, req, input)? {
        Needs::Entry => Ok(()),
        Needs::Queue(access, queue) if user.may(ns, access, &queue) => Ok(()),
        Needs::Queue(_, queue) => Err(denied(&queue)),
        Needs::AnyOn(queue) => {
            let any = [Access::Configure, Access::Write, Access::Read]
                .into_iter()
                .any(|a| user.may(ns, a, &queue));
            if any { Ok(()) } else { Err(denied(&queue)) }
        }
        Needs::Configure(queue, target) => {
            if !user.may(ns, Access::Configure, &queue) {
                return Err(denied(&queue));
            }
            match target {
                Some(_) if !user.may(ns, Access::Read, &queue) => Err(denied(&queue)),
                Some(t) if !user.may(ns, Access::Write, &t) => Err(denied(&t)),
                _ => Ok(()),
            }
        }
        Needs::Move(source, destination) => {
            if !user.may(ns, Access::Read, &source) {
                return Err(denied(&source));
            }
            let targets = match destination {
                Some(d) => vec![d],
                None => dead_letter_sources(sqs, &source),
            };
            match targets.iter().find(|t| !user.may(ns, Access::Write, t)) {
                Some(t) => Err(denied(t)),
                None => Ok(()),
            }
        }
    }
}

/// The queues of the namespace whose dead letters go to `dlq` (where a move
/// task without a destination sends the messages back to).
fn dead_letter_sources(sqs: &Sqs, dlq: &str) -> Vec<String> {
    let b = &sqs.broker;
    let ns = &sqs.config.namespace;
    b.queue_names(ns)
        .unwrap_or_default()
        .into_iter()
        .filter(|name| {
            b.queue(ns, name).is_ok_and(|q| {
                q.config()
                    .dead_letter
                    .is_some_and(|p| matches!(&p.target, DeadLetterTarget::Queue(t) if t == dlq))
            })
        })
        .collect()
}
