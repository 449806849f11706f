//! SQS errors, as both protocols spell them, and the one place where core
//! errors become SQS errors.

use axum::http::StatusCode;
use ferry_core::CoreError;
use thiserror::Error;

/// An error as SQS reports it: the JSON protocol's `__type` (after
/// `com.amazonaws.sqs#`, or whole where it is a common AWS error with its
/// own namespace), the query protocol's code (also sent in the JSON
/// protocol's `x-amzn-query-error` header, which SDKs prefer), an HTTP
/// status, and whose fault it was.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{query_code}: {message}")]
pub struct SqsError {
    pub json_type: &'static str,
    pub query_code: &'static str,
    pub status: StatusCode,
    pub sender_fault: bool,
    pub message: String,
}

/// (JSON type, query code, HTTP status) for every error this API returns.
macro_rules! errors {
    ($($fn_name:ident => $json:literal, $query:literal, $status:literal;)*) => {
        impl SqsError {
            $(
                pub fn $fn_name(message: &str) -> SqsError {
                    SqsError::new($json, $query, $status, message)
                }
            )*
        }

        /// The whole table, for tests and docs.
        pub const TABLE: &[(&str, &str, u16)] = &[$(($json, $query, $status)),*];
    };
}

errors! {
    queue_does_not_exist => "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400;
    queue_name_exists => "QueueNameExists", "QueueAlreadyExists", 400;
    queue_deleted_recently => "QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently", 400;
    invalid_attribute_name => "InvalidAttributeName", "InvalidAttributeName", 400;
    invalid_attribute_value => "InvalidAttributeValue", "InvalidAttributeValue", 400;
    invalid_message_contents => "InvalidMessageContents", "InvalidMessageContents", 400;
    receipt_handle_is_invalid => "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400;
    message_not_inflight => "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", 400;
    purge_queue_in_progress => "PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress", 403;
    too_many_entries => "TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400;
    empty_batch => "EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400;
    batch_ids_not_distinct => "BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400;
    batch_too_long => "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", 400;
    invalid_batch_entry_id => "InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", 400;
    unsupported_operation => "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", 400;
    invalid_id_format => "InvalidIdFormat", "InvalidIdFormat", 400;
    over_limit => "OverLimit", "OverLimit", 403;
    resource_not_found => "ResourceNotFoundException", "ResourceNotFoundException", 404;
    invalid_parameter => "com.amazon.coral.service#InvalidParameterValueException", "InvalidParameterValue", 400;
    missing_parameter_message => "com.amazon.coral.service#MissingRequiredParameterException", "MissingParameter", 400;
    invalid_action => "InvalidAction", "InvalidAction", 400;
    missing_action_message => "MissingAction", "MissingAction", 400;
    unknown_operation => "UnknownOperationException", "UnknownOperationException", 404;
    serialization => "SerializationException", "SerializationException", 400;
    access_denied => "com.amazon.coral.service#AccessDeniedException", "AccessDenied", 403;
    invalid_client_token_id => "com.amazon.coral.service#UnrecognizedClientException", "InvalidClientTokenId", 403;
    signature_does_not_match => "com.amazon.coral.service#InvalidSignatureException", "SignatureDoesNotMatch", 403;
    incomplete_signature => "com.amazon.coral.service#IncompleteSignatureException", "IncompleteSignature", 400;
    missing_authentication_token => "com.amazon.coral.service#MissingAuthenticationTokenException", "MissingAuthenticationToken", 403;
    request_expired => "RequestExpired", "RequestExpired", 400;
    throttled => "RequestThrottled", "RequestThrottled", 403;
    internal => "com.amazon.coral.service#InternalFailure", "InternalFailure", 500;
    service_unavailable => "ServiceUnavailable", "ServiceUnavailable", 503;
}

impl SqsError {
    fn new(json: &'static str, query: &'static str, status: u16, message: &str) -> SqsError {
        SqsError {
            json_type: json,
            query_code: query,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            sender_fault: status < 500,
            message: message.to_owned(),
        }
    }

    pub fn missing_parameter(name: &str) -> SqsError {
        Self::missing_parameter_message(&format!("The request must contain the parameter {name}."))
    }

    /// A query-protocol request with no `Action`: AWS answers 404
    /// UnknownOperationException (recorded against AWS).
    pub fn missing_action() -> SqsError {
        Self::unknown_operation("An unknown operation was requested.")
    }

    pub fn no_queue() -> SqsError {
        Self::queue_does_not_exist("The specified queue does not exist.")
    }
}

