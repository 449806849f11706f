//! AWS's own words for the errors SDK users match on, by error code. A
//! message here is AWS's text (recorded against the service or its
//! reference); messages elsewhere are ferry's where AWS's are not known.

use crate::error::SqsError;

/// `InvalidParameterValue`.
pub mod invalid_parameter_value {
    use super::SqsError;

    /// An integer parameter out of its range. DelaySeconds has words of
    /// its own; the others share the common form.
    pub fn out_of_range(name: &str, value: i64, lo: i64, hi: i64) -> SqsError {
        let reason = match name {
            "DelaySeconds" => format!("DelaySeconds must be >= {lo} and <= {hi}."),
            _ => format!("Must be between {lo} and {hi}, if provided."),
        };
        SqsError::invalid_parameter(&format!(
            "Value {value} for parameter {name} is invalid. Reason: {reason}"
        ))
    }

    /// A message attribute whose DataType is not Binary, Number or String
    /// (with or without a custom suffix).
    pub fn attribute_type(attribute: &str) -> SqsError {
        SqsError::invalid_parameter(&format!(
            "The message attribute '{attribute}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
        ))
    }

    /// UntagQueue (or TagQueue) with no key, or a key past 128 characters.
    pub fn tag_key_length() -> SqsError {
        SqsError::invalid_parameter("Tag keys must be between 1 and 128 characters in length.")
    }
}

/// `ReceiptHandleIsInvalid`.
pub fn receipt_handle_is_invalid(handle: &str) -> SqsError {
    SqsError::receipt_handle_is_invalid(&format!(
        "The input receipt handle \"{handle}\" is not a valid receipt handle."
    ))
}

/// `EmptyBatchRequest`; `entry` names the batch's kind of entry
/// (`SendMessageBatchRequestEntry`).
pub fn empty_batch(entry: &str) -> SqsError {
    SqsError::empty_batch(&format!(
        "There should be at least one {entry} in the request."
    ))
}

/// `BatchRequestTooLong`.
pub fn batch_too_long(limit: usize, sent: usize) -> SqsError {
    SqsError::batch_too_long(&format!(
        "Batch requests cannot be longer than {limit} bytes. You have sent {sent} bytes."
    ))
}
