//! Enqueue + receive + ack on one in-memory queue, on one core.
//!
//! `cargo bench -p ferry-core --bench queue`; results in docs/benchmarks.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferry_core::Broker;
use ferry_core::clock::Timestamp;
use ferry_core::message::Message;
use ferry_core::queue::{Effects, QueueConfig, QueueCore, ReceiveMode};
use ferry_core::store::QueueId;

const VISIBILITY: ReceiveMode = ReceiveMode::Lease(Duration::from_secs(30));

/// The pure state machine: what one queue costs without locks or a clock.
fn queue_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_core");
    let body = Bytes::from_static(&[0u8; 16]);
    for batch in [1usize, 100] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("enqueue_receive_ack/batch_{batch}"), |b| {
            let now = Timestamp(1_000_000);
            let mut q = QueueCore::new(QueueId(1), "bench", QueueConfig::default(), now, 1);
            let mut fx = Effects::default();
            let mut out = Vec::with_capacity(batch);
            b.iter(|| {
                for _ in 0..batch {
                    let m = Arc::new(Message::new(body.clone()));
                    q.enqueue(m, now, &mut fx).expect("enqueue");
                }
                out.clear();
                q.receive(now, batch, VISIBILITY, &mut fx, &mut out);
                for d in out.drain(..) {
                    q.ack(d.lease, now, &mut fx).expect("ack");
                }
                black_box(&fx);
            });
        });
    }
    g.finish();
}

/// Through the broker: the queue's lock, the clock, ids, effects.
fn broker(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker");
    let body = Bytes::from_static(&[0u8; 16]);
    g.throughput(Throughput::Elements(1));
    g.bench_function("send_receive_ack", |b| {
        let broker = Broker::in_memory();
        let _ = broker.create_namespace("ns");
        let q = broker
            .declare_queue("ns", "q", QueueConfig::default())
            .expect("declare")
            .0
            .queue;
        let mut out = Vec::with_capacity(1);
        b.iter(|| {
            let _ = broker.send(&q, Message::new(body.clone())).expect("send");
            out.clear();
            broker.receive_into(&q, 1, VISIBILITY, &mut out);
            broker.ack(&q, out[0].lease).expect("ack");
        });
    });
    g.bench_function("publish_fanout_3_queues", |b| {
        use ferry_core::router::{Binding, Destination, RouterConfig, RouterKind};
        let broker = Broker::in_memory();
        let _ = broker.create_namespace("ns");
        let _ = broker
            .declare_router("ns", "x", RouterConfig::new(RouterKind::Fanout))
            .expect("router");
        let queues: Vec<_> = (0..3)
            .map(|i| {
                let name = format!("q{i}");
                let q = broker
                    .declare_queue("ns", &name, QueueConfig::default())
                    .expect("declare")
                    .0
                    .queue;
                let _ = broker
                    .bind("ns", Binding::new("x", Destination::queue(&name), ""))
                    .expect("bind");
                q
            })
            .collect();
        b.iter_batched(
            || Message::new(body.clone()),
            |m| {
                broker.publish("ns", "x", m).expect("publish");
                for q in &queues {
                    let _ = broker.purge(q, true);
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Topic routing must not loop over every binding: 100,000 patterns, a key
/// that matches 100 of them.
fn topic_routing(c: &mut Criterion) {
    use ferry_core::message::Headers;
    use ferry_core::router::{Destination, Router, RouterConfig, RouterKind};
    let mut g = c.benchmark_group("router");
    let mut r = Router::new("t", RouterConfig::new(RouterKind::Topic));
    for i in 0..100_000 {
        let pattern = match i % 4 {
            0 => format!("region{}.orders.*", i % 1000),
            1 => format!("region{}.#", i % 1000),
            2 => format!("*.payments.{i}"),
            _ => format!("region{}.orders.{i}.created", i % 1000),
        };
        r.bind(
            Destination::queue(&format!("q{i}")),
            &pattern,
            Headers::new(),
        );
    }
    // Matches the 100 `region41.#` bindings and nothing else.
    let msg = Message::new(Bytes::from_static(b"x")).with_routing_key("region41.orders.eu");
    let mut out = Vec::new();
    r.route(&msg, &mut out);
    assert_eq!(out.len(), 100);
    g.throughput(Throughput::Elements(1));
    g.bench_function("topic_route_100k_bindings", |b| {
        b.iter(|| {
            out.clear();
            r.route(black_box(&msg), &mut out);
            black_box(out.len())
        });
    });
    g.finish();
}

criterion_group!(benches, queue_core, broker, topic_routing);
criterion_main!(benches);
