//! Commits and what completes them. A store's writer publishes its
//! [`Progress`] to a [`Tracker`]; a waiting [`Commit`] is woken once, when
//! the progress covers it. Not on every sync: with many publishers, those
//! whose commits are in the batch being written sleep through the sync
//! before it, and a publisher with several messages in flight sleeps until
//! the one it waits for is durable (a broadcast woke every waiter on every
//! sync, and most went back to sleep).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::{Progress, StoreError};

/// A store's progress, and the commits waiting on it.
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    progress: Progress,
    /// The store is gone: waiting commits will not settle.
    closed: bool,
    waiters: Slab<Waiter>,
    /// (commit, waiter key, registration), soonest commit first. Entries of
    /// waiters gone since stay until their commit settles, then are skipped.
    queue: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Numbers registrations, so a reused slab key is never mistaken for
    /// the waiter that had it before.
    registrations: u64,
}

#[derive(Debug)]
struct Waiter {
    registration: u64,
    waker: Waker,
}

impl Tracker {
    pub fn new() -> Arc<Tracker> {
        Arc::new(Tracker::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the progress with `f` and wakes the commits it settles
    /// (after the lock is released).
    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut woken = Vec::new();
        {
            let mut g = self.lock();
            f(&mut g.progress);
            let done = g.progress.done;
            while let Some(&Reverse((seq, key, registration))) = g.queue.peek() {
                if seq > done {
                    break;
                }
                g.queue.pop();
                if g.waiters
                    .get(key)
                    .is_some_and(|w| w.registration == registration)
                {
                    woken.push(g.waiters.remove(key).waker);
                }
            }
        }
        for w in woken {
            w.wake();
        }
    }

    /// The store will settle nothing more: every waiting commit ends with
    /// [`StoreError::Closed`] (unless its outcome is known).
    pub fn close(&self) {
        let woken: Vec<Waker> = {
            let mut g = self.lock();
            g.closed = true;
            g.queue.clear();
            g.waiters.drain().map(|w| w.waker).collect()
        };
        for w in woken {
            w.wake();
        }
    }
}

/// Completes when appended records are durable. Whoever tells a client
/// "done" waits for it first; dropping one unawaited is a decision to
/// write down (`let _commit =` with a reason), never an accident.
#[must_use = "a commit says when the change is durable: wait for it before answering"]
#[derive(Clone, Debug)]
pub struct Commit {
    state: CommitState,
}

impl Default for Commit {
    fn default() -> Self {
        Commit::done()
    }
}

#[derive(Clone, Debug)]
enum CommitState {
    Done,
    /// Commits `first..=last` (one, or several joined by `and`).
    Pending(u64, u64, Arc<Tracker>),
    /// Two commits apart (see [`Commit::both`]): durable once both are.
    Both(Box<Commit>, Box<Commit>),
    Failed(StoreError),
}

impl Commit {
    /// Already durable (or nothing needed to be).
    pub fn done() -> Self {
        Commit {
            state: CommitState::Done,
        }
    }

    /// Durable once the tracker's progress reaches `seq`.
    pub fn pending(seq: u64, tracker: Arc<Tracker>) -> Self {
        Commit {
            state: CommitState::Pending(seq, seq, tracker),
        }
    }

    /// Will never be durable.
    pub fn failed(err: StoreError) -> Self {
        Commit {
            state: CommitState::Failed(err),
        }
    }

    pub fn is_done(&self) -> bool {
        // `Both` is never made of two done commits (`both` folds them).
        matches!(self.state, CommitState::Done)
    }

    /// The outcome if it is known now (what [`Commit::wait`] would return
    /// at once), or `None` if the writer has not got this far yet.
    pub fn outcome(&self) -> Option<Result<(), StoreError>> {
        match &self.state {
            CommitState::Done => Some(Ok(())),
            CommitState::Failed(e) => Some(Err(e.clone())),
            CommitState::Pending(first, last, t) => {
                t.lock().progress.outcome_of_range(*first, *last)
            }
            CommitState::Both(a, b) => match (a.outcome()?, b.outcome()?) {
                (Ok(()), Ok(())) => Some(Ok(())),
                (Err(e), _) | (_, Err(e)) => Some(Err(e)),
            },
        }
    }

    /// Whether it is known never to be durable: refused, or its store said
    /// it failed. An outcome the store no longer remembers (past its last
    /// failures) is not known to have failed.
    pub fn known_failed(&self) -> bool {
        match &self.state {
            CommitState::Done => false,
            CommitState::Failed(_) => true,
            CommitState::Pending(first, last, t) => t.lock().progress.known_failed(*first, *last),
            CommitState::Both(a, b) => a.known_failed() || b.known_failed(),
        }
    }

    /// Whether [`Commit::wait`] would return at once.
    pub fn is_settled(&self) -> bool {
        self.outcome().is_some()
    }

