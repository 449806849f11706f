//! Time, injected.
//!
//! Every time-based behaviour of the engine (lease deadlines, delays, TTL,
//! retention, queue expiry, redrive rates) reads the time from a [`Clock`]
//! and waits through it, so tests drive time with a [`FakeClock`] instead of
//! sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A point in time: milliseconds since the Unix epoch.
///
/// One type serves both wall-clock needs (SQS `SentTimestamp`) and deadlines,
/// because the broker's clock never goes backwards (see [`SystemClock`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    pub fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The source of time for a broker.
pub trait Clock: Send + Sync + 'static {
    /// The current time; never less than a value returned before.
    fn now(&self) -> Timestamp;
    /// A future that completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// `f`'s output, or `None` if `d` passes on `clock` first (a timeout that
/// a test's [`FakeClock`] drives, where `tokio::time::timeout` would not
/// see it move).
pub async fn within<F: Future>(clock: &dyn Clock, d: Duration, f: F) -> Option<F::Output> {
    let deadline = clock.now().plus(d);
    tokio::select! {
        out = f => Some(out),
        () = clock.sleep_until(deadline) => None,
    }
}

/// Wall-clock time, made monotonic: a step of the system clock backwards
/// holds the broker's time still instead of reordering deadlines.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicU64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        // Write only when the millisecond moves on: a shared cache line
        // that every core writes on every call would be a global lock in all
        // but name.
        let last = self.last.load(Ordering::Relaxed);
        if wall <= last {
            return Timestamp(last);
        }
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        Timestamp(prev.max(wall))
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to. Sleepers wake when
/// [`FakeClock::advance`] or [`FakeClock::set`] passes their deadline.
#[derive(Clone, Debug)]
pub struct FakeClock {
    now: Arc<watch::Sender<u64>>,
}

impl FakeClock {
    pub fn new(start: Timestamp) -> Self {
        FakeClock {
            now: Arc::new(watch::Sender::new(start.0)),
        }
    }

    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.now.send_modify(|t| *t = t.saturating_add(ms));
    }

    /// Moves the clock to `t` (never backwards).
    pub fn set(&self, t: Timestamp) {
        self.now.send_modify(|now| *now = (*now).max(t.0));
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        // An arbitrary but realistic epoch: 2026-01-01T00:00:00Z.
        FakeClock::new(Timestamp(1_767_225_600_000))
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.now.borrow())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline.0 {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone; nobody can advance time any more.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_never_goes_back() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a.0 > 1_600_000_000_000);
    }

    #[tokio::test]
    async fn fake_clock_wakes_sleepers_when_advanced() {
        let c = FakeClock::default();
        let deadline = c.now().plus(Duration::from_secs(5));
        let sleeper = tokio::spawn(c.sleep_until(deadline));
        tokio::task::yield_now().await;
        c.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        c.advance(Duration::from_secs(1));
        sleeper.await.expect("sleeper completes");
    }
}
