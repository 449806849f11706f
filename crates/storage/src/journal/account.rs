//! What the journal keeps in memory about its segments: live messages per
//! segment (and per queue within it, so deleting a queue settles its
//! messages without a record each), and the current topology for the
//! checkpoint at the start of each new segment.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ferry_core::clock::Timestamp;
use ferry_core::store::{DurableState, Location, QueueId, Record};

use super::segment_of;

#[derive(Debug, Default)]
struct Segment {
    live: u64,
    /// Messages ever written here (live or not), to tell a sparse segment.
    enqueued: u64,
    by_queue: HashMap<QueueId, u64>,
    /// Messages of deduplicating queues were enqueued here: kept, even
    /// with nothing live, until the last of their windows is over, so a
    /// restart within it still refuses their duplicates.
    dedup_until: Timestamp,
}

#[derive(Debug, Default)]
pub(super) struct Accounts {
    segments: BTreeMap<u64, Segment>,
    /// Originals replaced by copies not yet known to be on disk, by the
    /// commit carrying the copy: they count as live until it is, or a crash
    /// could find the original deleted and the copy not written.
    replaced: Vec<(u64, QueueId, Location)>,
    /// Fed only topology records: namespaces, queues, routers, bindings.
    topology: DurableState,
    /// Deduplicating queues: their window, and whether content alone keys
    /// a message (so a send needs no look-up in the topology when none is).
    deduplicating: HashMap<QueueId, (Duration, bool)>,
    /// Kept-keys files (see `kept`), by the id of the segment whose keys
    /// they carry, with when the last of their windows is over. The data
    /// keys of such an id stay until its file goes too.
    kept: BTreeMap<u64, Timestamp>,
    /// The segment whose keys are being carried out: not deleted (nor its
    /// data keys forgotten) until that is done.
    carrying: Option<u64>,
    /// Segments whose keys could not be carried out (read back damaged):
    /// they wait for their windows instead of being tried again and again.
    uncarriable: std::collections::BTreeSet<u64>,
}

/// What carrying a segment's keys out needs to know of its queues, taken
/// under the journal's lock and used outside it.
pub(super) struct Carry {
    pub segment: u64,
    /// Deduplicating queues: window, and whether content alone keys.
    pub queues: HashMap<QueueId, (Duration, bool)>,
}

/// Whether a record changes topology (namespaces, queues, routers,
/// bindings): such records are never sealed and go in every checkpoint.
pub(super) fn is_topology(r: &Record) -> bool {
    matches!(
        r,
        Record::NamespaceCreated { .. }
            | Record::NamespaceDeleted { .. }
            | Record::QueueDeclared { .. }
            | Record::QueueDeleted { .. }
            | Record::RouterDeclared { .. }
            | Record::RouterDeleted { .. }
            | Record::Bound { .. }
            | Record::Unbound { .. }
    )
}

/// Fills in the locations of removals whose message was enqueued by the
/// same append (the core could not know them yet), so every removal on
/// disk names the segment it settles.
pub(super) fn resolve_in_place(r: &mut Record, batch: &[(QueueId, u64, Location)]) {
    if batch.is_empty() {
        return;
    }
    let find = |queue: QueueId, seq: u64| {
        batch
            .iter()
            .rev()
            .find(|(q, s, _)| *q == queue && *s == seq)
            .map(|(_, _, l)| *l)
    };
    match r {
        Record::Removed {
            queue,
            seq,
            loc: loc @ None,
        } => *loc = find(*queue, *seq),
        Record::Purged { queue, removed } => {
            for (seq, loc) in removed.iter_mut() {
                if loc.is_none() {
                    *loc = find(*queue, *seq);
                }
            }
        }
        _ => {}
    }
}

impl Accounts {
    pub(super) fn add_segment(&mut self, id: u64) {
        self.segments.entry(id).or_default();
    }

    fn settle(&mut self, queue: QueueId, loc: Option<Location>) {
        let Some(seg) = loc.and_then(|l| self.segments.get_mut(&segment_of(l))) else {
            return;
        };
        if let Some(n) = seg.by_queue.get_mut(&queue)
            && *n > 0
        {
            *n -= 1;
            seg.live -= 1;
        }
    }

