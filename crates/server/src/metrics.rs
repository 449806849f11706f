//! Prometheus metrics, served at `/metrics` on the admin listener.
//!
//! Counters and histograms that code updates as it goes (journal fsyncs
//! and bytes, connections) go through the `metrics` facade into one
//! recorder; the broker's state (queue depths and counts, memory) is read
//! at scrape time, so nothing is paid for it between scrapes. Per-queue
//! series can be turned off to keep cardinality bounded.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ferry_core::Broker;
use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of the fsync histogram, in seconds (50 µs to 1 s).
const FSYNC_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The process's one recorder (a recorder is global; tests start several
/// servers in one process).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("ferry_journal_fsync_seconds".into()),
                    FSYNC_BUCKETS,
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// What `/metrics` needs; the broker arrives once recovery is done.
pub struct Exporter {
    broker: OnceLock<Arc<Broker>>,
    streams: OnceLock<crate::streams_view::StreamsAndGroups>,
    started: Instant,
    per_queue: bool,
    memory_budget: u64,
    memory_high_watermark: u64,
}

impl Exporter {
    pub fn new(per_queue: bool, memory_budget: u64, memory_high_watermark: u64) -> Self {
        // Installed now, so counters from the start are kept.
        let _ = handle();
        Exporter {
            broker: OnceLock::new(),
            streams: OnceLock::new(),
            started: Instant::now(),
            per_queue,
            memory_budget,
            memory_high_watermark,
        }
    }

    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    pub fn set_streams(&self, engines: crate::streams_view::StreamsAndGroups) {
        let _ = self.streams.set(engines);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        // Both set gauges the recorder renders: before it does.
        let per_queue = self.refresh();
        let streams = self.streams_series();
        let mut text = handle().map(PrometheusHandle::render).unwrap_or_default();
        text.push_str(&per_queue);
        text.push_str(&streams);
        text
    }

    /// Drains what histograms gathered since the last time (call it
    /// periodically: without it, samples pile up between scrapes).
    pub fn upkeep(&self) {
        if let Some(h) = handle() {
            h.run_upkeep();
        }
    }

    /// Sets the global gauges; returns the per-queue series, written here
    /// rather than kept in the registry so a deleted queue's series go
    /// with it and a re-created queue's counters start over.
    fn refresh(&self) -> String {
        gauge!("ferry_uptime_seconds").set(self.started.elapsed().as_secs_f64());
        gauge!("ferry_memory_budget_bytes").set(self.memory_budget as f64);
        gauge!("ferry_memory_high_watermark_bytes").set(self.memory_high_watermark as f64);
        if let Some(rss) = crate::memory::resident() {
            gauge!("ferry_memory_resident_bytes").set(rss as f64);
        }
        let Some(broker) = self.broker.get() else {
            return String::new();
        };
        let mut series: Vec<Series> = PER_QUEUE
            .iter()
            .map(|(name, kind)| (*name, *kind, Vec::new()))
            .collect();
        gauge!("ferry_memory_alarm").set(if broker.alarm().borrow().is_some() {
            1.0
        } else {
            0.0
        });
        let mut totals = [0u64; 4];
        let mut queues = 0u64;
        let mut bodies = 0u64;
        for ns in broker.namespace_names() {
            for name in broker.queue_names(&ns).unwrap_or_default() {
                let Ok(q) = broker.queue(&ns, &name) else {
                    continue;
                };
                let s = q.stats();
                queues += 1;
                bodies += s.resident_bytes;
                totals[0] += s.ready;
                totals[1] += s.leased;
                totals[2] += s.delayed;
                totals[3] += s.consumers as u64;
                if !self.per_queue {
                    continue;
                }
                let labels = format!(
                    "{{namespace=\"{}\",queue=\"{}\"}}",
                    escape(&ns),
                    escape(&name)
                );
                let values = [
                    s.ready,
                    s.leased,
                    s.delayed,
                    s.bytes,
                    s.consumers as u64,
                    s.published,
                    s.delivered,
                    s.acked,
                    s.redelivered,
                    s.dead_lettered,
                    s.expired,
                ];
                for (slot, v) in series.iter_mut().zip(values) {
                    slot.2.push((labels.clone(), v));
                }
            }
        }
        gauge!("ferry_queues").set(queues as f64);
        gauge!("ferry_messages_ready").set(totals[0] as f64);
        gauge!("ferry_messages_unacked").set(totals[1] as f64);
        gauge!("ferry_messages_delayed").set(totals[2] as f64);
        gauge!("ferry_consumers").set(totals[3] as f64);
        gauge!("ferry_message_bodies_resident_bytes").set(bodies as f64);
        exposition(series)
    }
}

