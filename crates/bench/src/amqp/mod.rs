//! The AMQP load: producers publish pre-encoded messages, pipelined (with
//! a window of unconfirmed ones when confirms are on); consumers ack each
//! delivery (or every N with `multiple`), batching acks into one write per
//! read. One connection per producer and per consumer, as PerfTest does.

mod client;

use std::collections::VecDeque;
use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{AMQPClass, basic, confirm, queue};
use amq_protocol::types::FieldTable;
use ferry_amqp::codec::{FRAME_BODY, FRAME_END, Incoming, Output};

use hdrhistogram::Histogram;

use crate::stats::{Counters, Ledger, latency_histogram, read_stamp, stamp};
use crate::{BenchError, ConsumerResult, Ctx, ProducerResult};
use client::Client;

/// Messages encoded per write when nothing else limits it.
const BURST: usize = 64;

pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Declares the run's queues (durable when persistent) and empties them.
pub async fn setup(ctx: &Ctx) -> Result<(), BenchError> {
    let mut c = Client::connect(&ctx.url).await?;
    c.open_channel(1).await?;
    for i in 0..ctx.opts.queues {
        let name = ctx.opts.queue_name(i);
        c.call(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.as_str().into(),
                durable: ctx.opts.persistent,
                ..Default::default()
            })),
        )
        .await?;
        c.call(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
                queue: name.as_str().into(),
                nowait: false,
            })),
        )
        .await?;
    }
    c.close().await;
    Ok(())
}

/// Deletes the run's queues.
pub async fn teardown(ctx: &Ctx) -> Result<(), BenchError> {
    let mut c = Client::connect(&ctx.url).await?;
    c.open_channel(1).await?;
    for i in 0..ctx.opts.queues {
        c.call(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                queue: ctx.opts.queue_name(i).as_str().into(),
                ..Default::default()
            })),
        )
        .await?;
    }
    c.close().await;
    Ok(())
}

/// One publish, encoded once: method and header frames, then the body
/// frame's head; only the body changes from message to message.
struct Template {
    head: Vec<u8>,
    frame_max: usize,
}

impl Template {
    fn new(queue: &str, size: usize, persistent: bool, frame_max: u32) -> Self {
        let mut out = Output::default();
        out.method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: queue.into(),
                mandatory: false,
                immediate: false,
            })),
        );
        let props = AMQPProperties::default().with_delivery_mode(if persistent { 2 } else { 1 });
        // A content header for a body of `size` bytes; the body frames are
        // written by hand below, so encode an empty one and drop its body.
        let mut header = Output::default();
        header.content(1, props, &vec![0u8; size], frame_max);
        let mut head = out.pending().to_vec();
        let header_bytes = header.pending();
        // The header frame ends where the first body frame starts.
        let header_len = 7
            + u32::from_be_bytes([
                header_bytes[3],
                header_bytes[4],
                header_bytes[5],
                header_bytes[6],
            ]) as usize
            + 1;
        head.extend_from_slice(&header_bytes[..header_len]);
        Template {
            head,
            frame_max: frame_max as usize,
        }
    }

    fn write(&self, buf: &mut Vec<u8>, body: &[u8]) {
        buf.extend_from_slice(&self.head);
        for part in body.chunks(self.frame_max - 8) {
            buf.push(FRAME_BODY);
            buf.extend_from_slice(&1u16.to_be_bytes());
            buf.extend_from_slice(&(part.len() as u32).to_be_bytes());
            buf.extend_from_slice(part);
            buf.push(FRAME_END);
        }
    }
}

