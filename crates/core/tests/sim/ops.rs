//! The random operations, and how often each comes. An operation names
//! what to do, not what should happen: the driver resolves picks (which
//! held lease) against the state, and the model says what must follow.

use super::queues::{DLQ, SPECS};
use super::rng::Rng;
use super::store::Keep;

#[derive(Clone, Debug)]
pub struct MsgSpec {
    pub group: u8,
    /// Deduplication id `k{n}` (FIFO queues only); few, so they repeat.
    pub key: Option<u8>,
    pub delay_ms: Option<u64>,
    pub ttl_ms: Option<u64>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Lease(u64),
    Hold,
    AutoAck,
}

#[derive(Clone, Debug)]
pub enum Op {
    Send {
        queue: usize,
        msgs: Vec<MsgSpec>,
        batch: bool,
    },
    Receive {
        queue: usize,
        max: usize,
        mode: Mode,
    },
    Ack {
        pick: usize,
    },
    /// An SQS delete: an ack, preferably with a lease that has run out.
    Delete {
        pick: usize,
    },
    Nack {
        pick: usize,
        requeue: bool,
    },
    Visibility {
        pick: usize,
        ms: u64,
    },
    Purge {
        queue: usize,
        include_leased: bool,
    },
    /// Moves the dead-letter queue's messages back where they died.
    Redrive,
    Peek {
        queue: usize,
    },
    /// Drops every journaled message body from memory (read back on use).
    Evict,
    FireTimers,
    Advance {
        ms: u64,
    },
    /// Syncs that many pending commits (0: all), without telling waiters.
    Sync {
        commits: usize,
    },
    /// Tells waiters what is synced.
    Publish,
    Fail {
        commits: usize,
    },
    Crash {
        keep: Keep,
    },
}

pub const KEYS: u8 = 12;
pub const GROUPS: u8 = 4;

fn send_queue(rng: &mut Rng) -> usize {
    // Not the dead-letter queue: its messages must have died somewhere.
    [0, 1, 2, 3][rng.weighted(&[3, 2, 3, 2])]
}

fn any_queue(rng: &mut Rng) -> usize {
    [0, 1, 2, 3, DLQ][rng.weighted(&[3, 2, 3, 2, 2])]
}

pub fn msg(rng: &mut Rng, queue: usize) -> MsgSpec {
    let fifo = SPECS[queue].fifo;
    MsgSpec {
        group: rng.below(u64::from(GROUPS)) as u8,
        key: (fifo && rng.chance(75)).then(|| rng.below(u64::from(KEYS)) as u8),
        // On a FIFO queue the broker ignores it: sent anyway, rarely.
        delay_ms: rng
            .chance(if fifo { 10 } else { 25 })
            .then(|| rng.range(500, 5_000)),
        ttl_ms: rng.chance(30).then(|| rng.range(2_000, 40_000)),
    }
}

pub fn generate(rng: &mut Rng) -> Op {
    let weights = [18, 16, 8, 3, 4, 4, 1, 2, 2, 1, 3, 10, 10, 8, 1, 2];
    match rng.weighted(&weights) {
        0 => {
            let queue = send_queue(rng);
            let batch = rng.chance(20);
            let n = if batch { rng.range(2, 4) } else { 1 };
            let msgs = (0..n).map(|_| msg(rng, queue)).collect();
            Op::Send { queue, msgs, batch }
        }
        1 => {
            let queue = any_queue(rng);
            let max = rng.range(1, 5) as usize;
            let mode = match rng.weighted(&[60, 25, 15]) {
                0 => Mode::Lease(rng.range(1_000, 15_000)),
                1 => Mode::Hold,
                _ => Mode::AutoAck,
            };
            Op::Receive { queue, max, mode }
        }
        2 => Op::Ack {
            pick: rng.next_u64() as usize,
        },
        3 => Op::Delete {
            pick: rng.next_u64() as usize,
        },
        4 => Op::Nack {
            pick: rng.next_u64() as usize,
            requeue: rng.chance(50),
        },
        5 => Op::Visibility {
            pick: rng.next_u64() as usize,
            ms: if rng.chance(30) {
                0
            } else {
                rng.range(1_000, 15_000)
            },
        },
        6 => Op::Purge {
            queue: any_queue(rng),
            include_leased: rng.chance(50),
        },
        7 => Op::Redrive,
        8 => Op::Peek {
            queue: any_queue(rng),
        },
        9 => Op::Evict,
        10 => Op::FireTimers,
        11 => Op::Advance {
            ms: match rng.weighted(&[80, 15, 5]) {
                0 => rng.range(1, 3_000),
                1 => rng.range(3_000, 25_000),
                _ => rng.range(25_000, 70_000),
            },
        },
        12 => Op::Sync {
            commits: if rng.chance(40) {
                0
            } else {
                rng.range(1, 4) as usize
            },
        },
        13 => Op::Publish,
        14 => Op::Fail {
            commits: rng.range(1, 3) as usize,
        },
        _ => Op::Crash { keep: keep(rng) },
    }
}

pub fn keep(rng: &mut Rng) -> Keep {
    match rng.weighted(&[30, 30, 40]) {
        0 => Keep::Nothing,
        1 => Keep::All,
        _ => Keep::Prefix(rng.next_u64()),
    }
}
