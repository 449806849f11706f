//! Streams and consumer groups as operators see them, for the admin API
//! and the metrics: each partition's offsets and size, each group's
//! members, committed offsets and lag (how far the high watermark is past
//! the group's commit).

use std::sync::Arc;

use ferry_core::group::Groups;
use ferry_core::stream::{Stream, Streams};

/// The streams engine and its group coordinator, set once they are open.
#[derive(Clone)]
pub struct StreamsAndGroups {
    pub streams: Arc<Streams>,
    pub groups: Arc<Groups>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub index: u32,
    /// The oldest offset kept.
    pub log_start: u64,
    /// The offset the next record gets (what consumers can read up to).
    pub high_watermark: u64,
    pub bytes: u64,
}

pub fn partitions(s: &Stream) -> Vec<PartitionView> {
    s.partitions()
        .iter()
        .map(|p| {
            let high_watermark = p.high_watermark();
            PartitionView {
                index: p.index(),
                // Retention can move the start past a new segment's first
                // batches an instant before they are synced and the end
                // moves: never show a start past the end.
                log_start: p.log_start().min(high_watermark),
                high_watermark,
                bytes: p.size(),
            }
        })
        .collect()
}

/// One partition's committed offset for a group, and its lag. A commit
/// below the log start counts the records retention deleted too, as
/// `kafka-consumer-groups` counts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lag {
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    pub high_watermark: u64,
    /// Records past the commit (0 if the commit is at or past the end).
    pub lag: u64,
}

/// A group's committed offsets with their lag, by topic and partition
/// (partitions of topics that are gone are left out).
pub fn group_lag(sg: &StreamsAndGroups, namespace: &str, group: &str) -> Vec<Lag> {
    let mut out: Vec<Lag> = sg
        .groups
        .fetch(namespace, group, None)
        .into_iter()
        .filter_map(|(topic, partition, committed)| {
            // A negative commit (clients may commit -1) says nothing about
            // a position: left out, as Kafka's tools show "-".
            let committed = committed?.offset;
            if committed < 0 {
                return None;
            }
            let hw = sg
                .streams
                .get(namespace, &topic)?
                .partition(partition)?
                .high_watermark();
            let lag = hw.saturating_sub(u64::try_from(committed).unwrap_or(0));
            Some(Lag {
                topic,
                partition,
                committed,
                high_watermark: hw,
                lag,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}