    /// Counts record `r`, found on disk at `at` (recovery).
    pub(super) fn apply(&mut self, r: &Record, at: Location) {
        self.count(r, at, None);
    }

    /// Counts record `r`, appended at `at` as part of `commit`, which is
    /// not on disk yet.
    pub(super) fn apply_appended(&mut self, r: &Record, at: Location, commit: u64) {
        self.count(r, at, Some(commit));
    }

    /// Commits up to `through` are on disk: the originals their copies
    /// replace no longer count.
    pub(super) fn written(&mut self, through: u64) {
        let mut i = 0;
        while i < self.replaced.len() {
            if self.replaced[i].0 <= through {
                let (_, queue, loc) = self.replaced.swap_remove(i);
                self.settle(queue, Some(loc));
            } else {
                i += 1;
            }
        }
    }

    /// Commits up to `through` failed: their copies never reached the disk,
    /// so the originals keep counting.
    pub(super) fn failed(&mut self, through: u64) {
        self.replaced.retain(|(c, _, _)| *c > through);
    }

    fn count(&mut self, r: &Record, at: Location, pending: Option<u64>) {
        match r {
            Record::Enqueued {
                queue,
                replaces,
                at: sent,
                forwarded,
                message,
                ..
            } => {
                // Only a send with a deduplication key opens a window
                // (recovery rebuilds it from this record).
                let sent_here = !forwarded && replaces.is_none();
                let window = (sent_here && !self.deduplicating.is_empty())
                    .then(|| self.deduplicating.get(queue))
                    .flatten()
                    .filter(|(_, by_content)| message.dedup_id.is_some() || *by_content)
                    .map(|(w, _)| *w);
                let seg = self.segments.entry(segment_of(at)).or_default();
                if let Some(w) = window {
                    seg.dedup_until = seg.dedup_until.max(sent.plus(w));
                }
                seg.live += 1;
                seg.enqueued += 1;
                *seg.by_queue.entry(*queue).or_default() += 1;
                // A copy made by compaction: the original stops counting
                // once the copy is on disk.
                match (pending, replaces) {
                    (Some(commit), Some(old)) => self.replaced.push((commit, *queue, *old)),
                    (None, old) => self.settle(*queue, *old),
                    (Some(_), None) => {}
                }
            }
            Record::Removed { queue, loc, .. } => self.settle(*queue, *loc),
            Record::Purged { queue, removed } => {
                for (_, loc) in removed {
                    self.settle(*queue, *loc);
                }
            }
            // Only kept-keys files hold these; they keep their own expiry.
            Record::Delivered { .. } | Record::DedupKept { .. } => {}
            Record::QueueDeleted { id } => {
                self.deduplicating.remove(id);
                for seg in self.segments.values_mut() {
                    if let Some(n) = seg.by_queue.remove(id) {
                        seg.live -= n;
                    }
                }
                self.topology.apply(r.clone(), None);
            }
            Record::QueueDeclared { id, config, .. } => {
                match &config.dedup {
                    Some(d) => self.deduplicating.insert(*id, (d.window, d.content_based)),
                    None => self.deduplicating.remove(id),
                };
                self.topology.apply(r.clone(), None);
            }
            Record::NamespaceCreated { .. }
            | Record::NamespaceDeleted { .. }
            | Record::RouterDeclared { .. }
            | Record::RouterDeleted { .. }
            | Record::Bound { .. }
            | Record::Unbound { .. } => self.topology.apply(r.clone(), None),
        }
    }

    /// Sets every segment's live counts from the messages that survived
    /// recovery (replacing what replaying removals counted).
    pub(super) fn set_live(&mut self, live: &mut dyn Iterator<Item = (QueueId, Location)>) {
        for seg in self.segments.values_mut() {
            seg.live = 0;
            seg.by_queue.clear();
        }
        for (queue, loc) in live {
            let seg = self.segments.entry(segment_of(loc)).or_default();
            seg.live += 1;
            *seg.by_queue.entry(queue).or_default() += 1;
        }
    }