    /// A commit that completes when both have and fails if either does
    /// (of the same store: it covers every commit from the earlier to the
    /// later, so another's failure in between fails it too; never a false
    /// success). Commits of different stores (the journal and the streams'
    /// logs) have different trackers and are kept apart, as [`Commit::both`].
    pub fn and(self, other: Commit) -> Commit {
        use CommitState::*;
        let state = match (self.state, other.state) {
            (Failed(e), _) | (_, Failed(e)) => Failed(e),
            (Done, s) | (s, Done) => s,
            (Pending(a1, a2, t), Pending(b1, b2, u)) if Arc::ptr_eq(&t, &u) => {
                Pending(a1.min(b1), a2.max(b2), t)
            }
            (a @ Pending(..), b @ Pending(..)) => {
                Both(Box::new(Commit { state: a }), Box::new(Commit { state: b }))
            }
            // A pair joined with more: the new commit goes into the part of
            // its own store (the later part first), so a long run of `and`
            // over two stores stays two deep instead of one deeper each time.
            (Both(x, y), p @ Pending(..)) | (p @ Pending(..), Both(x, y)) => {
                let p = Commit { state: p };
                if let Some(t) = p.tracker() {
                    if y.holds(t) {
                        return Commit {
                            state: Both(x, Box::new(y.and(p))),
                        };
                    }
                    if x.holds(t) {
                        return Commit {
                            state: Both(Box::new(x.and(p)), y),
                        };
                    }
                }
                Both(Box::new(Commit { state: Both(x, y) }), Box::new(p))
            }
            (a @ Both(..), Both(x, y)) => Commit { state: a }.and(*x).and(*y).state,
        };
        Commit { state }
    }

    /// The tracker of a single pending range.
    fn tracker(&self) -> Option<&Arc<Tracker>> {
        match &self.state {
            CommitState::Pending(_, _, t) => Some(t),
            _ => None,
        }
    }

    /// Whether a pending range of `t`'s store is part of this commit.
    fn holds(&self, t: &Arc<Tracker>) -> bool {
        match &self.state {
            CommitState::Pending(_, _, u) => Arc::ptr_eq(t, u),
            CommitState::Both(a, b) => a.holds(t) || b.holds(t),
            _ => false,
        }
    }

    /// How deep `Both` pairs nest (for tests of the bound).
    #[cfg(test)]
    fn depth(&self) -> usize {
        match &self.state {
            CommitState::Both(a, b) => 1 + a.depth().max(b.depth()),
            _ => 0,
        }
    }

    /// A commit that completes when both have and fails if either does,
    /// each judged on its own range: unlike [`Commit::and`], a failure of
    /// another commit between the two (an old original and a new batch)
    /// fails neither.
    pub fn both(self, other: Commit) -> Commit {
        use CommitState::*;
        match (&self.state, &other.state) {
            (Done, _) => other,
            (_, Done) => self,
            (Failed(_), _) => self,
            (_, Failed(_)) => other,
            _ => Commit {
                state: Both(Box::new(self), Box::new(other)),
            },
        }
    }

