//! Deduplication of sends within a time window (SQS FIFO semantics: a send
//! whose id was seen in the window is accepted but not enqueued again).

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::message::{Message, MessageId};
use crate::store::Commit;

use super::config::{DedupConfig, DedupScope};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The message group, when the scope is per group.
    group: Option<String>,
    /// The deduplication id: given, or (content-based) the body's digest
    /// in hex, as SQS makes it, so both share one space.
    token: String,
}

/// The deduplication id SQS gives a message of a content-based queue: the
/// SHA-256 of its body (not its attributes), in lowercase hex.
pub fn content_dedup_id(body: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The message that first used a deduplication key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Original {
    pub id: MessageId,
    pub seq: u64,
    /// When it was published (with `seq`, what SQS sequence numbers are made of).
    pub published_at: Timestamp,
}

/// A key in the window.
#[derive(Debug)]
struct Seen {
    until: Timestamp,
    original: Original,
    /// When the original's record is durable. A duplicate is confirmed only
    /// on it, and a key whose original could not be journaled is not held
    /// against a retry: the sender was told the send failed.
    commit: Commit,
}

#[derive(Debug)]
pub(super) struct DedupWindow {
    config: DedupConfig,
    seen: HashMap<Key, Seen>,
    /// Keys in the order they were first seen; with a fixed window this is
    /// also the order in which they expire.
    order: VecDeque<(Timestamp, Key)>,
    /// How many keys at the back of `order` were remembered by the
    /// operation under way, whose commit is not known yet (see
    /// [`DedupWindow::attach`]).
    unattached: usize,
    /// Keys whose failed original the operation under way journals again
    /// (rare: after a storage failure), for [`DedupWindow::attach`] too.
    retried: Vec<Key>,
}

/// The outcome of checking a message against the window.
pub(super) enum Check {
    /// Seen within the window: do not enqueue; confirm once the original's
    /// commit is durable.
    Duplicate(Original, Commit),
    /// Seen within the window, but the store refused or failed the
    /// original: if it is still queued, journal it again and answer this
    /// send as its duplicate (one copy, now durable); else a new send.
    Failed(Original, DedupKey),
    /// New: enqueue, then call [`DedupWindow::remember`] with this key.
    New(Option<DedupKey>),
}

/// A key to remember once the message is enqueued (opaque outside this module).
pub(super) struct DedupKey(Key);

impl DedupWindow {
    pub(super) fn new(config: DedupConfig) -> Self {
        DedupWindow {
            config,
            seen: HashMap::new(),
            order: VecDeque::new(),
            unattached: 0,
            retried: Vec::new(),
        }
    }

    fn key_of(&self, msg: &Message) -> Option<Key> {
        let token = match (&msg.dedup_id, self.config.content_based) {
            (Some(id), _) => id.clone(),
            (None, true) => content_dedup_id(&msg.body),
            (None, false) => return None,
        };
        let group = match self.config.scope {
            DedupScope::Queue => None,
            DedupScope::Group => Some(msg.group_id.clone().unwrap_or_default()),
        };
        Some(Key { group, token })
    }

    /// Whether a message without an id gets its body's digest as one.
    pub(super) fn content_based(&self) -> bool {
        self.config.content_based
    }

    pub(super) fn check(&mut self, msg: &Message, now: Timestamp) -> Check {
        self.expire(now);
        match self.key_of(msg) {
            None => Check::New(None),
            Some(key) => match self.seen.get_mut(&key) {
                // Refused or failed by the store: a retry is a new send. An
                // outcome the store no longer remembers is not a failure.
                Some(s) if s.commit.known_failed() => Check::Failed(s.original, DedupKey(key)),
                Some(s) => {
                    if matches!(s.commit.outcome(), Some(Ok(()))) {
                        // Durable for good: nothing more to wait for.
                        s.commit = Commit::done();
                    }
                    Check::Duplicate(s.original, s.commit.clone())
                }
                None => Check::New(Some(DedupKey(key))),
            },
        }
    }

    /// Remembers a new send's key; [`DedupWindow::attach`] gives it its
    /// commit once the operation is journaled. A key seen again after its
    /// original failed is replaced (its old place in `order` expires
    /// nothing: only an entry's own expiry removes it).
    pub(super) fn remember(&mut self, key: DedupKey, original: Original, now: Timestamp) {
        let until = now.plus(self.config.window);
        self.order.push_back((until, key.0.clone()));
        self.seen.insert(
            key.0,
            Seen {
                until,
                original,
                commit: Commit::done(),
            },
        );
        self.unattached += 1;
    }

    /// The original of `key` is journaled again by the operation under
    /// way: its entry (window and all) takes that operation's commit.
    pub(super) fn retried(&mut self, key: DedupKey) {
        self.retried.push(key.0);
    }

    /// The commit of the operation that remembered the latest keys (and
    /// journaled again the originals of retried ones).
    pub(super) fn attach(&mut self, commit: &Commit) {
        let n = std::mem::take(&mut self.unattached);
        for (_, key) in self.order.iter().rev().take(n) {
            if let Some(s) = self.seen.get_mut(key) {
                s.commit = commit.clone();
            }
        }
        for key in std::mem::take(&mut self.retried) {
            if let Some(s) = self.seen.get_mut(&key) {
                s.commit = commit.clone();
            }
        }
    }

    /// Remembers a message read back on recovery, as sent at `at`, unless
    /// its window is over. Replay visits sends in the order they were made:
    /// a key seen again after its first window closed is the later send's.
    pub(super) fn restore(
        &mut self,
        msg: &Message,
        original: Original,
        at: Timestamp,
        now: Timestamp,
    ) {
        let until = at.plus(self.config.window);
        if until <= now {
            return;
        }
        let Some(key) = self.key_of(msg) else {
            return;
        };
        if self.seen.get(&key).is_some_and(|s| s.until > at) {
            return;
        }
        // Replay is not in expiry order (compaction copies, keys the store
        // kept apart from their segments): sorted once replay is over
        // ([`DedupWindow::restored`]), not per key, which was quadratic.
        self.order.push_back((until, key.clone()));
        self.seen.insert(
            key,
            Seen {
                until,
                original,
                commit: Commit::done(),
            },
        );
    }

    /// Replay is over: puts `order` in expiry order, as `expire` needs
    /// (stable, so of two entries for a key, the replaced one stays first).
    pub(super) fn restored(&mut self) {
        self.order
            .make_contiguous()
            .sort_by_key(|(until, _)| *until);
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some((until, _)) = self.order.front() {
            if *until > now {
                break;
            }
            // An entry replaced on recovery leaves its old expiry behind:
            // only the entry's own expiry removes it.
            if let Some((until, key)) = self.order.pop_front()
                && self.seen.get(&key).is_some_and(|s| s.until == until)
            {
                self.seen.remove(&key);
            }
        }
        // Keys of the operation under way are the newest; a zero window
        // can expire them at once.
        self.unattached = self.unattached.min(self.order.len());
    }

    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}
