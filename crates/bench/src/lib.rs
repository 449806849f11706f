//! `ferry bench`: a load generator for any AMQP 0-9-1 or Kafka broker or
//! SQS endpoint — ferry or another — that checks what it measures.
//!
//! Every message carries its send time and its producer's sequence
//! number, so the run reports end-to-end latency (an HDR histogram) and
//! counts lost and duplicated messages; a run with either fails. The
//! report is a table, JSON (`--json`) and a picture (`--svg`), with the
//! CPU time of the generator and, given its pid, of the broker, so results
//! compare per broker CPU-second on a machine where both share the cores.
//!
//! - [`options`]: the scenario.
//! - `amqp`: a lean client on ferry's AMQP codec, pre-encoded publishes.
//! - `sqs`: the SQS JSON protocol over keep-alive HTTP/1.1 connections.
//! - `kafka`: Produce and Fetch on the `kafka-protocol` crate's codecs.
//! - [`stats`], [`report`]: stamps, ledgers, histograms, the report.
//! - [`sink`]: a null AMQP broker, to show the generator's own limit.

mod amqp;
mod cpu;
mod kafka;
pub mod options;
pub mod report;
pub mod sink;
mod sqs;
pub mod stats;
mod svg;

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use thiserror::Error;
use tokio::sync::watch;

pub use options::{Options, Protocol};
pub use report::Report;

use report::{Cpu, Latency, Sample, latency_curve};
use stats::{Clock, Counters, Ledger, STAMP_LEN, latency_histogram};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("a load task failed: {0}")]
    Task(String),
}

/// What every load task shares.
#[derive(Clone)]
pub struct Ctx {
    pub url: String,
    pub opts: Arc<Options>,
    pub counters: Arc<Counters>,
    pub clock: Clock,
    /// Producers stop when this turns true.
    pub stop: watch::Receiver<bool>,
    /// Consumers stop when this turns true (after the drain).
    pub done: watch::Receiver<bool>,
}

pub struct ProducerResult {
    pub sent: u64,
    /// The messages the broker took (confirmed, or written without confirms).
    pub accepted: Ledger,
    /// Published but never confirmed nor nacked by the end.
    pub unconfirmed: u64,
    /// Publish to confirm, µs (with confirms).
    pub confirm_latency: Option<Histogram<u64>>,
}

pub struct ConsumerResult {
    pub histogram: Histogram<u64>,
    pub ledger: Ledger,
}