    pub async fn wait(self) -> Result<(), StoreError> {
        match self.state {
            CommitState::Done => Ok(()),
            CommitState::Failed(e) => Err(e),
            CommitState::Both(a, b) => {
                let (a, b) = (Box::pin(a.wait()), Box::pin(b.wait()));
                match (a.await, b.await) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            CommitState::Pending(first, last, tracker) => {
                Wait {
                    first,
                    last,
                    tracker,
                    registered: None,
                }
                .await
            }
        }
    }
}

/// Waiting for commits `first..=last`.
struct Wait {
    first: u64,
    last: u64,
    tracker: Arc<Tracker>,
    /// (slab key, registration) while a waker is registered.
    registered: Option<(usize, u64)>,
}

impl Future for Wait {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut g = this.tracker.lock();
        if let Some(outcome) = g.progress.outcome_of_range(this.first, this.last) {
            forget(&mut g, this.registered.take());
            return Poll::Ready(outcome);
        }
        if g.closed {
            return Poll::Ready(Err(StoreError::Closed));
        }
        let current = this
            .registered
            .and_then(|(key, reg)| g.waiters.get_mut(key).filter(|w| w.registration == reg));
        match current {
            Some(w) => {
                if !w.waker.will_wake(cx.waker()) {
                    w.waker = cx.waker().clone();
                }
            }
            None => {
                g.registrations += 1;
                let registration = g.registrations;
                let key = g.waiters.insert(Waiter {
                    registration,
                    waker: cx.waker().clone(),
                });
                g.queue.push(Reverse((this.last, key, registration)));
                this.registered = Some((key, registration));
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.registered.is_some() {
            let mut g = self.tracker.lock();
            forget(&mut g, self.registered.take());
        }
    }
}

/// Removes a waiter that no longer waits (its queue entry is skipped later).
fn forget(g: &mut Inner, registered: Option<(usize, u64)>) {
    if let Some((key, reg)) = registered
        && g.waiters.get(key).is_some_and(|w| w.registration == reg)
    {
        g.waiters.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn joined_commits_fail_if_either_failed() {
        let t = Tracker::new();
        let joined = Commit::pending(1, Arc::clone(&t)).and(Commit::pending(2, Arc::clone(&t)));
        t.update(|p| {
            p.fail(1, 1, StoreError::Full);
            p.done = 2;
        });
        assert_eq!(joined.wait().await, Err(StoreError::Full));
    }

    #[tokio::test]
    async fn commits_of_two_stores_join_without_mixing_their_progress() {
        let (journal, log) = (Tracker::new(), Tracker::new());
        let joined =
            Commit::pending(5, Arc::clone(&journal)).and(Commit::pending(1, Arc::clone(&log)));
        // The journal far ahead says nothing of the log's commit.
        journal.update(|p| p.done = 100);
        assert_eq!(joined.outcome(), None);
        log.update(|p| p.done = 1);
        assert_eq!(joined.wait().await, Ok(()));
    }

    #[tokio::test]
    async fn joining_many_commits_of_two_stores_stays_shallow() {
        let (journal, log) = (Tracker::new(), Tracker::new());
        let mut joined = Commit::done();
        for i in 1..=100_000u64 {
            let t = if i % 3 == 0 { &log } else { &journal };
            joined = joined.and(Commit::pending(i, Arc::clone(t)));
        }
        assert!(joined.depth() <= 2, "depth {}", joined.depth());
        journal.update(|p| p.done = 100_000);
        assert_eq!(joined.outcome(), None, "the log's part is not durable yet");
        log.update(|p| p.done = 100_000);
        assert_eq!(joined.wait().await, Ok(()));
    }

    #[tokio::test]
    async fn commits_apart_are_judged_each_on_its_own() {
        let t = Tracker::new();
        let old = Commit::pending(1, Arc::clone(&t));
        let new = Commit::pending(3, Arc::clone(&t));
        // Commit 2, between them, fails: `and` would fail both, `both` not.
        t.update(|p| {
            p.done = 1;
            p.fail(2, 2, StoreError::Full);
            p.done = 3;
        });
        let joined = old.clone().and(new.clone());
        assert_eq!(joined.outcome(), Some(Err(StoreError::Full)));
        let apart = old.both(new);
        assert_eq!(apart.outcome(), Some(Ok(())));
        assert!(!apart.known_failed());
        assert_eq!(apart.wait().await, Ok(()));
        let failed = Commit::pending(2, Arc::clone(&t));
        assert!(failed.known_failed());
        assert!(Commit::done().both(failed).known_failed());
    }

    #[tokio::test]
    async fn commits_wait_for_progress() {
        let t = Tracker::new();
        let c = Commit::pending(2, Arc::clone(&t));
        let waiter = tokio::spawn(c.wait());
        t.update(|p| p.done = 1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        t.update(|p| p.done = 2);
        assert_eq!(waiter.await.expect("join"), Ok(()));
        let failed = Commit::pending(3, Arc::clone(&t));
        t.update(|p| p.fail(3, 3, StoreError::Full));
        assert_eq!(failed.wait().await, Err(StoreError::Full));
        let after_close = tokio::spawn(Commit::pending(4, Arc::clone(&t)).wait());
        tokio::task::yield_now().await;
        t.close();
        assert_eq!(after_close.await.expect("join"), Err(StoreError::Closed));
    }

    /// Counts its wakes.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn wakes(c: &Arc<Counter>) -> usize {
        c.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn only_the_settled_commits_are_woken_and_gone_waiters_leave_nothing() {
        let t = Tracker::new();
        // Waiters on commits 1..=10, each polled once with its own waker.
        let mut waiting: Vec<_> = (1..=10u64)
            .map(|seq| {
                let counter = Arc::new(Counter(Default::default()));
                let waker = Waker::from(Arc::clone(&counter));
                let mut fut = Box::pin(Commit::pending(seq, Arc::clone(&t)).wait());
                let pending = fut
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending();
                assert!(pending);
                (fut, counter, waker)
            })
            .collect();
        t.update(|p| p.done = 5);
        let counts: Vec<usize> = waiting.iter().map(|(_, c, _)| wakes(c)).collect();
        assert_eq!(counts, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0], "the rest sleep on");
        t.update(|p| p.done = 6);
        assert_eq!(wakes(&waiting[5].1), 1);
        assert_eq!(wakes(&waiting[6].1), 0);
        // Woken ones are done; a second poll of a sleeping one does not
        // register it twice.
        for (fut, _, waker) in waiting.iter_mut().take(6) {
            let ready = fut.as_mut().poll(&mut Context::from_waker(waker));
            assert_eq!(ready, Poll::Ready(Ok(())));
        }
        let (fut, _, waker) = &mut waiting[9];
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        assert_eq!(t.lock().waiters.len(), 4);
        // A waiter dropped before its commit leaves no waker behind.
        waiting.truncate(8);
        assert_eq!(t.lock().waiters.len(), 2);
        t.update(|p| p.done = 10);
        assert!(t.lock().waiters.is_empty() && t.lock().queue.is_empty());
    }
}