/// Core errors as SQS reports them.
impl From<CoreError> for SqsError {
    fn from(e: CoreError) -> SqsError {
        match e {
            CoreError::QueueNotFound(_) | CoreError::NamespaceNotFound(_) => SqsError::no_queue(),
            CoreError::QueueExists { detail, .. } => SqsError::queue_name_exists(&format!(
                "A queue already exists with the same name and a different value for attribute(s): {detail}"
            )),
            CoreError::LeaseNotFound => SqsError::receipt_handle_is_invalid(
                "The receipt handle is not valid for this queue (stale or unknown).",
            ),
            CoreError::QueueFull(q) => SqsError::over_limit(&format!("Queue {q} is full.")),
            CoreError::TooManyQueues { limit, .. } => {
                SqsError::over_limit(&format!("The limit of {limit} queues is reached."))
            }
            CoreError::TaskNotFound(_) => {
                SqsError::resource_not_found("The specified message move task does not exist.")
            }
            CoreError::TaskRunning(_) => SqsError::unsupported_operation(
                "There is already a message move task running on this source queue.",
            ),
            CoreError::UnknownKey(k) => SqsError::invalid_attribute_value(&format!(
                "Invalid value for the parameter KmsMasterKeyId. Reason: no key named '{k}' is configured on this broker."
            )),
            CoreError::Storage(e) => {
                SqsError::internal(&format!("The message could not be stored durably: {e}"))
            }
            CoreError::LeaseTooLong { limit_secs } => SqsError::invalid_parameter(&format!(
                "Value for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [{limit_secs} seconds]"
            )),
            e @ (CoreError::FixedSetting | CoreError::DedupWindowTooLong { .. }) => {
                SqsError::invalid_attribute_value(&e.to_string())
            }
            // A queue of another face's, used over SQS: its rules are the
            // other protocol's, and SQS has no code for them.
            e @ (CoreError::ExclusiveQueue(_)
            | CoreError::ExclusiveConsumer(_)
            | CoreError::QueueInUse(_)
            | CoreError::QueueNotEmpty(_)) => SqsError::unsupported_operation(&e.to_string()),
            e @ (CoreError::RouterNotFound(_)
            | CoreError::RouterExists { .. }
            | CoreError::ConsumerNotFound
            | CoreError::InvalidRate
            | CoreError::NoDeadLetterSource
            | CoreError::DefaultRouter
            | CoreError::InternalRouter(_)) => SqsError::invalid_parameter(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code SQS answers each core error with (the match is
    /// exhaustive: a new error must be given its code here).
    fn expected(e: &CoreError) -> &'static str {
        match e {
            CoreError::QueueNotFound(_) | CoreError::NamespaceNotFound(_) => "QueueDoesNotExist",
            CoreError::QueueExists { .. } => "QueueNameExists",
            CoreError::LeaseNotFound => "ReceiptHandleIsInvalid",
            CoreError::QueueFull(_) | CoreError::TooManyQueues { .. } => "OverLimit",
            CoreError::TaskNotFound(_) => "ResourceNotFoundException",
            CoreError::TaskRunning(_)
            | CoreError::ExclusiveQueue(_)
            | CoreError::ExclusiveConsumer(_)
            | CoreError::QueueInUse(_)
            | CoreError::QueueNotEmpty(_) => "UnsupportedOperation",
            CoreError::UnknownKey(_)
            | CoreError::FixedSetting
            | CoreError::DedupWindowTooLong { .. } => "InvalidAttributeValue",
            CoreError::Storage(_) => "com.amazon.coral.service#InternalFailure",
            CoreError::LeaseTooLong { .. }
            | CoreError::RouterNotFound(_)
            | CoreError::RouterExists { .. }
            | CoreError::ConsumerNotFound
            | CoreError::InvalidRate
            | CoreError::NoDeadLetterSource
            | CoreError::DefaultRouter
            | CoreError::InternalRouter(_) => {
                "com.amazon.coral.service#InvalidParameterValueException"
            }
        }
    }

    #[test]
    fn every_core_error_has_its_sqs_code() {
        for e in CoreError::examples() {
            let want = expected(&e);
            let got = SqsError::from(e.clone());
            assert_eq!(got.json_type, want, "{e:?}");
            assert!(!got.message.is_empty());
        }
    }

    #[test]
    fn every_code_has_a_status_and_both_spellings() {
        for (json, query, status) in TABLE {
            assert!(!json.is_empty() && !query.is_empty());
            assert!(StatusCode::from_u16(*status).is_ok(), "{json}");
        }
        let e = SqsError::no_queue();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.sender_fault);
        assert_eq!(e.query_code, "AWS.SimpleQueueService.NonExistentQueue");
    }
}
