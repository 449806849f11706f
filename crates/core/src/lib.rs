//! ferry's core: the broker model every protocol is a face of.
//!
//! Namespaces own queues and routers; a message published to a router is
//! routed to queues (and other routers); a queue hands messages out under
//! leases until they are acked. Nothing here knows about sockets, wire
//! formats or files: time comes from a [`clock::Clock`], and durable state
//! goes through the [`store::Store`] trait.
//!
//! - [`queue::QueueCore`]: one queue as a pure state machine.
//! - [`router::Router`]: bindings and matching (direct, fanout, topic, headers).
//! - [`broker::Broker`]: namespaces, per-queue locks, routing across
//!   routers, long-poll waiters, push consumers, timers, move tasks, recovery.

pub mod broker;
pub mod clock;
pub mod error;
pub mod group;
pub mod ids;
pub mod message;
pub mod queue;
pub mod router;
pub mod store;
pub mod stream;

pub use broker::Broker;
pub use clock::{Clock, FakeClock, SystemClock, Timestamp};
pub use error::{CoreError, CoreResult};
pub use message::{Death, DeathReason, Headers, Message, MessageId, Properties, Value};
