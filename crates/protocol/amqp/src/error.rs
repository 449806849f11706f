//! AMQP reply codes, the failures that close a channel or a connection,
//! and the one table that maps core errors onto them.

use ferry_core::CoreError;
use thiserror::Error;

/// The reply codes of AMQP 0-9-1 (section 1.2 of the spec), as RabbitMQ
/// uses them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplyCode {
    Success,
    ContentTooLarge,
    NoRoute,
    NoConsumers,
    ConnectionForced,
    InvalidPath,
    AccessRefused,
    NotFound,
    ResourceLocked,
    PreconditionFailed,
    FrameError,
    SyntaxError,
    CommandInvalid,
    ChannelError,
    UnexpectedFrame,
    ResourceError,
    NotAllowed,
    NotImplemented,
    InternalError,
}

impl ReplyCode {
    pub fn code(self) -> u16 {
        use ReplyCode::*;
        match self {
            Success => 200,
            ContentTooLarge => 311,
            NoRoute => 312,
            NoConsumers => 313,
            ConnectionForced => 320,
            InvalidPath => 402,
            AccessRefused => 403,
            NotFound => 404,
            ResourceLocked => 405,
            PreconditionFailed => 406,
            FrameError => 501,
            SyntaxError => 502,
            CommandInvalid => 503,
            ChannelError => 504,
            UnexpectedFrame => 505,
            ResourceError => 506,
            NotAllowed => 530,
            NotImplemented => 540,
            InternalError => 541,
        }
    }

    /// The upper-case name that starts RabbitMQ's reply texts.
    pub fn name(self) -> &'static str {
        use ReplyCode::*;
        match self {
            Success => "OK",
            ContentTooLarge => "CONTENT_TOO_LARGE",
            NoRoute => "NO_ROUTE",
            NoConsumers => "NO_CONSUMERS",
            ConnectionForced => "CONNECTION_FORCED",
            InvalidPath => "INVALID_PATH",
            AccessRefused => "ACCESS_REFUSED",
            NotFound => "NOT_FOUND",
            ResourceLocked => "RESOURCE_LOCKED",
            PreconditionFailed => "PRECONDITION_FAILED",
            FrameError => "FRAME_ERROR",
            SyntaxError => "SYNTAX_ERROR",
            CommandInvalid => "COMMAND_INVALID",
            ChannelError => "CHANNEL_ERROR",
            UnexpectedFrame => "UNEXPECTED_FRAME",
            ResourceError => "RESOURCE_ERROR",
            NotAllowed => "NOT_ALLOWED",
            NotImplemented => "NOT_IMPLEMENTED",
            InternalError => "INTERNAL_ERROR",
        }
    }
}

/// What a failure closes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

/// A failure to report to the client with `channel.close` or
/// `connection.close`: its code and text ("NOT_FOUND - no queue 'q' in
/// vhost '/'", as RabbitMQ words them).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{} - {detail}", code.name())]
pub struct Failure {
    pub scope: Scope,
    pub code: ReplyCode,
    pub detail: String,
    /// The (class, method) that caused it, for connection.close.
    pub method: Option<(u16, u16)>,
}

impl Failure {
    pub fn channel(code: ReplyCode, detail: impl Into<String>) -> Self {
        Failure {
            scope: Scope::Channel,
            code,
            detail: detail.into(),
            method: None,
        }
    }

    pub fn connection(code: ReplyCode, detail: impl Into<String>) -> Self {
        Failure {
            scope: Scope::Connection,
            code,
            detail: detail.into(),
            method: None,
        }
    }

    /// The reply text sent on the wire (at most a short string's 255 bytes).
    pub fn text(&self) -> String {
        crate::values::truncate(&self.to_string(), 255).to_owned()
    }

