//! Direct reply-to (`amq.rabbitmq.reply-to`): a requester consumes from the
//! pseudo-queue with no-ack, publishes with `reply-to` set to it, and the
//! broker rewrites that to a name unique to the requester's channel; a
//! reply published to that name over the default exchange goes straight to
//! the channel, with no queue in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_core::Message;

use crate::events::{ChannelRef, Event, Events};

/// The pseudo-queue requesters consume from and name as `reply-to`.
pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// What a rewritten `reply-to` starts with.
pub const PREFIX: &str = "amq.rabbitmq.reply-to.";

#[derive(Default)]
pub struct Registry {
    routes: Mutex<HashMap<String, (Events, ChannelRef)>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a channel's reply consumer; returns the name replies use.
    pub fn register(&self, events: Events, to: ChannelRef, connection: u64) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Unguessable enough for a loopback broker's routing, unique always.
        let nonce = std::collections::hash_map::RandomState::new();
        let salt = std::hash::BuildHasher::hash_one(&nonce, (connection, n));
        let name = format!("{PREFIX}{connection:x}.{n:x}.{salt:016x}");
        self.lock().insert(name.clone(), (events, to));
        name
    }

    pub fn unregister(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Sends a reply to the channel `name` belongs to; false if it is gone.
    pub fn send(&self, name: &str, message: Arc<Message>) -> bool {
        let routes = self.lock();
        let Some((events, to)) = routes.get(name) else {
            return false;
        };
        events.send(Event::Reply { to: *to, message }).is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Events, ChannelRef)>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