impl Exporter {
    /// Streams and groups: totals always; per partition, and each group's
    /// committed offset and lag per partition, unless per-queue series are
    /// off (they bound cardinality the same way).
    fn streams_series(&self) -> String {
        let Some(e) = self.streams.get() else {
            return String::new();
        };
        let all = e.streams.all();
        gauge!("ferry_streams").set(all.len() as f64);
        let namespaces = e.groups.namespaces();
        let groups: usize = namespaces.iter().map(|ns| e.groups.list(ns).len()).sum();
        gauge!("ferry_stream_groups").set(groups as f64);
        if !self.per_queue {
            return String::new();
        }
        let mut series: Vec<Series> = PER_PARTITION
            .iter()
            .map(|(name, kind)| (*name, *kind, Vec::new()))
            .collect();
        for s in &all {
            let meta = s.meta();
            for p in crate::streams_view::partitions(s) {
                let labels = format!(
                    "{{namespace=\"{}\",stream=\"{}\",partition=\"{}\"}}",
                    escape(&meta.namespace),
                    escape(&meta.name),
                    p.index
                );
                for (slot, v) in series
                    .iter_mut()
                    .zip([p.log_start, p.high_watermark, p.bytes])
                {
                    slot.2.push((labels.clone(), v));
                }
            }
        }
        let mut lag: Series = ("ferry_group_lag", "gauge", Vec::new());
        let mut committed: Series = ("ferry_group_committed_offset", "gauge", Vec::new());
        for ns in &namespaces {
            for g in e.groups.list(ns) {
                for l in crate::streams_view::group_lag(e, ns, &g.group) {
                    let labels = format!(
                        "{{namespace=\"{}\",group=\"{}\",stream=\"{}\",partition=\"{}\"}}",
                        escape(ns),
                        escape(&g.group),
                        escape(&l.topic),
                        l.partition
                    );
                    lag.2.push((labels.clone(), l.lag));
                    committed
                        .2
                        .push((labels, u64::try_from(l.committed).unwrap_or(0)));
                }
            }
        }
        series.push(lag);
        series.push(committed);
        exposition(series)
    }
}

/// The text format of `series` (those with values).
fn exposition(series: Vec<Series>) -> String {
    let mut out = String::new();
    for (name, kind, values) in series {
        if values.is_empty() {
            continue;
        }
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        for (labels, v) in values {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
        out.push('\n');
    }
    out
}

/// The per-partition series, in the order `streams_series` fills them.
const PER_PARTITION: [(&str, &str); 3] = [
    ("ferry_stream_partition_log_start_offset", "gauge"),
    ("ferry_stream_partition_high_watermark", "gauge"),
    ("ferry_stream_partition_bytes", "gauge"),
];

/// One per-queue metric: name, type, and (labels, value) per queue.
type Series = (&'static str, &'static str, Vec<(String, u64)>);

/// The per-queue series, in the order `refresh` fills them.
const PER_QUEUE: [(&str, &str); 11] = [
    ("ferry_queue_messages_ready", "gauge"),
    ("ferry_queue_messages_unacked", "gauge"),
    ("ferry_queue_messages_delayed", "gauge"),
    ("ferry_queue_bytes", "gauge"),
    ("ferry_queue_consumers", "gauge"),
    ("ferry_queue_published_total", "counter"),
    ("ferry_queue_delivered_total", "counter"),
    ("ferry_queue_acked_total", "counter"),
    ("ferry_queue_redelivered_total", "counter"),
    ("ferry_queue_dead_lettered_total", "counter"),
    ("ferry_queue_expired_total", "counter"),
];

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn deleted_queues_leave_the_metrics() {
        let broker = Broker::in_memory();
        let _ = broker.create_namespace("ns");
        let q = broker
            .declare_queue("ns", "gone", ferry_core::queue::QueueConfig::default())
            .expect("declare")
            .0
            .queue;
        let _ = broker
            .send(&q, ferry_core::Message::new("x"))
            .expect("send");
        let e = Exporter::new(true, 1, 2);
        e.set_broker(std::sync::Arc::clone(&broker));
        let text = e.render();
        assert!(
            text.contains("ferry_queue_messages_ready{namespace=\"ns\",queue=\"gone\"} 1"),
            "{text}"
        );
        let _ = broker
            .delete_queue("ns", "gone", false, false)
            .expect("delete");
        assert!(!e.render().contains("queue=\"gone\""));
    }
}
