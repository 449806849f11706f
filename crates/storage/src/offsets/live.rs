//! The live offsets: what applying every change written so far gives, and
//! how large a file holding only them would be (which decides compaction).

use std::collections::HashMap;

use ferry_core::group::{Committed, OffsetChange, OffsetKey};

use super::codec::{self, KeyRef};

/// One live offset and the size of its commit frame.
struct Entry {
    committed: Committed,
    size: u64,
}

/// Keyed by group first, so a `DeleteGroup` drops one entry instead of
/// scanning every key (and each key's strings are kept once).
#[derive(Default)]
pub(super) struct Live {
    /// (namespace, group) → (topic, partition) → offset. A group's map is
    /// never left empty: the last key's removal removes the group.
    groups: HashMap<(String, String), HashMap<(String, u32), Entry>>,
    /// The sum of the entries' sizes: the records of a compacted file.
    bytes: u64,
}

impl Live {
    /// Applies `change`, whose frame is `size` bytes (the size it has in
    /// a compacted file, for a `Commit`: the encoding is the same).
    pub fn apply(&mut self, change: OffsetChange, size: u64) {
        match change {
            OffsetChange::Commit(k, committed) => {
                let old = self
                    .groups
                    .entry((k.namespace, k.group))
                    .or_default()
                    .insert((k.topic, k.partition), Entry { committed, size });
                self.bytes += size;
                if let Some(old) = old {
                    self.bytes -= old.size;
                }
            }
            OffsetChange::Delete(k) => {
                let group = (k.namespace, k.group);
                let Some(keys) = self.groups.get_mut(&group) else {
                    return;
                };
                if let Some(old) = keys.remove(&(k.topic, k.partition)) {
                    self.bytes -= old.size;
                }
                if keys.is_empty() {
                    self.groups.remove(&group);
                }
            }
            OffsetChange::DeleteGroup { namespace, group } => {
                if let Some(keys) = self.groups.remove(&(namespace, group)) {
                    self.bytes -= keys.values().map(|e| e.size).sum::<u64>();
                }
            }
        }
    }

    /// The records' size in a compacted file (its header apart).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every live offset, sorted by key.
    pub fn sorted(&self) -> Vec<(OffsetKey, Committed)> {
        let mut all: Vec<(OffsetKey, Committed)> = self
            .groups
            .iter()
            .flat_map(|((namespace, group), keys)| {
                keys.iter().map(move |((topic, partition), e)| {
                    let key = OffsetKey {
                        namespace: namespace.clone(),
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (key, e.committed.clone())
                })
            })
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Appends one commit frame per live offset: `bytes()` of them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for ((namespace, group), keys) in &self.groups {
            for ((topic, partition), e) in keys {
                let key = KeyRef {
                    namespace,
                    group,
                    topic,
                    partition: *partition,
                };
                codec::put_commit(out, key, &e.committed);
            }
        }
    }
}