pub async fn producer(ctx: Ctx, id: u16, queue: String) -> Result<ProducerResult, BenchError> {
    let opts = &ctx.opts;
    let mut c = Client::connect(&ctx.url).await?;
    c.open_channel(1).await?;
    let window = opts.confirm;
    if window > 0 {
        c.call(
            1,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        )
        .await?;
    }
    let template = Template::new(&queue, opts.size, opts.persistent, c.frame_max);
    let limit = opts.producer_count(id as usize);
    let rate = opts.producer_rate();
    let mut body = vec![0u8; opts.size];
    let mut buf: Vec<u8> = Vec::with_capacity(BURST * (opts.size + 64));
    let mut pending = Pending {
        id,
        outstanding: VecDeque::new(),
        accepted: Ledger::default(),
        latency: latency_histogram(),
    };
    let mut seq: u64 = 0;
    let started = ctx.clock.elapsed_s();
    loop {
        if *ctx.stop.borrow() || limit.is_some_and(|l| seq >= l) {
            break;
        }
        let mut can = BURST as u64;
        if let Some(l) = limit {
            can = can.min(l - seq);
        }
        if window > 0 {
            can = can.min((window - pending.outstanding.len().min(window)) as u64);
        }
        if rate > 0.0 {
            let due = ((ctx.clock.elapsed_s() - started) * rate) as u64;
            can = can.min(due.saturating_sub(seq));
            if can == 0 && (window == 0 || pending.outstanding.len() < window) {
                // Until the next message is due; confirms that arrive
                // meanwhile are taken as they come, so their latency is
                // measured, not the pause.
                let next_at = started + (seq + 1) as f64 / rate;
                let pause =
                    Duration::from_secs_f64((next_at - ctx.clock.elapsed_s()).clamp(0.0, 0.01));
                if pending.outstanding.is_empty() {
                    tokio::time::sleep(pause).await;
                } else if let Ok(read) = tokio::time::timeout(pause, c.read_more()).await {
                    read?;
                    pending.settle(&mut c, &ctx)?;
                }
                continue;
            }
        }
        if can == 0 {
            // The window is full: wait for confirms.
            c.read_more().await?;
            pending.settle(&mut c, &ctx)?;
            continue;
        }
        buf.clear();
        for _ in 0..can {
            let now = ctx.clock.now_ns();
            stamp(&mut body, id, seq, now);
            template.write(&mut buf, &body);
            if window > 0 {
                pending.outstanding.push_back((seq + 1, now));
            } else {
                pending.accepted.record(id, seq);
            }
            seq += 1;
        }
        c.out.raw(&buf);
        c.flush().await?;
        Counters::add(&ctx.counters.sent, can);
        if window > 0 {
            c.read_now()?;
            pending.settle(&mut c, &ctx)?;
        }
    }
    // The last confirms, for a while at most.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while !pending.outstanding.is_empty() {
            c.read_more().await?;
            pending.settle(&mut c, &ctx)?;
        }
        Ok::<(), BenchError>(())
    })
    .await;
    if let Ok(Err(e)) = drained {
        return Err(e);
    }
    let unconfirmed = pending.outstanding.len() as u64;
    c.close().await;
    Ok(ProducerResult {
        sent: seq,
        accepted: pending.accepted,
        unconfirmed,
        confirm_latency: (window > 0).then_some(pending.latency),
    })
}

/// A producer's publishes awaiting their confirms.
struct Pending {
    id: u16,
    /// Publish tags in order (tag = seq + 1), with their send times.
    outstanding: VecDeque<(u64, u64)>,
    /// What the broker took.
    accepted: Ledger,
    /// Publish to confirm, µs.
    latency: Histogram<u64>,
}

impl Pending {
    /// Takes the confirms among the frames read so far.
    fn settle(&mut self, c: &mut Client, ctx: &Ctx) -> Result<(), BenchError> {
        let Pending {
            id,
            outstanding,
            accepted,
            latency,
        } = self;
        let id = *id;
        let now = ctx.clock.now_ns();
        while let Some(f) = c.decode()? {
            let Incoming::Method(_, m) = f else {
                continue;
            };
            let (tag, multiple, ack) = match *m {
                AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => (a.delivery_tag, a.multiple, true),
                AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => (n.delivery_tag, n.multiple, false),
                AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Close(c)) => {
                    return Err(BenchError::Protocol(format!(
                        "channel closed: {}",
                        c.reply_text
                    )));
                }
                AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Close(c)) => {
                    return Err(BenchError::Protocol(format!(
                        "connection closed: {}",
                        c.reply_text
                    )));
                }
                _ => continue,
            };
            let mut settle = |(t, sent): (u64, u64)| {
                let _ = latency.record((now.saturating_sub(sent) / 1000).max(1));
                if ack {
                    accepted.record(id, t - 1);
                    Counters::add(&ctx.counters.confirmed, 1);
                } else {
                    Counters::add(&ctx.counters.nacked, 1);
                }
            };
            if multiple {
                while outstanding.front().is_some_and(|&(t, _)| t <= tag) {
                    if let Some(t) = outstanding.pop_front() {
                        settle(t);
                    }
                }
            } else if let Ok(i) = outstanding.binary_search_by_key(&tag, |&(t, _)| t)
                && let Some(t) = outstanding.remove(i)
            {
                settle(t);
            }
        }
        Ok(())
    }
}

