//! The order in which ready messages are handed out.
//!
//! Both indexes hold `(seq, slot)` references and are cleaned lazily: a
//! reference whose message was removed meanwhile (purged, expired, moved) is
//! skipped when it reaches the front, so removal never searches an index.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

/// A message's sequence number in its queue and its slot in the queue's slab.
pub(super) type Ref = (u64, usize);

/// Messages of one priority: fresh ones arrive in sequence order and go to
/// the back of a deque; returned ones (lease expired, nacked) go into a heap
/// so they come out again before younger messages, in their original order.
#[derive(Debug, Default)]
struct Lane {
    fresh: VecDeque<Ref>,
    returned: BinaryHeap<Reverse<Ref>>,
}

impl Lane {
    fn pop(&mut self, valid: &mut impl FnMut(Ref) -> bool) -> Option<Ref> {
        loop {
            let from_returned = match (self.fresh.front(), self.returned.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(f), Some(Reverse(r))) => r.0 < f.0,
            };
            let r = if from_returned {
                self.returned.pop().map(|Reverse(r)| r)
            } else {
                self.fresh.pop_front()
            };
            match r {
                Some(r) if valid(r) => return Some(r),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    fn clear(&mut self) {
        self.fresh.clear();
        self.returned.clear();
    }

    fn refs(&self) -> usize {
        self.fresh.len() + self.returned.len()
    }

    fn retain(&mut self, valid: &mut impl FnMut(Ref) -> bool) {
        self.fresh.retain(|r| valid(*r));
        self.returned.retain(|Reverse(r)| valid(*r));
    }
}

/// Ready messages of a standard queue, highest priority first, then oldest first.
#[derive(Debug)]
pub(super) struct PlainIndex {
    /// Index = priority; one lane when the queue has no priorities.
    lanes: Vec<Lane>,
}

impl PlainIndex {
    pub(super) fn new(max_priority: u8) -> Self {
        let mut lanes = Vec::with_capacity(usize::from(max_priority) + 1);
        lanes.resize_with(usize::from(max_priority) + 1, Lane::default);
        PlainIndex { lanes }
    }

    pub(super) fn push(&mut self, r: Ref, priority: u8, returned: bool) {
        let top = self.lanes.len() - 1;
        let lane = &mut self.lanes[usize::from(priority).min(top)];
        if returned {
            lane.returned.push(Reverse(r));
        } else {
            lane.fresh.push_back(r);
        }
    }

    pub(super) fn pop(&mut self, valid: &mut impl FnMut(Ref) -> bool) -> Option<Ref> {
        self.lanes.iter_mut().rev().find_map(|lane| lane.pop(valid))
    }

    /// The oldest ready message of the lowest priority: the one an overflow drops first.
    pub(super) fn pop_oldest_lowest(&mut self, valid: &mut impl FnMut(Ref) -> bool) -> Option<Ref> {
        self.lanes.iter_mut().find_map(|lane| lane.pop(valid))
    }

    fn refs(&self) -> usize {
        self.lanes.iter().map(Lane::refs).sum()
    }
}

#[derive(Debug, Default)]
struct Group {
    /// Ready messages of the group, in sequence order.
    ready: VecDeque<Ref>,
    /// Leased messages of the group; while any, the group is blocked.
    in_flight: u32,
    /// Whether the group's name is in `GroupIndex::available`.
    listed: bool,
}

/// Ready messages of a FIFO queue: strict order within a group; groups
/// take turns, and a group with a message in flight is skipped.
#[derive(Debug, Default)]
pub(super) struct GroupIndex {
    groups: HashMap<Arc<str>, Group>,
    /// Groups that have ready messages and nothing in flight, in turn order.
    available: VecDeque<Arc<str>>,
}

impl GroupIndex {
    pub(super) fn push(&mut self, r: Ref, group: &str, returned: bool) {
        let g = match self.groups.get_mut(group) {
            Some(g) => g,
            None => self.groups.entry(Arc::from(group)).or_default(),
        };
        if returned {
            // Returned messages are older than every ready one of their group.
            let at = g.ready.partition_point(|x| x.0 < r.0);
            g.ready.insert(at, r);
        } else {
            g.ready.push_back(r);
        }
        if g.in_flight == 0 && !g.listed {
            g.listed = true;
            if let Some((name, _)) = self.groups.get_key_value(group) {
                self.available.push_back(Arc::clone(name));
            }
        }
    }

    /// Takes up to `max` messages, as many as possible from each group in
    /// turn. With `lease`, every group taken from is blocked until
    /// [`GroupIndex::release`] is called once per message taken.
    pub(super) fn pop_batch(
        &mut self,
        max: usize,
        lease: bool,
        valid: &mut impl FnMut(Ref) -> bool,
        out: &mut Vec<Ref>,
    ) {
        let mut skipped = Vec::new();
        while out.len() < max {
            let Some(name) = self.available.pop_front() else {
                break;
            };
            let Some(g) = self.groups.get_mut(&name) else {
                continue;
            };
            g.listed = false;
            let before = out.len();
            while out.len() < max {
                match g.ready.pop_front() {
                    Some(r) if valid(r) => out.push(r),
                    Some(_) => continue,
                    None => break,
                }
            }
            let taken = (out.len() - before) as u32;
            if lease {
                g.in_flight += taken;
            }
            // Stale references left in the group are skipped on a later turn.
            let has_more = !g.ready.is_empty();
            if g.in_flight == 0 && has_more {
                // Not blocked (auto-ack) and still has messages: stays in turn.
                g.listed = true;
                skipped.push(name);
            } else if g.in_flight == 0 {
                self.groups.remove(&name);
            }
        }
        for name in skipped.into_iter().rev() {
            self.available.push_front(name);
        }
    }

    /// Counts one message of `group` in flight that was not taken by
    /// [`GroupIndex::pop_batch`] (a lease that recovery puts back).
    pub(super) fn hold(&mut self, group: &str) {
        let g = match self.groups.get_mut(group) {
            Some(g) => g,
            None => self.groups.entry(Arc::from(group)).or_default(),
        };
        g.in_flight += 1;
        if g.listed {
            // Blocked now: out of turn until released (rare, so a scan).
            g.listed = false;
            self.available.retain(|name| &**name != group);
        }
    }

    /// One message of `group` is no longer in flight (acked, returned or
    /// moved). Returns true if that unblocked a group with ready messages.
    pub(super) fn release(&mut self, group: &str) -> bool {
        self.release_to(group, false)
    }

    /// [`GroupIndex::release`] for a message popped and put back undelivered:
    /// an unblocked group takes its turn again at the front, where it was.
    /// (Putting back a batch in reverse order restores the turn order.)
    pub(super) fn release_front(&mut self, group: &str) -> bool {
        self.release_to(group, true)
    }

    fn release_to(&mut self, group: &str, front: bool) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        g.in_flight = g.in_flight.saturating_sub(1);
        if g.in_flight > 0 {
            return false;
        }
        if g.ready.is_empty() {
            self.groups.remove(group);
            false
        } else if !g.listed {
            g.listed = true;
            if let Some((name, _)) = self.groups.get_key_value(group) {
                let name = Arc::clone(name);
                if front {
                    self.available.push_front(name);
                } else {
                    self.available.push_back(name);
                }
            }
            true
        } else {
            false
        }
    }

    fn refs(&self) -> usize {
        self.groups.values().map(|g| g.ready.len()).sum()
    }
}

/// The ready index of a queue: plain or grouped.
#[derive(Debug)]
pub(super) enum ReadyIndex {
    Plain(PlainIndex),
    Grouped(GroupIndex),
}

impl ReadyIndex {
    pub(super) fn new(fifo: bool, max_priority: u8) -> Self {
        if fifo {
            ReadyIndex::Grouped(GroupIndex::default())
        } else {
            ReadyIndex::Plain(PlainIndex::new(max_priority))
        }
    }

