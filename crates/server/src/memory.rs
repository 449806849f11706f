//! The memory budget: when message bodies held in memory exceed it,
//! journaled messages are dropped from memory (they are read back from the
//! journal when delivered), from the queues holding the most first
//! (`Broker::evict_to`).

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;

use crate::alarms::{Alarms, Resource};

/// How often resident memory is checked against the budget.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Below this share of the high watermark, a memory alarm clears.
const CLEAR_BELOW: f64 = 0.9;

/// The default memory high watermark: 40% of the machine's memory, as
/// RabbitMQ's default `vm_memory_high_watermark`.
pub fn default_high_watermark() -> u64 {
    let machine = meminfo_kib("MemTotal:").map(|kib| kib * 1024);
    // In a container, the cgroup's limit is the memory there is.
    let limit = match (machine, cgroup_limit()) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    };
    limit.map_or(u64::MAX, |bytes| bytes / 5 * 2)
}

/// cgroup v2's memory.max (or v1's limit), when one is set.
fn cgroup_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    .filter(|&b| b < 1 << 60)
}

fn meminfo_kib(key: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// This process's resident memory.
pub fn resident() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
    .map(|k| k * 1024)
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises the broker's resource alarm while resident memory is above the
/// high watermark (publishers are held back; consumers drain), and clears
/// it once memory is back under 90% of it.
fn check_watermark(alarms: &Alarms, high: u64, alarmed: &mut bool) {
    let Some(rss) = resident() else {
        return;
    };
    let mib = |b: u64| b / (1024 * 1024);
    if !*alarmed && rss > high {
        *alarmed = true;
        alarms.set(
            Resource::Memory,
            Some(format!(
                "memory: {} MiB resident, above the high watermark of {} MiB",
                mib(rss),
                mib(high)
            )),
        );
    } else if *alarmed && (rss as f64) < high as f64 * CLEAR_BELOW {
        *alarmed = false;
        alarms.set(Resource::Memory, None);
    }
}

pub fn spawn(
    broker: Arc<Broker>,
    alarms: Arc<Alarms>,
    budget: u64,
    high_watermark: u64,
    reclaim: Option<fn()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut alarmed = false;
        loop {
            tick.tick().await;
            if alarmed && let Some(reclaim) = reclaim {
                // An allocator frees lazily, on later calls by the thread
                // that freed: after a purge or a queue deletion the threads
                // may be idle, and the alarm would never see memory fall.
                let _ = tokio::task::spawn_blocking(reclaim).await;
            }
            check_watermark(&alarms, high_watermark, &mut alarmed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields_and_raises_and_clears_the_alarm() {
        assert_eq!(
            kib_field("MemTotal:   24000 kB\nX: 1", "MemTotal:"),
            Some(24000)
        );
        assert!(resident().is_some_and(|r| r > 0));
        assert!(default_high_watermark() > 0);
        let broker = Broker::in_memory();
        let alarms = Alarms::new(Arc::clone(&broker));
        let alarm = broker.alarm();
        let mut alarmed = false;
        check_watermark(&alarms, 1, &mut alarmed);
        assert!(alarmed && alarm.borrow().is_some(), "1 byte: always above");
        check_watermark(&alarms, u64::MAX, &mut alarmed);
        assert!(!alarmed && alarm.borrow().is_none());
    }
}
