//! The hot path allocates nothing per message beyond the message itself:
//! counted with a counting allocator, not timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferry_core::Broker;
use ferry_core::message::Message;
use ferry_core::queue::{QueueConfig, ReceiveMode};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn send_receive_ack_allocates_only_the_message() {
    let broker = Broker::in_memory();
    let _ = broker.create_namespace("ns");
    let q = broker
        .declare_queue("ns", "q", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    let body = Bytes::from_static(&[7u8; 16]);
    let mut out = Vec::with_capacity(1);
    let mut cycle = |n: u64| {
        for _ in 0..n {
            let _ = broker.send(&q, Message::new(body.clone())).expect("send");
            out.clear();
            broker.receive_into(
                &q,
                1,
                ReceiveMode::Lease(std::time::Duration::from_secs(30)),
                &mut out,
            );
            broker.ack(&q, out[0].lease).expect("ack");
        }
    };
    // Warm up: the slab, heaps and indexes reach their working size.
    cycle(5_000);
    let n = 50_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    cycle(n);
    let per_message = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    // One allocation: the `Arc<Message>`.
    assert!(per_message <= 1.0, "{per_message} allocations per message");
}