    pub(super) fn push(&mut self, r: Ref, priority: u8, group: Option<&str>, returned: bool) {
        match self {
            ReadyIndex::Plain(p) => p.push(r, priority, returned),
            ReadyIndex::Grouped(g) => g.push(r, group.unwrap_or(""), returned),
        }
    }

    /// Clears every reference. Group in-flight counts survive: leased
    /// messages are not ready and a purge does not touch them.
    pub(super) fn clear(&mut self) {
        match self {
            ReadyIndex::Plain(p) => p.lanes.iter_mut().for_each(Lane::clear),
            ReadyIndex::Grouped(g) => {
                g.available.clear();
                g.groups.retain(|_, grp| {
                    grp.ready.clear();
                    grp.listed = false;
                    grp.in_flight > 0
                });
            }
        }
    }

    /// Up to `max` live references without taking them: a plain queue's
    /// in the order they would be handed out, a FIFO queue's oldest first
    /// whatever their group. Costs the returned (redelivered) references
    /// of the lanes looked at and, for FIFO, the head of each group (kept
    /// to the `max` oldest as it goes), never the whole queue.
    pub(super) fn peek(&self, max: usize, valid: &mut impl FnMut(Ref) -> bool) -> Vec<Ref> {
        let mut out = Vec::with_capacity(max.min(128));
        match self {
            ReadyIndex::Plain(p) => {
                for lane in p.lanes.iter().rev() {
                    if out.len() >= max {
                        break;
                    }
                    let mut returned: Vec<Ref> = lane
                        .returned
                        .iter()
                        .map(|Reverse(r)| *r)
                        .filter(|r| valid(*r))
                        .collect();
                    returned.sort_unstable();
                    let mut returned = returned.into_iter().peekable();
                    let mut fresh = lane.fresh.iter().copied().filter(|r| valid(*r)).peekable();
                    while out.len() < max {
                        let r = match (fresh.peek(), returned.peek()) {
                            (Some(f), Some(r)) if r.0 < f.0 => returned.next(),
                            (Some(_), _) => fresh.next(),
                            (None, _) => returned.next(),
                        };
                        match r {
                            Some(r) => out.push(r),
                            None => break,
                        }
                    }
                }
            }
            ReadyIndex::Grouped(g) => {
                // The `max` oldest seen so far, youngest on top.
                let mut oldest: BinaryHeap<Ref> = BinaryHeap::with_capacity(max + 1);
                for grp in g.groups.values() {
                    for r in grp.ready.iter().copied().filter(|r| valid(*r)) {
                        if oldest.len() == max && oldest.peek().is_some_and(|top| *top < r) {
                            // The group's later messages are younger still.
                            break;
                        }
                        oldest.push(r);
                        if oldest.len() > max {
                            oldest.pop();
                        }
                    }
                }
                out = oldest.into_sorted_vec();
            }
        }
        out
    }