    /// Maps a core error met in `vhost` onto the code RabbitMQ gives for it.
    /// This is the one table of that mapping.
    pub fn from_core(e: CoreError, vhost: &str) -> Self {
        use ReplyCode::*;
        match e {
            CoreError::NamespaceNotFound(v) => {
                Failure::connection(NotAllowed, format!("vhost '{v}' not found"))
            }
            CoreError::QueueNotFound(q) => {
                Failure::channel(NotFound, format!("no queue '{q}' in vhost '{vhost}'"))
            }
            CoreError::RouterNotFound(x) => {
                Failure::channel(NotFound, format!("no exchange '{x}' in vhost '{vhost}'"))
            }
            CoreError::QueueExists { name, detail } => Failure::channel(
                PreconditionFailed,
                format!("inequivalent arg for queue '{name}' in vhost '{vhost}': {detail}"),
            ),
            CoreError::RouterExists { name } => Failure::channel(
                PreconditionFailed,
                format!(
                    "inequivalent arg for exchange '{name}' in vhost '{vhost}': \
                     type or settings differ from the existing exchange"
                ),
            ),
            CoreError::ExclusiveQueue(q) => Failure::channel(
                ResourceLocked,
                format!(
                    "cannot obtain exclusive access to locked queue '{q}' in vhost '{vhost}'. \
                     It could be originally declared on another connection or the exclusive \
                     property value does not match that of the original declaration."
                ),
            ),
            CoreError::QueueInUse(q) => Failure::channel(
                PreconditionFailed,
                format!("'{q}' in vhost '{vhost}' in use"),
            ),
            CoreError::QueueNotEmpty(q) => Failure::channel(
                PreconditionFailed,
                format!("queue '{q}' in vhost '{vhost}' is not empty"),
            ),
            CoreError::ExclusiveConsumer(q) => Failure::channel(
                AccessRefused,
                format!("queue '{q}' in vhost '{vhost}' in exclusive use"),
            ),
            CoreError::QueueFull(q) => Failure::channel(
                PreconditionFailed,
                format!("queue '{q}' in vhost '{vhost}' is full"),
            ),
            CoreError::TooManyQueues { limit, .. } => Failure::channel(
                PreconditionFailed,
                format!(
                    "cannot declare queue: queue limit in vhost '{vhost}' ({limit}) is reached"
                ),
            ),
            CoreError::LeaseNotFound => {
                Failure::channel(PreconditionFailed, "unknown delivery tag")
            }
            CoreError::ConsumerNotFound => Failure::channel(NotFound, "no such consumer"),
            CoreError::TaskNotFound(t) => Failure::channel(NotFound, format!("no task '{t}'")),
            CoreError::TaskRunning(q) => Failure::channel(
                PreconditionFailed,
                format!("a move task is already running on queue '{q}'"),
            ),
            e @ (CoreError::UnknownKey(_)
            | CoreError::FixedSetting
            | CoreError::DedupWindowTooLong { .. }
            | CoreError::LeaseTooLong { .. }
            | CoreError::InvalidRate
            | CoreError::NoDeadLetterSource) => Failure::channel(PreconditionFailed, e.to_string()),
            CoreError::DefaultRouter => Failure::channel(
                AccessRefused,
                format!("operation not permitted on the default exchange in vhost '{vhost}'"),
            ),
            CoreError::InternalRouter(x) => Failure::channel(
                AccessRefused,
                format!("cannot publish to internal exchange '{x}' in vhost '{vhost}'"),
            ),
            CoreError::Storage(e) => Failure::channel(InternalError, format!("storage: {e}")),
        }
    }
}

pub type Outcome<T = ()> = Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The code RabbitMQ gives for each core error (the match is
    /// exhaustive: a new error must be given its code here).
    fn expected(e: &CoreError) -> (u16, Scope) {
        use Scope::{Channel, Connection};
        match e {
            CoreError::NamespaceNotFound(_) => (530, Connection),
            CoreError::QueueNotFound(_)
            | CoreError::RouterNotFound(_)
            | CoreError::ConsumerNotFound
            | CoreError::TaskNotFound(_) => (404, Channel),
            CoreError::ExclusiveQueue(_) => (405, Channel),
            CoreError::ExclusiveConsumer(_)
            | CoreError::DefaultRouter
            | CoreError::InternalRouter(_) => (403, Channel),
            CoreError::QueueExists { .. }
            | CoreError::RouterExists { .. }
            | CoreError::QueueInUse(_)
            | CoreError::QueueNotEmpty(_)
            | CoreError::QueueFull(_)
            | CoreError::TooManyQueues { .. }
            | CoreError::LeaseNotFound
            | CoreError::TaskRunning(_)
            | CoreError::UnknownKey(_)
            | CoreError::FixedSetting
            | CoreError::DedupWindowTooLong { .. }
            | CoreError::LeaseTooLong { .. }
            | CoreError::InvalidRate
            | CoreError::NoDeadLetterSource => (406, Channel),
            CoreError::Storage(_) => (541, Channel),
        }
    }

    #[test]
    fn every_core_error_has_its_rabbitmq_code() {
        for e in CoreError::examples() {
            let want = expected(&e);
            let f = Failure::from_core(e.clone(), "/");
            assert_eq!((f.code.code(), f.scope), want, "{e:?}: {f}");
            assert!(!f.text().is_empty());
        }
    }

    #[test]
    fn reply_text_names_the_code_first() {
        let f = Failure::from_core(CoreError::QueueNotFound("q".into()), "/");
        assert_eq!(f.text(), "NOT_FOUND - no queue 'q' in vhost '/'");
    }
}