    /// The key queue `queue`'s messages are sealed with, if it names one.
    pub(super) fn key_of(&self, queue: QueueId) -> Option<&str> {
        self.topology
            .queues
            .get(&queue)
            .and_then(|q| q.config.encryption_key.as_deref())
    }

    /// Queues (namespace, name) naming a key, with the key.
    pub(super) fn queue_keys(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.topology.queues.values().filter_map(|q| {
            q.config
                .encryption_key
                .as_deref()
                .map(|k| (q.namespace.as_str(), q.name.as_str(), k))
        })
    }

    pub(super) fn topology_records(&self) -> Vec<Record> {
        self.topology.to_records()
    }

    pub(super) fn live_by_segment(&self) -> Vec<(u64, u64)> {
        self.segments.iter().map(|(id, s)| (*id, s.live)).collect()
    }

    /// The oldest segment, if it still holds live messages but at most half
    /// of what was written to it, and is not `head`: copying its live
    /// messages forward lets it (and the dead ones behind it) go, writing
    /// at most as much again as is reclaimed.
    pub(super) fn sparse_oldest(&self, head: u64) -> Option<u64> {
        let (&id, seg) = self.segments.first_key_value()?;
        (id != head && seg.live > 0 && seg.live * 2 <= seg.enqueued).then_some(id)
    }

    /// Takes the oldest segments below `below` that hold nothing live nor
    /// a deduplication window still open at `now`, stopping at the first
    /// that does.
    pub(super) fn take_dead_prefix(&mut self, below: u64, now: Timestamp) -> Vec<u64> {
        let mut dead = Vec::new();
        while let Some((&id, seg)) = self.segments.first_key_value() {
            if id >= below || seg.live > 0 || seg.dedup_until > now || self.carrying == Some(id) {
                break;
            }
            self.segments.remove(&id);
            self.uncarriable.remove(&id);
            dead.push(id);
        }
        dead
    }

    /// The oldest segment whose messages are all gone but whose sends'
    /// deduplication windows are still open at `now`, with nothing but dead
    /// segments before it, if it is wholly written (`written_below`: the
    /// segment the writer is on); marked as being carried out. Its keys
    /// go to a small file of their own so it can be deleted: otherwise one
    /// window would pin every later segment until it closed.
    pub(super) fn start_carry(&mut self, written_below: u64, now: Timestamp) -> Option<Carry> {
        if self.carrying.is_some() {
            return None;
        }
        let (&id, _) = self
            .segments
            .iter()
            .take_while(|(id, seg)| **id < written_below && seg.live == 0)
            .find(|(id, seg)| seg.dedup_until > now && !self.uncarriable.contains(id))?;
        self.carrying = Some(id);
        let queues = self.deduplicating.clone();
        Some(Carry {
            segment: id,
            queues,
        })
    }

    /// Segment `id`'s keys are in a durable kept-keys file whose windows
    /// last until `until`: the segment no longer waits for them.
    pub(super) fn carried(&mut self, id: u64, until: Timestamp) {
        self.carrying = None;
        if let Some(seg) = self.segments.get_mut(&id) {
            seg.dedup_until = Timestamp(0);
        }
        if until > Timestamp(0) {
            let e = self.kept.entry(id).or_insert(until);
            *e = (*e).max(until);
        }
    }

    /// Carrying segment `id`'s keys out failed: it waits for its windows
    /// (and, if it could not be read, is not tried again).
    pub(super) fn carry_failed(&mut self, id: u64, for_good: bool) {
        self.carrying = None;
        if for_good {
            self.uncarriable.insert(id);
        }
    }

    /// Takes the kept-keys files whose windows are all over at `now`.
    pub(super) fn take_expired_kept(&mut self, now: Timestamp) -> Vec<u64> {
        let expired: Vec<u64> = self
            .kept
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.kept.remove(id);
        }
        expired
    }

    /// Whether a kept-keys file of segment `id` still needs its data keys.
    pub(super) fn keeps(&self, id: u64) -> bool {
        self.kept.contains_key(&id)
    }
}
