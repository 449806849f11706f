//! The test-side view of a protocol face: what a scenario asks of a client
//! of ferry (declare, publish, receive, settle), and the face's half of the
//! documented mapping (docs/protocol-mapping.md) as a model the scenarios
//! check real deliveries against.
//!
//! The model goes through the core message (`ferry_core::Message`, used
//! here only as a plain data structure): a publishing face says what its
//! publish puts into the core message ([`Face::model_publish`]), a
//! consuming face says what it shows of a core message
//! ([`Face::expect_view`]). What a message sent on face A looks like on
//! face B is the composition, so a new face writes its two halves once and
//! every pair with every other face is checked.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::Message;

/// The futures the trait returns (boxed, so faces can sit in one `Vec`).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a face cannot express (a scenario needing it skips that face).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub &'static str);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A queue as a scenario wants it; each face declares it in its own terms
/// or says it cannot.
#[derive(Clone, Debug, Default)]
pub struct QueueSpec {
    pub name: String,
    /// SQS FIFO (the name ends in `.fifo`).
    pub fifo: bool,
    /// FIFO: deduplicate by the body's digest.
    pub content_dedup: bool,
    /// Every message waits this long before it is visible.
    pub delay: Option<Duration>,
    /// Every message expires this long after it enters the queue.
    pub ttl: Option<Duration>,
    pub dead_letter: Option<DeadLetterSpec>,
}

impl QueueSpec {
    pub fn plain(name: impl Into<String>) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            ..QueueSpec::default()
        }
    }
}

/// Where a queue's dead letters go (a queue of the same namespace) and when.
#[derive(Clone, Debug)]
pub struct DeadLetterSpec {
    pub target: String,
    /// `Some(n)`: after the n-th receive is given back (SQS
    /// `maxReceiveCount`, AMQP quorum `x-delivery-limit` = n - 1).
    /// `None`: when rejected or expired (AMQP `x-dead-letter-exchange`).
    pub after_receives: Option<u32>,
}

/// A message as a scenario wants it sent.
#[derive(Clone, Debug, Default)]
pub struct TestMessage {
    pub body: Vec<u8>,
    /// Every kind of metadata the publishing face has (its rich rows).
    pub rich: bool,
    /// A per-message delay (SQS `DelaySeconds`).
    pub delay: Option<Duration>,
    /// A per-message time to live (AMQP `expiration`).
    pub ttl: Option<Duration>,
}

impl TestMessage {
    pub fn plain(body: &str) -> TestMessage {
        TestMessage {
            body: body.as_bytes().to_vec(),
            ..TestMessage::default()
        }
    }

    pub fn rich(body: &str) -> TestMessage {
        TestMessage {
            rich: true,
            ..TestMessage::plain(body)
        }
    }
}

/// What a publish told the publisher.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// The broker's message id, if the face reports it (SQS `MessageId`).
    pub id: Option<String>,
}

/// One message as a consuming face delivered it.
#[derive(Clone, Debug)]
pub struct Received {
    pub queue: String,
    pub body: Vec<u8>,
    /// Everything else the face showed, flattened to `key -> text`.
    pub view: View,
    /// The broker's message id, if this face shows it.
    pub id: Option<String>,
    /// What the face needs to settle this delivery.
    pub handle: String,
}

pub type View = BTreeMap<String, String>;

/// How many messages a face says a queue holds (what it can tell).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub ready: u64,
    pub in_flight: Option<u64>,
    pub delayed: Option<u64>,
}

/// One metadata row of a publishing face: its id in
/// docs/protocol-mapping.md and what it does to the core message.
pub struct Effect {
    pub row: &'static str,
    pub apply: Box<dyn Fn(&mut Message) + Send + Sync>,
}

/// What a delivery has beyond its message.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The queue it was delivered from.
    pub queue: String,
    pub fifo: bool,
    /// Its delivery count, this delivery included.
    pub count: u32,
    /// The broker's message id, if a face showed it earlier.
    pub id: Option<String>,
    /// Wall-clock window (ms) in which it was published and delivered.
    pub window: (u64, u64),
}

