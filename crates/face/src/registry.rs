//! The open connections of every face, as operators see them: the admin
//! API, CLI and console list them and may close one. Each connection keeps
//! its own entry current (byte counters once per socket read or write,
//! messages as they pass, consumers and channels as they come and go), so
//! listing never has to ask a busy connection anything.
//!
//! The registry also keeps the connection limits: [`Registry::admit`]
//! counts a connection against the limit in all as soon as it is accepted,
//! and [`Admission::register`] against its user's limit once the client
//! has logged in. Both checks and the insert happen under one lock, so two
//! logins racing for a user's last slot cannot both win.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::limits::{ConnectionLimits, Refused};

/// One consumer of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The channel (AMQP) or 0 where the protocol has none.
    pub channel: u16,
    pub tag: String,
    pub queue: String,
    /// Most unacknowledged deliveries at once; `None`: no limit.
    pub prefetch: Option<u32>,
    pub ack_required: bool,
}

/// A connection's entry, kept current by the connection itself.
#[derive(Debug)]
pub struct Entry {
    pub id: u64,
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub user: String,
    /// The core namespace it works in (an AMQP vhost).
    pub namespace: String,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    channels: AtomicUsize,
    recv_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    recv_messages: AtomicU64,
    sent_messages: AtomicU64,
    consumers: Mutex<Vec<ConsumerInfo>>,
    /// Wakes the connection to close itself with this reason.
    close: Notify,
    close_reason: Mutex<Option<String>>,
}

