//! Flow control from a connection back to the queues it consumes from.
//!
//! A queue hands deliveries to a consumer's sink under its lock; the sink
//! queues them for the connection task, which writes them to the socket.
//! Without a bound, a consumer with no prefetch limit (or no-ack) would
//! have a queue's whole backlog moved into that in-memory queue at once:
//! leased, read back from the journal past the memory budget, and — for
//! no-ack — already gone from the queue. So each sink takes at most
//! [`IN_FLIGHT_CAP`] deliveries that the connection has not written yet,
//! and a channel with a global basic.qos takes no more than its limit of
//! unacked deliveries. A sink that refuses is "starved": the connection
//! kicks its queue once it has room again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Deliveries a consumer may have queued for its connection, not yet written.
pub const IN_FLIGHT_CAP: usize = 2048;
/// Bytes of message bodies the same may hold: with large messages the
/// count alone would let a consumer that never reads pin 2048 of them
/// (128 MiB of 64 KiB messages) in the broker's memory.
pub const IN_FLIGHT_BYTES: usize = 4 << 20;

/// What a channel shares with its consumers' sinks.
#[derive(Default)]
pub struct ChannelFlow {
    /// Deliveries written to the client and not settled yet.
    pub unacked: AtomicUsize,
    /// basic.qos with global: the most unacked deliveries for the whole
    /// channel (0: no such limit).
    pub global_limit: AtomicUsize,
    /// Deliveries queued for the connection and not written yet, over all
    /// the channel's consumers (they count against the global limit too).
    queued: AtomicUsize,
}

/// One consumer's side.
pub struct ConsumerFlow {
    in_flight: AtomicUsize,
    in_flight_bytes: AtomicUsize,
    starved: AtomicBool,
    channel: std::sync::Arc<ChannelFlow>,
}

impl ConsumerFlow {
    pub fn new(channel: std::sync::Arc<ChannelFlow>) -> Self {
        ConsumerFlow {
            in_flight: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            channel,
        }
    }

    /// Whether the sink takes a delivery now; if not, it is marked starved.
    pub fn ready(&self) -> bool {
        if self.has_room() {
            return true;
        }
        // Marked first, then looked at again: a connection that makes room
        // in between either is seen here or sees the mark and kicks.
        self.starved.store(true, Ordering::SeqCst);
        self.has_room()
    }

    fn has_room(&self) -> bool {
        let channel = &self.channel;
        let limit = channel.global_limit.load(Ordering::SeqCst);
        self.in_flight.load(Ordering::SeqCst) < IN_FLIGHT_CAP
            && self.in_flight_bytes.load(Ordering::SeqCst) < IN_FLIGHT_BYTES
            && (limit == 0
                || channel.unacked.load(Ordering::SeqCst) + channel.queued.load(Ordering::SeqCst)
                    < limit)
    }

    /// A delivery of `bytes` was queued for the connection.
    pub fn queued(&self, bytes: usize) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.in_flight_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.channel.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// `n` queued deliveries of `bytes` in all were written (or given
    /// back). Counted off in batches: the counters are shared with the
    /// queue's thread.
    pub fn written(&self, n: usize, bytes: usize) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        self.in_flight_bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.channel.queued.fetch_sub(n, Ordering::SeqCst);
    }

    /// Whether the queue must be kicked: the sink refused deliveries since
    /// the last time this was asked.
    pub fn take_starved(&self) -> bool {
        self.starved.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_sink_refuses_and_asks_for_a_kick_once_it_has_room() {
        let ch = Arc::new(ChannelFlow::default());
        let f = ConsumerFlow::new(Arc::clone(&ch));
        for _ in 0..IN_FLIGHT_CAP {
            assert!(f.ready());
            f.queued(1);
        }
        assert!(!f.ready());
        f.written(1, 1);
        assert!(f.take_starved(), "refused once: the queue needs a kick");
        assert!(!f.take_starved());
        assert!(f.ready());
    }

    #[test]
    fn large_messages_are_capped_by_bytes() {
        let f = ConsumerFlow::new(Arc::new(ChannelFlow::default()));
        let big = 64 * 1024;
        let mut taken = 0;
        while f.ready() {
            f.queued(big);
            taken += 1;
        }
        assert_eq!(taken, IN_FLIGHT_BYTES / big);
        f.written(1, big);
        assert!(f.ready());
    }

    #[test]
    fn a_global_limit_counts_the_channels_unacked_deliveries() {
        let ch = Arc::new(ChannelFlow::default());
        let f = ConsumerFlow::new(Arc::clone(&ch));
        ch.global_limit.store(2, Ordering::SeqCst);
        ch.unacked.store(2, Ordering::SeqCst);
        assert!(!f.ready());
        ch.unacked.store(1, Ordering::SeqCst);
        assert!(f.ready());
    }
}