pub async fn consumer(ctx: Ctx, queue: String) -> Result<ConsumerResult, BenchError> {
    let opts = &ctx.opts;
    let mut c = Client::connect(&ctx.url).await?;
    c.open_channel(1).await?;
    if !opts.auto_ack && opts.prefetch > 0 {
        c.call(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: opts.prefetch,
                global: false,
            })),
        )
        .await?;
    }
    c.call(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.as_str().into(),
            consumer_tag: "".into(),
            no_local: false,
            no_ack: opts.auto_ack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await?;
    let mut histogram = latency_histogram();
    let mut ledger = Ledger::default();
    let mut done = ctx.done.clone();
    let every = opts.multi_ack_every.max(1);
    let (mut last_tag, mut unacked) = (0u64, 0usize);
    // The delivery being read: its tag and the first bytes of its body.
    let mut current: Option<(u64, Vec<u8>, u64)> = None;
    loop {
        // Frames may already be buffered (they came with consume-ok).
        let mut received = 0u64;
        while let Some(f) = c.decode()? {
            match f {
                Incoming::Method(_, m) => match *m {
                    AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) => {
                        current = Some((d.delivery_tag, Vec::with_capacity(16), 0));
                    }
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => {
                        return Err(BenchError::Protocol(
                            "the broker cancelled the consumer".into(),
                        ));
                    }
                    AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Close(c)) => {
                        return Err(BenchError::Protocol(format!(
                            "channel closed: {}",
                            c.reply_text
                        )));
                    }
                    _ => {}
                },
                Incoming::Header(_, h) => {
                    if let Some((_, _, size)) = &mut current {
                        *size = h.body_size;
                    }
                }
                Incoming::Body(_, b) => {
                    let Some((tag, head, size)) = &mut current else {
                        continue;
                    };
                    if head.len() < 16 {
                        let want = (16 - head.len()).min(b.len());
                        head.extend_from_slice(&b[..want]);
                    }
                    *size = size.saturating_sub(b.len() as u64);
                    if *size > 0 {
                        continue;
                    }
                    if let Some((p, seq, sent_ns)) = read_stamp(head) {
                        let us = ctx.clock.now_ns().saturating_sub(sent_ns) / 1000;
                        let _ = histogram.record(us.max(1));
                        ledger.record(p, seq);
                        ctx.counters
                            .last_latency_us
                            .store(us, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        Counters::add(&ctx.counters.errors, 1);
                    }
                    received += 1;
                    last_tag = *tag;
                    unacked += 1;
                    current = None;
                    if !opts.auto_ack && unacked >= every {
                        ack(&mut c.out, last_tag, every > 1);
                        unacked = 0;
                    }
                }
                Incoming::Heartbeat => {}
            }
        }
        Counters::add(&ctx.counters.received, received);
        c.flush().await?;
        tokio::select! {
            r = c.read_more() => r?,
            _ = done.changed() => break,
        }
    }
    if !opts.auto_ack && unacked > 0 {
        ack(&mut c.out, last_tag, true);
        let _ = c.flush().await;
    }
    c.close().await;
    Ok(ConsumerResult { histogram, ledger })
}

fn ack(out: &mut Output, tag: u64, multiple: bool) {
    out.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: tag,
            multiple,
        })),
    );
}
