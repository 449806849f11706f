//! Measuring while loading: what each message carries (its send time and
//! its producer's sequence number), latency histograms, and the ledger of
//! sequence numbers that finds lost and duplicated messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Bytes at the start of every bench body: send time (ns since the run
/// began, 8 bytes), producer (2 bytes), sequence number (6 bytes).
pub const STAMP_LEN: usize = 16;

pub fn stamp(body: &mut [u8], producer: u16, seq: u64, sent_ns: u64) {
    body[..8].copy_from_slice(&sent_ns.to_be_bytes());
    body[8..10].copy_from_slice(&producer.to_be_bytes());
    body[10..16].copy_from_slice(&seq.to_be_bytes()[2..]);
}

/// (producer, sequence number, send time in ns); `None` if the body is
/// not a bench message.
pub fn read_stamp(body: &[u8]) -> Option<(u16, u64, u64)> {
    if body.len() < STAMP_LEN {
        return None;
    }
    let sent = u64::from_be_bytes(body[..8].try_into().ok()?);
    let producer = u16::from_be_bytes([body[8], body[9]]);
    let mut seq = [0u8; 8];
    seq[2..].copy_from_slice(&body[10..16]);
    Some((producer, u64::from_be_bytes(seq), sent))
}

/// The stamp as text (hex), for protocols whose bodies must be text (SQS).
pub fn stamp_text(producer: u16, seq: u64, sent_ns: u64) -> String {
    let mut b = [0u8; STAMP_LEN];
    stamp(&mut b, producer, seq, sent_ns);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a text stamp from the start of a body.
pub fn read_stamp_text(body: &str) -> Option<(u16, u64, u64)> {
    let hex = body.get(..2 * STAMP_LEN)?;
    let mut b = [0u8; STAMP_LEN];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    read_stamp(&b)
}

/// The run's time base, shared by producers and consumers.
#[derive(Copy, Clone)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    pub fn elapsed_s(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Totals every task adds to, read by the progress line.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    /// The latest end-to-end latency seen, in microseconds (for the live line).
    pub last_latency_us: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latency in microseconds, 1 µs to 10 minutes at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        // The bounds above are valid constants; this cannot happen.
        Histogram::new(3).unwrap_or_else(|e| panic!("histogram: {e}"))
    })
}

/// Which sequence numbers of each producer arrived, and how often twice.
#[derive(Default, Clone, Debug)]
pub struct Ledger {
    /// One bitset per producer.
    seen: Vec<Vec<u64>>,
    pub duplicates: u64,
}

impl Ledger {
    /// Records one arrival; returns false if it was a duplicate.
    pub fn record(&mut self, producer: u16, seq: u64) -> bool {
        let p = producer as usize;
        if self.seen.len() <= p {
            self.seen.resize_with(p + 1, Vec::new);
        }
        let bits = &mut self.seen[p];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let fresh = bits[word] & (1 << bit) == 0;
        bits[word] |= 1 << bit;
        if !fresh {
            self.duplicates += 1;
        }
        fresh
    }

    /// Folds another consumer's ledger in: a message both saw is a duplicate.
    pub fn merge(&mut self, other: &Ledger) {
        self.duplicates += other.duplicates;
        if self.seen.len() < other.seen.len() {
            self.seen.resize_with(other.seen.len(), Vec::new);
        }
        for (mine, theirs) in self.seen.iter_mut().zip(&other.seen) {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), 0);
            }
            for (a, b) in mine.iter_mut().zip(theirs) {
                self.duplicates += u64::from((*a & *b).count_ones());
                *a |= *b;
            }
        }
    }

    /// How many of the messages in `accepted` never arrived here.
    pub fn missing_from(&self, accepted: &Ledger) -> u64 {
        let mut missing = 0u64;
        for (p, want) in accepted.seen.iter().enumerate() {
            let have = self.seen.get(p);
            for (i, w) in want.iter().enumerate() {
                let h = have.and_then(|h| h.get(i)).copied().unwrap_or(0);
                missing += u64::from((w & !h).count_ones());
            }
        }
        missing
    }

    /// How many messages are recorded.
    pub fn count(&self) -> u64 {
        self.seen
            .iter()
            .flatten()
            .map(|w| u64::from(w.count_ones()))
            .sum()
    }

    /// How many of `producer`'s first `expected` messages never arrived.
    pub fn missing(&self, producer: u16, expected: u64) -> u64 {
        let Some(bits) = self.seen.get(producer as usize) else {
            return expected;
        };
        let full_words = (expected / 64) as usize;
        let mut have: u64 = bits
            .iter()
            .take(full_words)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = expected % 64;
        if rest > 0
            && let Some(w) = bits.get(full_words)
        {
            have += u64::from((w & ((1u64 << rest) - 1)).count_ones());
        }
        expected - have
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut body = vec![0u8; 16];
        stamp(&mut body, 513, (1 << 40) + 7, 123_456_789);
        assert_eq!(read_stamp(&body), Some((513, (1 << 40) + 7, 123_456_789)));
        assert_eq!(read_stamp(&body[..15]), None);
    }

    #[test]
    fn text_stamps_round_trip() {
        let t = stamp_text(7, 99, 1234);
        assert_eq!(t.len(), 32);
        assert_eq!(read_stamp_text(&format!("{t}padding")), Some((7, 99, 1234)));
        assert_eq!(read_stamp_text("not hex"), None);
    }

    #[test]
    fn the_ledger_counts_missing_and_duplicated_messages() {
        let mut a = Ledger::default();
        for seq in [0, 1, 2, 5, 70] {
            assert!(a.record(0, seq));
        }
        assert!(!a.record(0, 2));
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.missing(0, 6), 2); // 3 and 4
        assert_eq!(a.missing(0, 71), 71 - 5);
        assert_eq!(a.missing(1, 10), 10);
        let mut b = Ledger::default();
        b.record(0, 5);
        b.record(0, 3);
        b.record(1, 0);
        a.merge(&b);
        assert_eq!(a.duplicates, 2, "5 arrived at both consumers");
        assert_eq!(a.missing(0, 6), 1);
        assert_eq!(a.missing(1, 1), 0);
    }

    #[test]
    fn latency_histogram_spans_microseconds_to_minutes() {
        let mut h = latency_histogram();
        h.record(1).unwrap();
        h.record(60_000_000).unwrap();
        assert_eq!(h.len(), 2);
    }
}