/// An expected value in a view.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    Eq(String),
    /// A UUID in its text form.
    Uuid,
    /// Decimal digits, this many.
    Digits(usize),
    /// A decimal number in this range (inclusive).
    Between(u64, u64),
    /// An AMQP timestamp (`T:<seconds>`) in this range (inclusive).
    Time(u64, u64),
}

impl Expect {
    pub fn eq(s: impl Into<String>) -> Expect {
        Expect::Eq(s.into())
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            Expect::Eq(e) => e == s,
            Expect::Uuid => {
                let parts: Vec<&str> = s.split('-').collect();
                parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                    && parts
                        .iter()
                        .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
            }
            Expect::Digits(n) => s.len() == *n && s.bytes().all(|b| b.is_ascii_digit()),
            Expect::Between(lo, hi) => s.parse::<u64>().is_ok_and(|v| (*lo..=*hi).contains(&v)),
            Expect::Time(lo, hi) => s
                .strip_prefix("T:")
                .is_some_and(|t| Expect::Between(*lo, *hi).matches(t)),
        }
    }
}

/// An expected view: key -> (value, the consumer-side row that puts it
/// there, or `None` for a value that comes from the core message).
pub type Expected = BTreeMap<String, (Expect, Option<&'static str>)>;

/// A protocol face of ferry as a client sees it. Implemented per face;
/// `faces()` in cross_protocol.rs lists them.
pub trait Face: Send + Sync {
    fn name(&self) -> &'static str;

    /// Declares `q` as this face's clients would.
    fn declare<'a>(&'a self, q: &'a QueueSpec) -> Fut<'a, Result<(), Unsupported>>;

    /// Publishes `m` to `queue` and waits until the broker took it.
    fn publish<'a>(
        &'a self,
        queue: &'a str,
        m: &'a TestMessage,
    ) -> Fut<'a, Result<Published, Unsupported>>;

    /// One receive that does not wait: `None` if nothing is deliverable.
    fn try_receive<'a>(&'a self, queue: &'a str) -> Fut<'a, Option<Received>>;

    /// Settles a delivery for good (AMQP ack, SQS DeleteMessage).
    fn ack<'a>(&'a self, r: &'a Received) -> Fut<'a, ()>;

    /// Gives a delivery back for redelivery (AMQP nack with requeue, SQS
    /// ChangeMessageVisibility to 0).
    fn requeue<'a>(&'a self, r: &'a Received) -> Fut<'a, ()>;

    /// Refuses a delivery without requeueing it (AMQP reject).
    fn reject<'a>(&'a self, r: &'a Received) -> Fut<'a, Result<(), Unsupported>>;

    /// The queue's depth as this face reports it.
    fn depth<'a>(&'a self, queue: &'a str) -> Fut<'a, Depth>;

    /// How long after its publish `r` first became visible, by the
    /// broker's own stamps, if this face shows them.
    fn visible_after_ms(&self, _r: &Received) -> Option<u64> {
        None
    }

    // The face's half of the documented mapping.

    /// The rows a publish of `m` to `queue` goes through, in order, each
    /// with its effect on the core message (the broker's own stamps —
    /// id, publish time — are not modelled).
    fn model_publish(&self, m: &TestMessage, queue: &str) -> Vec<Effect>;

    /// What a dead-lettering by a queue this face declared does to the
    /// message beyond recording the death (AMQP: the dead-letter routing
    /// key replaces the message's).
    fn model_dead_letter(&self, _m: &mut Message, _spec: &DeadLetterSpec) {}

    /// Whether a queue this face declared with `after_receives` also
    /// dead-letters explicit rejections.
    fn dead_letters_rejects_on_limited_queue(&self) -> bool;

    /// What this face's consumers are shown of core message `m`.
    fn expect_view(&self, m: &Message, f: &Facts) -> Expected;

    /// The body this face's consumers get for core body `body`.
    fn expect_body(&self, body: &[u8]) -> Vec<u8>;

    /// Bodies this face can publish: (row id, body).
    fn bodies(&self) -> Vec<(&'static str, Vec<u8>)>;

    /// Every row id this face's model and views use (for the doc check).
    fn row_ids(&self) -> Vec<&'static str>;
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Bytes as lower-case hex, for views.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
