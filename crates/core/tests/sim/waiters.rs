//! Publishers waiting on their commits. Each wait is a real
//! `Commit::wait` future, polled by hand with a waker of its own, so the
//! simulation sees exactly which ones the store's `Tracker` wakes, and
//! polls the woken ones in a random order (the order in which a runtime
//! would run many confirmed publishers is not the commit order either).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use ferry_core::store::{Commit, StoreError};

use super::Check;
use super::rng::Rng;

pub type Outcome = Result<(), StoreError>;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Entry<T> {
    fut: Pin<Box<dyn Future<Output = Outcome>>>,
    flag: Arc<Flag>,
    what: T,
}

impl<T> Entry<T> {
    fn poll(&mut self) -> Poll<Outcome> {
        let waker = Waker::from(Arc::clone(&self.flag));
        self.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

pub struct Waiters<T> {
    entries: Vec<Option<Entry<T>>>,
}

impl<T: std::fmt::Debug> Waiters<T> {
    pub fn new() -> Self {
        Waiters {
            entries: Vec::new(),
        }
    }

    /// Starts waiting on `commit`; its outcome if known at once.
    pub fn add(&mut self, commit: Commit, what: T) -> Option<(T, Outcome)> {
        let mut e = Entry {
            fut: Box::pin(commit.wait()),
            flag: Arc::new(Flag(AtomicBool::new(false))),
            what,
        };
        match e.poll() {
            Poll::Ready(r) => Some((e.what, r)),
            Poll::Pending => {
                self.entries.push(Some(e));
                None
            }
        }
    }

    /// Polls every woken waiter, in a random order; returns those done, in
    /// that order.
    pub fn poll_woken(&mut self, rng: &mut Rng) -> Vec<(T, Outcome)> {
        let mut woken: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                self.entries[i]
                    .as_ref()
                    .is_some_and(|e| e.flag.0.swap(false, Ordering::SeqCst))
            })
            .collect();
        rng.shuffle(&mut woken);
        let mut out = Vec::new();
        for i in woken {
            let Some(e) = self.entries[i].as_mut() else {
                continue;
            };
            if let Poll::Ready(r) = e.poll()
                && let Some(e) = self.entries[i].take()
            {
                out.push((e.what, r));
            }
        }
        self.entries.retain(Option::is_some);
        out
    }

    /// Invariant: a commit that can complete has had its waiter woken. A
    /// waiter that was not woken and is ready when polled anyway would
    /// sleep for ever in a real runtime.
    pub fn check_no_lost_wakeups(&mut self) -> Check {
        for e in self.entries.iter_mut().flatten() {
            if !e.flag.0.load(Ordering::SeqCst) && e.poll().is_ready() {
                return Err(format!(
                    "lost wake-up: the commit of {:?} was settled but its waiter was never woken",
                    e.what
                ));
            }
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
