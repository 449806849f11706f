//! Deduplication of sends within a time window (SQS FIFO semantics: a send
//! whose id was seen in the window is accepted but not enqueued again).

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::message::{Message, MessageId};

use super::config::{DedupConfig, DedupScope};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Id(String),
    BodyHash([u8; 32]),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The message group, when the scope is per group.
    group: Option<String>,
    token: Token,
}

/// The message that first used a deduplication key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Original {
    pub id: MessageId,
    pub seq: u64,
    /// When it was published (with `seq`, what SQS sequence numbers are made of).
    pub published_at: Timestamp,
}

#[derive(Debug)]
pub(super) struct DedupWindow {
    config: DedupConfig,
    seen: HashMap<Key, (Timestamp, Original)>,
    /// Keys in the order they were first seen; with a fixed window this is
    /// also the order in which they expire.
    order: VecDeque<(Timestamp, Key)>,
}

/// The outcome of checking a message against the window.
pub(super) enum Check {
    /// Seen within the window: do not enqueue.
    Duplicate(Original),
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
        }
    }

    fn key_of(&self, msg: &Message) -> Option<Key> {
        let token = match (&msg.dedup_id, self.config.content_based) {
            (Some(id), _) => Token::Id(id.clone()),
            (None, true) => Token::BodyHash(Sha256::digest(&msg.body).into()),
            (None, false) => return None,
        };
        let group = match self.config.scope {
            DedupScope::Queue => None,
            DedupScope::Group => Some(msg.group_id.clone().unwrap_or_default()),
        };
        Some(Key { group, token })
    }

    pub(super) fn check(&mut self, msg: &Message, now: Timestamp) -> Check {
        self.expire(now);
        match self.key_of(msg) {
            None => Check::New(None),
            Some(key) => match self.seen.get(&key) {
                Some((_, original)) => Check::Duplicate(*original),
                None => Check::New(Some(DedupKey(key))),
            },
        }
    }

    pub(super) fn remember(&mut self, key: DedupKey, original: Original, now: Timestamp) {
        let until = now.plus(self.config.window);
        self.order.push_back((until, key.0.clone()));
        self.seen.insert(key.0, (until, original));
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
        if self
            .seen
            .get(&key)
            .is_some_and(|(open_until, _)| *open_until > at)
        {
            return;
        }
        // Replay is in journal order, which compaction copies break: keep
        // `order` sorted by expiry, as `expire` needs.
        let at = self.order.partition_point(|(u, _)| *u <= until);
        self.order.insert(at, (until, key.clone()));
        self.seen.insert(key, (until, original));
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some((until, _)) = self.order.front() {
            if *until > now {
                break;
            }
            // An entry replaced on recovery leaves its old expiry behind:
            // only the entry's own expiry removes it.
            if let Some((until, key)) = self.order.pop_front()
                && self.seen.get(&key).is_some_and(|(u, _)| *u == until)
            {
                self.seen.remove(&key);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}
