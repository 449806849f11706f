//! What a bench run does: the command-line options of `ferry bench`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Any AMQP 0-9-1 broker (ferry, RabbitMQ, LavinMQ, ...).
    Amqp,
    /// Any SQS endpoint (ferry, moto, ...), over the AWS JSON protocol.
    Sqs,
    /// Any Kafka-protocol broker (ferry, tansu, Kafka, ...).
    Kafka,
}

#[derive(Clone, Debug, Args, Serialize)]
pub struct Options {
    /// The broker: amqp://user:pass@host:port/vhost, or the SQS endpoint
    /// http://host:port [default: ferry's default listener for the protocol].
    #[arg(long)]
    pub url: Option<String>,

    /// Publishing connections (or SQS senders).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,

    /// Consuming connections (or SQS receivers).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,

    /// Queues (Kafka: topics); producers and consumers are spread over
    /// them round-robin.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,

    /// Partitions of each topic (Kafka): a producer sends to them in
    /// turn, a topic's consumers split them.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,

    /// Kafka producer acks: all (answered once durable), 1 or 0 (no answer).
    #[arg(long, default_value = "all")]
    pub acks: String,

    /// Message body size in bytes (at least 16: the body carries a
    /// timestamp and a sequence number).
    #[arg(long, default_value_t = 16)]
    pub size: usize,

    /// Total publish rate in messages per second; 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// How long producers publish, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Stop after this many messages in total (instead of the duration).
    #[arg(long)]
    pub count: Option<u64>,

    /// Persistent messages on durable queues (AMQP delivery-mode 2).
    #[arg(long)]
    pub persistent: bool,

    /// Publisher confirms with at most this many unconfirmed messages per
    /// producer; 0: no confirms (AMQP). Kafka: produce requests in flight
    /// per producer (0: 5, librdkafka's default).
    #[arg(long, default_value_t = 0)]
    pub confirm: usize,

    /// Unacked deliveries per consumer (AMQP basic.qos); 0: unlimited.
    #[arg(long, default_value_t = 100)]
    pub prefetch: u16,

    /// Consumers take messages with no-ack (AMQP) instead of acking them.
    #[arg(long)]
    pub auto_ack: bool,

    /// Ack with `multiple` every this many deliveries (AMQP, manual acks).
    #[arg(long, default_value_t = 1)]
    pub multi_ack_every: usize,

    /// Messages per SQS batch call (SendMessageBatch, ReceiveMessage,
    /// DeleteMessageBatch); 1 uses the single-message calls. Kafka:
    /// records per produce request (one RecordBatch).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,

    /// SQS FIFO queues (`.fifo` names): each message gets an explicit
    /// deduplication id and one of 16 message groups per producer.
    #[arg(long)]
    pub fifo: bool,

    /// Leave the queues when done (they are deleted otherwise), so what
    /// they keep (deduplication windows, say) can be looked at.
    #[arg(long)]
    pub keep_queues: bool,

    /// Consumers start only once the producers are done, and read what
    /// was kept from the start (Kafka: a replay, from the page cache); the
    /// receive rate is then over the consuming time alone.
    #[arg(long)]
    pub replay: bool,

    /// Queue names start with this.
    #[arg(long, default_value = "ferry-bench")]
    pub queue_prefix: String,

    /// Also report this process's CPU time (the broker's, from /proc).
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Draw throughput over time and the latency distribution here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// No live progress line (for scripts and logs).
    #[arg(long)]
    pub quiet: bool,
}

impl Options {
    pub fn queue_name(&self, i: usize) -> String {
        let suffix = if self.fifo { ".fifo" } else { "" };
        format!("{}-{i}{suffix}", self.queue_prefix)
    }

    /// Per-producer rate, messages per second (0: unlimited).
    pub fn producer_rate(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.rate as f64 / self.producers.max(1) as f64
        }
    }

    /// Per-producer message count, if a total count was asked for.
    pub fn producer_count(&self, producer: usize) -> Option<u64> {
        self.count.map(|c| {
            let n = self.producers.max(1) as u64;
            c / n + u64::from((producer as u64) < c % n)
        })
    }
}