/// How long after the producers stop consumers may take to catch up.
const DRAIN_IDLE: Duration = Duration::from_secs(10);
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// Runs a scenario and reports it (also to the JSON and SVG files asked for).
pub async fn run(protocol: Protocol, opts: Options) -> Result<Report, BenchError> {
    let min_size = match protocol {
        Protocol::Amqp | Protocol::Kafka => STAMP_LEN,
        Protocol::Sqs => 2 * STAMP_LEN,
    };
    if opts.size < min_size {
        return Err(BenchError::Usage(format!(
            "--size must be at least {min_size} bytes for {protocol:?} (the body carries a stamp)"
        )));
    }
    if opts.producers == 0 && opts.consumers == 0 {
        return Err(BenchError::Usage(
            "nothing to do: no producers and no consumers".into(),
        ));
    }
    if opts.producers > usize::from(u16::MAX) || opts.queues == 0 {
        return Err(BenchError::Usage(
            "--producers must be at most 65535 and --queues at least 1".into(),
        ));
    }
    if protocol == Protocol::Sqs && !(1..=10).contains(&opts.batch) {
        return Err(BenchError::Usage(
            "--batch must be 1 to 10 (SQS's limit)".into(),
        ));
    }
    let url = opts.url.clone().unwrap_or_else(|| match protocol {
        Protocol::Amqp => amqp::DEFAULT_URL.to_owned(),
        Protocol::Sqs => sqs::DEFAULT_URL.to_owned(),
        Protocol::Kafka => kafka::DEFAULT_URL.to_owned(),
    });
    // Fresh queues for every run: SQS refuses to recreate a queue deleted
    // less than a minute ago, and leftovers of an earlier run must not count.
    let mut opts = opts;
    opts.queue_prefix = format!("{}-{:x}", opts.queue_prefix, run_id());
    let (stop_tx, stop) = watch::channel(false);
    let (done_tx, done) = watch::channel(false);
    let ctx = Ctx {
        url: url.clone(),
        opts: Arc::new(opts.clone()),
        counters: Arc::new(Counters::default()),
        clock: Clock::new(),
        stop,
        done,
    };
    match protocol {
        Protocol::Amqp => amqp::setup(&ctx).await?,
        Protocol::Sqs => sqs::setup(&ctx).await?,
        Protocol::Kafka => kafka::setup(&ctx).await?,
    }
    let cpu_start = (
        cpu::cpu_seconds(None),
        opts.broker_pid.and_then(|p| cpu::cpu_seconds(Some(p))),
    );
    let ctx = Ctx {
        clock: Clock::new(),
        ..ctx
    };

    let spawn_consumers = |ctx: &Ctx| -> Vec<_> {
        (0..opts.consumers)
            .map(|i| {
                let queue = opts.queue_name(i % opts.queues);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    match protocol {
                        Protocol::Amqp => amqp::consumer(ctx, queue).await,
                        Protocol::Sqs => sqs::consumer(ctx, queue).await,
                        Protocol::Kafka => kafka::consumer(ctx, i).await,
                    }
                })
            })
            .collect()
    };
    let mut consumers = if opts.replay {
        Vec::new()
    } else {
        spawn_consumers(&ctx)
    };
    let producers: Vec<_> = (0..opts.producers)
        .map(|p| {
            let queue = opts.queue_name(p % opts.queues);
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match protocol {
                    Protocol::Amqp => amqp::producer(ctx, p as u16, queue).await,
                    Protocol::Sqs => sqs::producer(ctx, p as u16, queue).await,
                    Protocol::Kafka => kafka::producer(ctx, p as u16, queue).await,
                }
            })
        })
        .collect();

    let progress = progress_bar(opts.quiet);
    let mut series = Vec::new();
    let mut sampler = Sampler::new(&ctx);
    let deadline = ctx.clock.elapsed_s() + opts.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let producers_done = async {
        let mut results = Vec::new();
        for p in producers {
            results.push(p.await);
        }
        results
    };
    tokio::pin!(producers_done);
    let producer_results = loop {
        tokio::select! {
            r = &mut producers_done => break r,
            _ = tick.tick() => {
                sampler.sample(&ctx, &mut series, &progress);
                if opts.count.is_none() && ctx.clock.elapsed_s() >= deadline {
                    let _ = stop_tx.send(true);
                }
            }
        }
    };
    let publish_s = ctx.clock.elapsed_s();
    let mut accepted = Ledger::default();
    let mut sent = 0;
    let mut unconfirmed = 0;
    let mut confirm_latency: Option<Histogram<u64>> = None;
    let mut failures = Vec::new();
    for r in producer_results {
        match r {
            Ok(Ok(p)) => {
                sent += p.sent;
                unconfirmed += p.unconfirmed;
                accepted.merge(&p.accepted);
                if let Some(h) = p.confirm_latency {
                    let _ = confirm_latency
                        .get_or_insert_with(latency_histogram)
                        .add(&h);
                }
            }
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    // A replay's consumers start now, on what was kept.
    let consume_start = if opts.replay {
        consumers = spawn_consumers(&ctx);
        ctx.clock.elapsed_s()
    } else {
        0.0
    };
    // Let the consumers catch up: until everything accepted has arrived,
    // or nothing arrives for a while.
    let expected = accepted.count();
    let drain_start = ctx.clock.elapsed_s();
    let mut last = (Counters::get(&ctx.counters.received), ctx.clock.elapsed_s());
    if opts.consumers > 0 {
        loop {
            tick.tick().await;
            sampler.sample(&ctx, &mut series, &progress);
            let now = ctx.clock.elapsed_s();
            let received = Counters::get(&ctx.counters.received);
            if received >= expected {
                break;
            }
            if received != last.0 {
                last = (received, now);
            }
            if now - last.1 > DRAIN_IDLE.as_secs_f64()
                || now - drain_start > DRAIN_MAX.as_secs_f64()
            {
                break;
            }
        }
    }
    sampler.sample_if(&ctx, &mut series, &progress, 0.0);
    let elapsed_s = ctx.clock.elapsed_s();
    let _ = done_tx.send(true);
    let mut histogram = latency_histogram();
    let mut received_ledger = Ledger::default();
    for c in consumers {
        match c.await {
            Ok(Ok(r)) => {
                let _ = histogram.add(&r.histogram);
                received_ledger.merge(&r.ledger);
            }
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    progress.finish_and_clear();
    let cpu = cpu_report(
        cpu_start,
        opts.broker_pid,
        Counters::get(&ctx.counters.received),
    );
    match protocol {
        _ if opts.keep_queues => {}
        Protocol::Amqp => {
            let _ = amqp::teardown(&ctx).await;
        }
        Protocol::Sqs => {
            let _ = sqs::teardown(&ctx).await;
        }
        Protocol::Kafka => {
            let _ = kafka::teardown(&ctx).await;
        }
    }
    for f in &failures {
        tracing::error!("{f}");
    }
    let received = Counters::get(&ctx.counters.received);
    let lost = if opts.consumers > 0 {
        received_ledger.missing_from(&accepted)
    } else {
        0
    };
    let errors = Counters::get(&ctx.counters.errors) + failures.len() as u64;
    let nacked = Counters::get(&ctx.counters.nacked);
    let report = Report {
        protocol,
        url,
        options: opts.clone(),
        elapsed_s,
        publish_s,
        sent,
        confirmed: Counters::get(&ctx.counters.confirmed),
        nacked,
        received,
        lost,
        duplicated: received_ledger.duplicates,
        errors,
        sent_per_s: sent as f64 / publish_s.max(1e-9),
        received_per_s: received as f64 / (elapsed_s - consume_start).max(1e-9),
        received_mb_per_s: received as f64 * opts.size as f64
            / (elapsed_s - consume_start).max(1e-9)
            / 1e6,
        latency_us: Latency::of(&histogram),
        confirm_latency_us: confirm_latency.as_ref().map(Latency::of),
        cpu,
        series,
        latency_curve: latency_curve(&histogram),
        // A publish the broker refused (nacked) fails the run too.
        passed: lost == 0
            && received_ledger.duplicates == 0
            && errors == 0
            && unconfirmed == 0
            && nacked == 0,
    };
    if let Some(path) = &opts.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::Usage(format!("encoding the report: {e}")))?;
        std::fs::write(path, json)?;
    }
    if let Some(path) = &opts.svg {
        std::fs::write(path, svg::render(&report))?;
    }
    Ok(report)
}

/// A short id, different for every run.
fn run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id().wrapping_mul(2_654_435_761) ^ nanos
}

