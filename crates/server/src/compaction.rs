//! Background compaction: when the journal's oldest segment is mostly dead,
//! copy its live messages forward so it (and the dead segments it pins) can
//! go; when dead segments wait only for FIFO deduplication windows, carry
//! their keys out so they go too. The work runs off the async runtime, a
//! few thousand messages per queue lock at a time, so publishers are not
//! stalled.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;
use ferry_storage::{Journal, segment_of};

/// How often the journal is checked for a sparse oldest segment.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub fn spawn(broker: Arc<Broker>, journal: Arc<Journal>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (b, j) = (Arc::clone(&broker), Arc::clone(&journal));
            if tokio::task::spawn_blocking(move || compact_once(&b, &j))
                .await
                .is_err()
            {
                tracing::error!("compaction task panicked");
            }
        }
    })
}

/// Copies the live messages of the oldest segment forward if it is sparse,
/// and carries deduplication keys out of dead segments. Returns how many
/// messages were copied.
pub fn compact_once(broker: &Broker, journal: &Journal) -> usize {
    let freed = journal.carry_dedup_windows();
    if freed > 0 {
        tracing::debug!(
            freed,
            "freed journal segments held only by deduplication windows"
        );
    }
    let Some(segment) = journal.sparse_oldest() else {
        return 0;
    };
    let moved = broker.relocate(&|loc| segment_of(loc) == segment);
    tracing::debug!(segment, moved, "compacted the oldest journal segment");
    moved
}