    /// How many references the index holds, stale ones included.
    pub(super) fn refs(&self) -> usize {
        match self {
            ReadyIndex::Plain(p) => p.refs(),
            ReadyIndex::Grouped(g) => g.refs(),
        }
    }

    /// Drops stale references (called when they outnumber live ones).
    pub(super) fn compact(&mut self, valid: &mut impl FnMut(Ref) -> bool) {
        match self {
            ReadyIndex::Plain(p) => p.lanes.iter_mut().for_each(|l| l.retain(valid)),
            ReadyIndex::Grouped(g) => {
                for grp in g.groups.values_mut() {
                    grp.ready.retain(|r| valid(*r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_messages_come_back_before_younger_ones() {
        let mut p = PlainIndex::new(0);
        for s in 1..=3 {
            p.push((s, s as usize), 0, false);
        }
        let mut all = |_| true;
        assert_eq!(p.pop(&mut all), Some((1, 1)));
        assert_eq!(p.pop(&mut all), Some((2, 2)));
        p.push((1, 1), 0, true);
        assert_eq!(p.pop(&mut all), Some((1, 1)));
        assert_eq!(p.pop(&mut all), Some((3, 3)));
        assert_eq!(p.pop(&mut all), None);
    }

    #[test]
    fn higher_priority_first_and_stale_refs_skipped() {
        let mut p = PlainIndex::new(5);
        p.push((1, 1), 0, false);
        p.push((2, 2), 5, false);
        p.push((3, 3), 9, false); // capped to 5
        let mut not_two = |r: Ref| r.0 != 2;
        assert_eq!(p.pop(&mut not_two), Some((3, 3)));
        assert_eq!(p.pop(&mut not_two), Some((1, 1)));
    }

    #[test]
    fn peek_shows_the_hand_out_order_and_takes_nothing() {
        let mut r = ReadyIndex::new(false, 1);
        r.push((1, 1), 0, None, false);
        r.push((2, 2), 1, None, false);
        r.push((4, 4), 0, None, false);
        r.push((3, 3), 0, None, true);
        let mut not_four = |r: Ref| r.0 != 4;
        assert_eq!(r.peek(10, &mut not_four), vec![(2, 2), (1, 1), (3, 3)]);
        assert_eq!(r.peek(2, &mut not_four), vec![(2, 2), (1, 1)]);
        assert_eq!(r.refs(), 4);

        let mut g = ReadyIndex::new(true, 0);
        g.push((5, 5), 0, Some("b"), false);
        g.push((1, 1), 0, Some("a"), false);
        g.push((7, 7), 0, Some("a"), false);
        let mut all = |_| true;
        assert_eq!(g.peek(2, &mut all), vec![(1, 1), (5, 5)]);
    }

    #[test]
    fn groups_block_while_in_flight() {
        let mut g = GroupIndex::default();
        g.push((1, 1), "a", false);
        g.push((2, 2), "a", false);
        g.push((3, 3), "b", false);
        let mut all = |_| true;
        let mut out = Vec::new();
        g.pop_batch(1, true, &mut all, &mut out);
        assert_eq!(out, vec![(1, 1)]);
        out.clear();
        g.pop_batch(10, true, &mut all, &mut out);
        assert_eq!(out, vec![(3, 3)], "group a is blocked");
        g.release("a");
        out.clear();
        g.pop_batch(10, true, &mut all, &mut out);
        assert_eq!(out, vec![(2, 2)]);
    }
}
