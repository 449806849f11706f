//! The open connections, as operators see them (the admin API lists them
//! and may close one). Each connection keeps its own entry up to date:
//! byte counters once per socket read or write, consumers and channels
//! when they come and go, so listing never has to ask a busy connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// One consumer of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub channel: u16,
    pub tag: String,
    pub queue: String,
    /// Most unacked deliveries at once; `None`: no limit.
    pub prefetch: Option<u32>,
    pub ack_required: bool,
}

/// A connection's entry.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    pub user: String,
    pub vhost: String,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    channels: AtomicUsize,
    recv_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    consumers: Mutex<Vec<ConsumerInfo>>,
    /// Wakes the connection to close itself with this reason.
    close: Notify,
    close_reason: Mutex<Option<String>>,
}

/// What a listing shows of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub connected_at: u64,
    pub channels: usize,
    pub recv_bytes: u64,
    pub sent_bytes: u64,
    pub consumers: Vec<ConsumerInfo>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lists stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    pub fn received(&self, n: usize) {
        self.recv_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, n: usize) {
        self.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
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
    /// the reason to tell the client.
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
            peer: self.peer,
            user: self.user.clone(),
            vhost: self.vhost.clone(),
            connected_at: self.connected_at,
            channels: self.channels.load(Ordering::Relaxed),
            recv_bytes: self.recv_bytes.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            consumers: guard(&self.consumers).clone(),
        }
    }
}

/// Every open connection of the protocol, after its handshake.
#[derive(Debug, Default)]
pub struct Registry {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

/// Removes the entry when the connection ends, however it ends.
pub struct Registered {
    registry: Arc<Registry>,
    pub entry: Arc<Connection>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        guard(&self.registry.open).remove(&self.entry.id);
    }
}

impl Registry {
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        peer: SocketAddr,
        user: &str,
        vhost: &str,
        connected_at: u64,
    ) -> Registered {
        let entry = Arc::new(Connection {
            id,
            peer,
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            connected_at,
            channels: AtomicUsize::new(0),
            recv_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            consumers: Mutex::new(Vec::new()),
            close: Notify::new(),
            close_reason: Mutex::new(None),
        });
        guard(&self.open).insert(id, Arc::clone(&entry));
        Registered {
            registry: Arc::clone(self),
            entry,
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        guard(&self.open).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many connections `user` has open.
    pub fn count_user(&self, user: &str) -> usize {
        guard(&self.open)
            .values()
            .filter(|c| c.user == user)
            .count()
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let open: Vec<Arc<Connection>> = guard(&self.open).values().cloned().collect();
        let mut list: Vec<ConnectionInfo> = open.iter().map(|c| c.info()).collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// Asks every connection of `user` to close; returns how many.
    pub fn close_user(&self, user: &str, reason: &str) -> usize {
        let ids: Vec<u64> = guard(&self.open)
            .values()
            .filter(|c| c.user == user)
            .map(|c| c.id)
            .collect();
        ids.iter().filter(|id| self.close(**id, reason)).count()
    }

    /// Asks connection `id` to close with `reason`; false if it is not open.
    pub fn close(&self, id: u64, reason: &str) -> bool {
        let Some(c) = guard(&self.open).get(&id).cloned() else {
            return false;
        };
        *guard(&c.close_reason) = Some(reason.to_owned());
        c.close.notify_one();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_follow_the_connection_and_close_wakes_it() {
        let reg = Arc::new(Registry::default());
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let r = reg.register(7, peer, "guest", "/", 1);
        r.entry.channel_opened();
        r.entry.consumer_added(ConsumerInfo {
            channel: 1,
            tag: "t".into(),
            queue: "q".into(),
            prefetch: Some(10),
            ack_required: true,
        });
        r.entry.received(100);
        let l = reg.list();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].channels, l[0].recv_bytes), (1, 100));
        assert_eq!(l[0].consumers.len(), 1);
        r.entry.channel_closed(1);
        assert!(reg.list()[0].consumers.is_empty());

        assert!(reg.close(7, "bye"));
        assert_eq!(r.entry.close_requested().await, "bye");
        assert!(!reg.close(8, "nobody"));
        drop(r);
        assert!(reg.list().is_empty());
    }
}
