//! The result of a run: counts, rates, latency percentiles, CPU time, and
//! throughput over time; shown as a table, written as JSON.

use comfy_table::Table;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::options::{Options, Protocol};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub url: String,
    pub options: Options,
    /// Seconds from the first publish to the last delivery counted.
    pub elapsed_s: f64,
    /// Seconds producers published.
    pub publish_s: f64,
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub errors: u64,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    pub received_mb_per_s: f64,
    pub latency_us: Latency,
    /// Publish to confirm (AMQP with confirms).
    pub confirm_latency_us: Option<Latency>,
    pub cpu: Cpu,
    pub series: Vec<Sample>,
    /// (percentile, latency in µs), for drawing the distribution.
    pub latency_curve: Vec<(f64, u64)>,
    /// No loss, no duplicates, no errors.
    pub passed: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    pub samples: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
            samples: h.len(),
        }
    }
}

/// The percentile curve of a histogram, for the SVG.
pub fn latency_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
    ]
    .iter()
    .map(|&p| (p, h.value_at_percentile(p)))
    .collect()
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    /// CPU seconds this load generator used.
    pub generator_s: f64,
    /// CPU seconds the broker used (with --broker-pid).
    pub broker_s: Option<f64>,
    /// Messages received per broker CPU-second.
    pub received_per_broker_cpu_s: Option<f64>,
}

/// Rates over one second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub sent_per_s: f64,
    pub received_per_s: f64,
}

impl Report {
    /// The human table.
    pub fn table(&self) -> String {
        let mut t = Table::new();
        t.set_header(vec!["", "value"]);
        let o = &self.options;
        let what = if self.protocol == Protocol::Kafka {
            // Kafka records are always stored; what varies is the answer.
            format!(
                ", {} partition(s) per topic, acks={}, {} record(s) per batch, {} request(s) in flight",
                o.partitions,
                o.acks,
                o.batch.max(1),
                if o.confirm == 0 { 5 } else { o.confirm }
            )
        } else {
            format!(
                "{}{}",
                if o.persistent {
                    ", persistent"
                } else {
                    ", transient"
                },
                if o.confirm > 0 {
                    format!(", confirms (window {})", o.confirm)
                } else {
                    String::new()
                }
            )
        };
        let scenario = format!(
            "{:?} {} B, {} producer(s), {} consumer(s), {} queue(s){what}{}",
            self.protocol,
            o.size,
            o.producers,
            o.consumers,
            o.queues,
            if o.rate > 0 {
                format!(", {} msg/s", o.rate)
            } else {
                String::new()
            },
        );
        let rows: Vec<(&str, String)> = vec![
            ("broker", self.url.clone()),
            ("scenario", scenario),
            ("sent", format!("{} ({:.0}/s)", self.sent, self.sent_per_s)),
            (
                "received",
                format!(
                    "{} ({:.0}/s, {:.1} MB/s)",
                    self.received, self.received_per_s, self.received_mb_per_s
                ),
            ),
            (
                "latency µs p50/p90/p99/p99.9/max",
                format!(
                    "{} / {} / {} / {} / {}",
                    self.latency_us.p50,
                    self.latency_us.p90,
                    self.latency_us.p99,
                    self.latency_us.p999,
                    self.latency_us.max
                ),
            ),
            (
                "confirm latency µs p50/p99/p99.9/max",
                self.confirm_latency_us
                    .as_ref()
                    .map_or("-".to_owned(), |l| {
                        format!("{} / {} / {} / {}", l.p50, l.p99, l.p999, l.max)
                    }),
            ),
            (
                "lost / duplicated / errors / nacked",
                format!(
                    "{} / {} / {} / {}",
                    self.lost, self.duplicated, self.errors, self.nacked
                ),
            ),
            (
                "CPU s: generator / broker",
                format!(
                    "{:.2} / {}",
                    self.cpu.generator_s,
                    self.cpu
                        .broker_s
                        .map_or("-".to_owned(), |b| format!("{b:.2}"))
                ),
            ),
            (
                "received per broker CPU-second",
                self.cpu
                    .received_per_broker_cpu_s
                    .map_or("-".to_owned(), |r| format!("{r:.0}")),
            ),
            (
                "result",
                if self.passed {
                    "passed".to_owned()
                } else {
                    "FAILED (loss, duplicates or errors)".to_owned()
                },
            ),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_owned(), v]);
        }
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::latency_histogram;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn report(lost: u64) -> Report {
        let mut h = latency_histogram();
        for us in [100, 200, 300, 5_000] {
            h.record(us).expect("record");
        }
        let options = Cli::parse_from(["bench", "--size", "32", "--confirm", "10"]).options;
        Report {
            protocol: Protocol::Amqp,
            url: "amqp://127.0.0.1:1/%2f".into(),
            options,
            elapsed_s: 2.0,
            publish_s: 1.0,
            sent: 4,
            confirmed: 4,
            nacked: 0,
            received: 4 - lost,
            lost,
            duplicated: 0,
            errors: 0,
            sent_per_s: 4.0,
            received_per_s: 2.0,
            received_mb_per_s: 0.0,
            latency_us: Latency::of(&h),
            confirm_latency_us: Some(Latency::of(&h)),
            cpu: Cpu::default(),
            series: vec![Sample {
                t_s: 1.0,
                sent_per_s: 4.0,
                received_per_s: 4.0,
            }],
            latency_curve: latency_curve(&h),
            passed: lost == 0,
        }
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let r = report(0);
        assert_eq!(r.latency_us.samples, 4);
        assert_eq!(r.latency_us.p50, 200);
        assert!(r.latency_us.max >= 5_000);
        assert_eq!(r.latency_curve.first().map(|c| c.0), Some(0.0));
        assert!(Latency::of(&latency_histogram()).samples == 0);
    }

    #[test]
    fn the_table_says_whether_the_run_passed() {
        let ok = report(0).table();
        assert!(ok.contains("passed") && ok.contains("200"), "{ok}");
        let lost = report(1).table();
        assert!(lost.contains("FAILED"), "{lost}");
    }

    #[test]
    fn the_picture_draws_both_charts() {
        let svg = crate::svg::render(&report(0));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "sent, received, latency"
        );
    }
}
