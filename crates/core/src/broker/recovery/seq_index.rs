//! Sequence number → slab slot for one queue while replay runs.
//!
//! A queue's records come in sequence order (it journals under its own
//! lock), so almost every insert goes to the end of a sorted vector and a
//! lookup is a binary search. The exception is a copy written by
//! compaction whose original was in a file since deleted: it arrives after
//! younger messages, and goes to a small ordered map beside the vector.
//! Removals leave tombstones, swept once they are half the vector.

use std::collections::BTreeMap;

/// A removed entry's slot.
const GONE: usize = usize::MAX;

#[derive(Debug, Default)]
pub(super) struct SeqIndex {
    sorted: Vec<(u64, usize)>,
    late: BTreeMap<u64, usize>,
    tombstones: usize,
}

impl SeqIndex {
    fn position(&self, seq: u64) -> Option<usize> {
        self.sorted
            .binary_search_by_key(&seq, |e| e.0)
            .ok()
            .filter(|&i| self.sorted[i].1 != GONE)
    }

    pub(super) fn get(&self, seq: u64) -> Option<usize> {
        match self.position(seq) {
            Some(i) => Some(self.sorted[i].1),
            None => self.late.get(&seq).copied(),
        }
    }

    /// Records where `seq` is (it is not in the index yet).
    pub(super) fn insert(&mut self, seq: u64, slot: usize) {
        if self.sorted.last().is_none_or(|l| l.0 < seq) {
            self.sorted.push((seq, slot));
        } else {
            self.late.insert(seq, slot);
        }
    }

    pub(super) fn remove(&mut self, seq: u64) -> Option<usize> {
        if let Some(i) = self.position(seq) {
            let slot = std::mem::replace(&mut self.sorted[i].1, GONE);
            self.tombstones += 1;
            if self.tombstones * 2 > self.sorted.len() {
                self.sorted.retain(|e| e.1 != GONE);
                self.sorted.shrink_to_fit();
                self.tombstones = 0;
            }
            return Some(slot);
        }
        self.late.remove(&seq)
    }

    /// Every live slot, in sequence order.
    pub(super) fn into_sequence_order(self) -> impl Iterator<Item = usize> {
        let mut sorted = self.sorted.into_iter().filter(|e| e.1 != GONE).peekable();
        let mut late = self.late.into_iter().peekable();
        std::iter::from_fn(move || {
            let take_late = match (sorted.peek(), late.peek()) {
                (Some(s), Some(l)) => l.0 < s.0,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            let next = if take_late {
                late.next()
            } else {
                sorted.next()
            };
            next.map(|(_, slot)| slot)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_copies_and_removals_keep_sequence_order() {
        let mut ix = SeqIndex::default();
        for seq in [10, 11, 12, 13] {
            ix.insert(seq, seq as usize);
        }
        // Copies of older messages whose originals were in a deleted file.
        ix.insert(3, 103);
        ix.insert(5, 105);
        assert_eq!(ix.get(12), Some(12));
        assert_eq!(ix.get(5), Some(105));
        assert_eq!(ix.remove(11), Some(11));
        assert_eq!(ix.remove(11), None);
        assert_eq!(ix.get(11), None);
        assert_eq!(ix.remove(3), Some(103));
        let order: Vec<usize> = ix.into_sequence_order().collect();
        assert_eq!(order, vec![105, 10, 12, 13]);
    }

    #[test]
    fn tombstones_are_swept() {
        let mut ix = SeqIndex::default();
        for seq in 0..100 {
            ix.insert(seq, seq as usize);
        }
        for seq in 0..90 {
            assert_eq!(ix.remove(seq), Some(seq as usize));
        }
        assert!(ix.sorted.len() < 60, "swept: {}", ix.sorted.len());
        assert_eq!(ix.get(95), Some(95));
        assert_eq!(ix.into_sequence_order().count(), 10);
    }
}