fn cpu_report(start: (Option<f64>, Option<f64>), pid: Option<u32>, received: u64) -> Cpu {
    let generator_s = match (start.0, cpu::cpu_seconds(None)) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let broker_s = match (start.1, pid.and_then(|p| cpu::cpu_seconds(Some(p)))) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Cpu {
        generator_s,
        broker_s,
        received_per_broker_cpu_s: broker_s.filter(|s| *s > 0.0).map(|s| received as f64 / s),
    }
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar
}

/// Per-second rates for the time series and the live line.
struct Sampler {
    at: f64,
    sent: u64,
    received: u64,
}

impl Sampler {
    fn new(ctx: &Ctx) -> Self {
        Sampler {
            at: ctx.clock.elapsed_s(),
            sent: 0,
            received: 0,
        }
    }

    /// Records the rates since the last sample, once a second (or now, at
    /// the end of the run, for the part of a second left).
    fn sample(&mut self, ctx: &Ctx, series: &mut Vec<Sample>, bar: &indicatif::ProgressBar) {
        self.sample_if(ctx, series, bar, 1.0);
    }

    fn sample_if(
        &mut self,
        ctx: &Ctx,
        series: &mut Vec<Sample>,
        bar: &indicatif::ProgressBar,
        min_s: f64,
    ) {
        let now = ctx.clock.elapsed_s();
        if now - self.at < min_s || now <= self.at {
            return;
        }
        let sent = Counters::get(&ctx.counters.sent);
        let received = Counters::get(&ctx.counters.received);
        let dt = now - self.at;
        let s = Sample {
            t_s: now,
            sent_per_s: (sent - self.sent) as f64 / dt,
            received_per_s: (received - self.received) as f64 / dt,
        };
        bar.set_message(format!(
            "sent {:.0}/s  received {:.0}/s  latency {} µs  (total sent {sent}, received {received})",
            s.sent_per_s,
            s.received_per_s,
            Counters::get(&ctx.counters.last_latency_us)
        ));
        bar.tick();
        series.push(s);
        (self.at, self.sent, self.received) = (now, sent, received);
    }
}