/// What a listing shows of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub id: u64,
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub user: String,
    pub namespace: String,
    pub connected_at: u64,
    pub channels: usize,
    pub recv_bytes: u64,
    pub sent_bytes: u64,
    /// Messages the client published, and messages delivered to it.
    pub recv_messages: u64,
    pub sent_messages: u64,
    pub consumers: Vec<ConsumerInfo>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lists stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Entry {
    pub fn received(&self, bytes: usize) {
        self.recv_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The client published `n` messages.
    pub fn published(&self, n: u64) {
        self.recv_messages.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` messages were delivered to the client.
    pub fn delivered(&self, n: u64) {
        self.sent_messages.fetch_add(n, Ordering::Relaxed);
    }

    pub fn channel_opened(&self) {
        self.channels.fetch_add(1, Ordering::Relaxed);
    }

    /// The channel is gone, and with it its consumers.
    pub fn channel_closed(&self, channel: u16) {
        self.channels.fetch_sub(1, Ordering::Relaxed);
        guard(&self.consumers).retain(|c| c.channel != channel);
    }

    pub fn consumer_added(&self, c: ConsumerInfo) {
        guard(&self.consumers).push(c);
    }

    pub fn consumer_removed(&self, channel: u16, tag: &str) {
        guard(&self.consumers).retain(|c| !(c.channel == channel && c.tag == tag));
    }

    /// Resolves when an operator asked for this connection to close; gives
    /// the reason to tell the client. Make it once per connection: a
    /// request made while the connection is busy is kept until taken.
    pub async fn close_requested(&self) -> String {
        loop {
            if let Some(reason) = guard(&self.close_reason).take() {
                return reason;
            }
            self.close.notified().await;
        }
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id,
            protocol: self.protocol,
            peer: self.peer,
            user: self.user.clone(),
            namespace: self.namespace.clone(),
            connected_at: self.connected_at,
            channels: self.channels.load(Ordering::Relaxed),
            recv_bytes: self.recv_bytes.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            recv_messages: self.recv_messages.load(Ordering::Relaxed),
            sent_messages: self.sent_messages.load(Ordering::Relaxed),
            consumers: guard(&self.consumers).clone(),
        }
    }
}

/// Every open connection of every face.
#[derive(Debug)]
pub struct Registry {
    limits: ConnectionLimits,
    /// Connections accepted and not yet ended, registered or not.
    admitted: AtomicUsize,
    next_id: AtomicU64,
    open: Mutex<Open>,
}

/// The open connections, and how many each user has (so a login checks
/// its user's limit without walking every connection under the lock).
#[derive(Debug, Default)]
struct Open {
    by_id: HashMap<u64, Arc<Entry>>,
    per_user: HashMap<String, usize>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(ConnectionLimits::default())
    }
}

/// A connection counted against the limit in all, not yet registered
/// (its client has not logged in). Dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    registry: Arc<Registry>,
    protocol: &'static str,
    peer: SocketAddr,
    id: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.registry.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A registered connection. Dropping it removes the entry and frees the
/// connection's places under both limits.
#[derive(Debug)]
pub struct Registered {
    admission: Admission,
    entry: Arc<Entry>,
}

impl std::ops::Deref for Registered {
    type Target = Arc<Entry>;
    fn deref(&self) -> &Arc<Entry> {
        &self.entry
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let registry = &self.admission.registry;
        let mut open = guard(&registry.open);
        open.by_id.remove(&self.entry.id);
        if let Some(n) = open.per_user.get_mut(&self.entry.user) {
            *n -= 1;
            if *n == 0 {
                open.per_user.remove(&self.entry.user);
            }
        }
        drop(open);
        metrics::gauge!("ferry_connections", "protocol" => self.entry.protocol).decrement(1.0);
    }
}

impl Admission {
    /// The connection's id, unique among every face's connections for the
    /// life of the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Registers the connection once its client has logged in as `user`,
    /// or refuses it if the user has its limit of connections already.
    pub fn register(
        self,
        user: &str,
        namespace: &str,
        connected_at: u64,
    ) -> Result<Registered, Refused> {
        let registry = Arc::clone(&self.registry);
        let mut open = guard(&registry.open);
        if let Some(limit) = registry.limits.max_per_user
            && open.per_user.get(user).copied().unwrap_or(0) >= limit
        {
            drop(open);
            let why = Refused::TooManyForUser {
                user: user.to_owned(),
                limit,
            };
            refused(self.protocol, &why);
            return Err(why);
        }
        let entry = Arc::new(Entry {
            id: self.id,
            protocol: self.protocol,
            peer: self.peer,
            user: user.to_owned(),
            namespace: namespace.to_owned(),
            connected_at,
            channels: AtomicUsize::new(0),
            recv_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            recv_messages: AtomicU64::new(0),
            sent_messages: AtomicU64::new(0),
            consumers: Mutex::new(Vec::new()),
            close: Notify::new(),
            close_reason: Mutex::new(None),
        });
        open.by_id.insert(self.id, Arc::clone(&entry));
        *open.per_user.entry(user.to_owned()).or_default() += 1;
        drop(open);
        metrics::gauge!("ferry_connections", "protocol" => self.protocol).increment(1.0);
        Ok(Registered {
            admission: self,
            entry,
        })
    }
}

fn refused(protocol: &'static str, why: &Refused) {
    metrics::counter!("ferry_connections_refused_total", "protocol" => protocol, "reason" => why.label())
        .increment(1);
}

impl Registry {
    pub fn new(limits: ConnectionLimits) -> Self {
        Registry {
            limits,
            admitted: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            open: Mutex::new(Open::default()),
        }
    }

    /// Counts a newly accepted connection against the limit in all, or
    /// refuses it past the limit.
    pub fn admit(
        self: &Arc<Self>,
        protocol: &'static str,
        peer: SocketAddr,
    ) -> Result<Admission, Refused> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        if before >= self.limits.max {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            let why = Refused::TooMany {
                limit: self.limits.max,
            };
            refused(protocol, &why);
            return Err(why);
        }
        metrics::counter!("ferry_connections_accepted_total", "protocol" => protocol).increment(1);
        Ok(Admission {
            registry: Arc::clone(self),
            protocol,
            peer,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// How many connections are open (registered), every face together.
    pub fn len(&self) -> usize {
        guard(&self.open).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let open: Vec<Arc<Entry>> = guard(&self.open).by_id.values().cloned().collect();
        let mut list: Vec<ConnectionInfo> = open.iter().map(|c| c.info()).collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// Asks every connection of `user` to close; returns how many.
    pub fn close_user(&self, user: &str, reason: &str) -> usize {
        let ids: Vec<u64> = guard(&self.open)
            .by_id
            .values()
            .filter(|c| c.user == user)
            .map(|c| c.id)
            .collect();
        ids.iter().filter(|id| self.close(**id, reason)).count()
    }

    /// Asks connection `id` to close with `reason`; false if it is not open.
    pub fn close(&self, id: u64, reason: &str) -> bool {
        let Some(c) = guard(&self.open).by_id.get(&id).cloned() else {
            return false;
        };
        Self::ask_to_close(&c, reason);
        true
    }

    /// As [`Registry::close`], if connection `id` is one of `protocol`'s.
    pub fn close_if(&self, protocol: &str, id: u64, reason: &str) -> bool {
        let found = guard(&self.open)
            .by_id
            .get(&id)
            .filter(|c| c.protocol == protocol)
            .cloned();
        let Some(c) = found else {
            return false;
        };
        Self::ask_to_close(&c, reason);
        true
    }

    fn ask_to_close(c: &Entry, reason: &str) {
        *guard(&c.close_reason) = Some(reason.to_owned());
        c.close.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[tokio::test]
    async fn entries_follow_the_connection_and_close_wakes_it() {
        let reg = Arc::new(Registry::default());
        let admission = reg.admit("amqp", peer()).expect("admit");
        let id = admission.id();
        let r = admission.register("guest", "/", 1).expect("register");
        r.channel_opened();
        r.consumer_added(ConsumerInfo {
            channel: 1,
            tag: "t".into(),
            queue: "q".into(),
            prefetch: Some(10),
            ack_required: true,
        });
        r.received(100);
        r.published(3);
        let l = reg.list();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].protocol, l[0].channels, l[0].recv_bytes),
            ("amqp", 1, 100)
        );
        assert_eq!(l[0].recv_messages, 3);
        assert_eq!(l[0].consumers.len(), 1);
        r.channel_closed(1);
        assert!(reg.list()[0].consumers.is_empty());

        assert!(reg.close(id, "bye"));
        assert_eq!(r.close_requested().await, "bye");
        assert!(!reg.close(id + 1, "nobody"));
        drop(r);
        assert!(reg.list().is_empty());
    }

    #[test]
    fn the_limit_in_all_counts_connections_not_yet_logged_in() {
        let reg = Arc::new(Registry::new(ConnectionLimits {
            max: 2,
            max_per_user: None,
        }));
        let a = reg.admit("amqp", peer()).expect("first");
        let b = reg.admit("mqtt", peer()).expect("second, another face");
        assert_eq!(
            reg.admit("amqp", peer()).err(),
            Some(Refused::TooMany { limit: 2 })
        );
        drop(a);
        let c = reg.admit("amqp", peer()).expect("a place was freed");
        let registered = c.register("u", "/", 0).expect("register");
        drop(b);
        assert!(
            reg.admit("amqp", peer()).is_ok(),
            "the admission dropped with b"
        );
        assert!(reg.admit("amqp", peer()).is_ok());
        assert_eq!(reg.len(), 1);
        drop(registered);
        assert!(reg.is_empty());
    }

    #[test]
    fn a_registered_connection_frees_its_place_when_it_ends() {
        let reg = Arc::new(Registry::new(ConnectionLimits {
            max: 1,
            max_per_user: Some(1),
        }));
        let r = reg
            .admit("amqp", peer())
            .and_then(|a| a.register("u", "/", 0))
            .expect("register");
        assert!(reg.admit("amqp", peer()).is_err(), "the one place is taken");
        assert!(!reg.close_if("mqtt", r.id, "bye"), "not an mqtt connection");
        assert!(reg.close_if("amqp", r.id, "bye"));
        drop(r);
        let again = reg
            .admit("amqp", peer())
            .and_then(|a| a.register("u", "/", 0));
        assert!(again.is_ok(), "both places are free again");
    }

    #[test]
    fn a_users_limit_counts_its_connections_on_every_face() {
        let reg = Arc::new(Registry::new(ConnectionLimits {
            max: 100,
            max_per_user: Some(1),
        }));
        let first = reg
            .admit("amqp", peer())
            .and_then(|a| a.register("alice", "/", 0))
            .expect("first");
        let second = reg
            .admit("stomp", peer())
            .and_then(|a| a.register("alice", "/", 0));
        assert_eq!(
            second.err(),
            Some(Refused::TooManyForUser {
                user: "alice".into(),
                limit: 1
            })
        );
        assert!(
            reg.admit("amqp", peer())
                .and_then(|a| a.register("bob", "/", 0))
                .is_ok(),
            "another user is not limited by alice"
        );
        assert_eq!(reg.close_user("alice", "bye"), 1);
        drop(first);
        assert!(
            reg.admit("stomp", peer())
                .and_then(|a| a.register("alice", "/", 0))
                .is_ok()
        );
    }
}
