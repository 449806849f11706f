//! The memory budget: when message bodies held in memory exceed it,
//! journaled messages are dropped from memory (they are read back from the
//! journal when delivered), newest queues' worth first.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;

/// How often resident memory is checked against the budget.
const CHECK_EVERY: Duration = Duration::from_millis(200);

pub fn spawn(broker: Arc<Broker>, budget: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let b = Arc::clone(&broker);
            let evicted = tokio::task::spawn_blocking(move || {
                if b.resident_bytes() > budget {
                    b.evict_to(budget)
                } else {
                    0
                }
            })
            .await;
            match evicted {
                Ok(0) => {}
                Ok(n) => tracing::debug!(bytes = n, budget, "moved message bodies out of memory"),
                Err(_) => tracing::error!("memory budget task panicked"),
            }
        }
    })
}
