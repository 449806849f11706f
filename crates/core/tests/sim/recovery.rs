//! A crash, and what the next life of the broker must bring back.
//!
//! After the store tears its pending records, the model knows the fate of
//! every record, so what recovery must hold is exact:
//! - no confirmed (or otherwise durable) message is lost: unless a removal
//!   of it was durable, some instance of it is back;
//! - no acked, purged or expired message is back, and no message is back
//!   in a queue whose removal from it was durable;
//! - each queue holds exactly the instances whose `Enqueued` record
//!   survived and whose removal did not (the broker reports them to the
//!   store through `Store::recovered`), with the delivery count of the
//!   last surviving `Delivered` record (checked with a peek);
//! - FIFO groups come back oldest first (peek order, then every receive);
//! - each deduplication window holds exactly the surviving sends whose
//!   window is open (probed with a send per key: duplicate or not, and of
//!   which original);
//! - leases from before the crash are void.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;
use ferry_core::clock::Clock;
use ferry_core::ids::IdGenerator;
use ferry_core::store::{Location, QueueId, Store};

use super::Check;
use super::driver::Sim;
use super::model::{State, Why};
use super::ops::{KEYS, MsgSpec};
use super::queues::{NAMESPACE, SPECS};
use super::store::{FaultyStore, Keep, lock};

impl Sim {
    /// Crashes the store (the broker and its runtime are gone already),
    /// opens a new broker on what survived, and checks it.
    pub fn crash_and_recover(&mut self, keep: Keep) -> Check {
        self.waiters.clear();
        self.handles.clear();
        if let Some(old) = self.broker.take() {
            // Nothing of the old life may live on (and keep writing).
            ensure!(
                Arc::strong_count(&old) == 1,
                "the crashed broker is still referenced"
            );
        }
        let (kept, lost) = self.store.crash(keep);
        self.totals.crashes += 1;
        self.totals.torn_kept += kept;
        self.totals.torn_lost += lost;
        self.trace.push(format!(
            "crash ({keep:?}): {kept} pending records kept, {lost} lost"
        ));
        self.life += 1;
        let downtime = self.rng.range(1, 3_000);
        self.clock.advance(Duration::from_millis(downtime));
        self.model.now = self.clock.now().0;

        self.store = FaultyStore::open(&self.disk);
        // Sometimes recovery must leave bodies in the store.
        let budget = [u64::MAX, 64, 0][self.rng.below(3) as usize];
        let before = lock(&self.disk).records.len();
        let broker = Broker::open_with_budget(
            Arc::new(self.clock.clone()),
            Arc::clone(&self.ids) as Arc<dyn IdGenerator>,
            Arc::clone(&self.store) as Arc<dyn Store>,
            budget,
        )
        .map_err(|e| format!("recovery failed: {e}"))?;
        self.check_recovered(before)?;
        self.broker = Some(broker);
        self.reattach()?;
        self.check_after_open()?;
        Ok(())
    }

    /// What the broker holds right after replay, against the records' fates.
    fn check_recovered(&mut self, before: usize) -> Check {
        let disk = lock(&self.disk);
        ensure!(
            disk.stale_appends == 0,
            "a crashed broker appended {} times after its crash",
            disk.stale_appends
        );
        ensure!(
            disk.records.len() == before,
            "recovery itself journaled {} records",
            disk.records.len() - before
        );
        let durable = |r: u64| disk.durable(r);
        let status = |r: u64| format!("{:?}", disk.records[r as usize].status);
        let model = &self.model;

        // No durable message lost: its instances may have moved, torn
        // writes may have duplicated them, but one must be back unless a
        // removal that ends it (not a move) is durable.
        for (token, insts) in model.by_token() {
            let Some(msg) = model.msgs.get(&token) else {
                continue;
            };
            let first = &model.inst[msg.first];
            if !first.created.is_some_and(durable) {
                continue;
            }
            let ended = insts.iter().any(|&i| {
                model.inst[i]
                    .removes
                    .iter()
                    .any(|(r, why)| *why != Why::Moved && durable(*r))
            });
            let back = insts.iter().any(|&i| model.survivor(i, &durable).is_some());
            ensure!(
                ended || back,
                "{} message m{token} (sent to {}) was lost: {}",
                if msg.confirmed {
                    "confirmed"
                } else {
                    "durable"
                },
                SPECS[msg.queue].name,
                insts
                    .iter()
                    .map(|&i| model.describe(i, &status))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }

        // Exactly the surviving instances, queue by queue.
        let expected: BTreeSet<(QueueId, Location)> = (0..model.inst.len())
            .filter(|&i| model.survivor(i, &durable).is_some())
            .map(|i| {
                let e = &model.inst[i];
                (self.qids[e.queue], Location(e.created.expect("survivor")))
            })
            .collect();
        let observed: BTreeSet<(QueueId, Location)> = disk.recovered_live.iter().copied().collect();
        ensure!(
            observed.len() == disk.recovered_live.len(),
            "recovery reported a message twice"
        );
        if expected != observed {
            let by_loc = |loc: Location| {
                (0..model.inst.len())
                    .find(|&i| model.inst[i].created == Some(loc.0))
                    .map_or(format!("unknown record {}", loc.0), |i| {
                        model.describe(i, &status)
                    })
            };
            let missing: Vec<String> = expected
                .difference(&observed)
                .map(|(_, l)| by_loc(*l))
                .collect();
            let extra: Vec<String> = observed
                .difference(&expected)
                .map(|(_, l)| by_loc(*l))
                .collect();
            return Err(format!(
                "recovery holds the wrong messages.\n  missing (should be back): {missing:#?}\n  extra (should be gone): {extra:#?}"
            ));
        }
        drop(disk);
        let disk = lock(&self.disk);
        let durable = |r: u64| disk.durable(r);
        self.model.restart(&durable);
        self.totals.at_limit_after_restart += self
            .model
            .inst
            .iter()
            .filter(|e| e.live && matches!(e.state, State::Leased(_)))
            .count();
        Ok(())
    }

    /// Takes the recovered queues, which must be the declared ones.
    fn reattach(&mut self) -> Check {
        let broker = self.broker();
        for (q, spec) in SPECS.iter().enumerate() {
            let d = broker
                .declare_queue(NAMESPACE, spec.name, spec.config())
                .map_err(|e| format!("redeclare {}: {e}", spec.name))?;
            ensure!(
                !d.0.created && d.0.queue.id() == self.qids[q],
                "queue {} did not come back",
                spec.name
            );
            self.handles.push(d.0.queue);
        }
        self.mark = lock(&self.disk).records.len();
        Ok(())
    }

    fn check_after_open(&mut self) -> Check {
        // Counts first, before any operation moves time-driven state on.
        for (q, spec) in SPECS.iter().enumerate() {
            let s = self.handles[q].stats();
            let live = &self.model.live[q];
            let ready = live
                .iter()
                .filter(|&&i| self.model.inst[i].state == State::Ready)
                .count() as u64;
            // Out as a lease that ran out: at the delivery limit.
            let leased = live
                .iter()
                .filter(|&&i| matches!(self.model.inst[i].state, State::Leased(_)))
                .count() as u64;
            let delayed = live.len() as u64 - ready - leased;
            ensure!(
                (s.ready, s.delayed, s.leased) == (ready, delayed, leased),
                "{} after recovery: ready {} delayed {} leased {}, the model {ready} {delayed} {leased}",
                spec.name,
                s.ready,
                s.delayed,
                s.leased
            );
            // A delayed message was never visible, so never delivered.
            for &i in live {
                if matches!(self.model.inst[i].state, State::Delayed(_)) {
                    ensure!(
                        self.model.inst[i].deliveries == 0,
                        "model: a delayed message with deliveries: {}",
                        self.describe(i)
                    );
                }
            }
        }
        // Delivery counts and FIFO order of what is ready.
        for q in 0..SPECS.len() {
            self.peek(q)?;
        }
        // Deduplication windows, key by key.
        for (q, spec) in SPECS.iter().enumerate() {
            if spec.dedup_window_ms.is_none() {
                continue;
            }
            for k in 0..KEYS {
                let key = format!("k{k}");
                if !self
                    .model
                    .fresh
                    .iter()
                    .any(|f| f.queue == q && f.key == key)
                {
                    continue;
                }
                let probe = MsgSpec {
                    group: self.rng.below(4) as u8,
                    key: Some(k),
                    delay_ms: None,
                    ttl_ms: None,
                };
                self.send(q, &[probe], false)?;
            }
        }
        // Leases of the life before are void.
        self.held.retain(|h| h.life + 1 >= self.life);
        let stale: Vec<usize> = (0..self.held.len())
            .filter(|&j| self.held[j].life < self.life)
            .take(3)
            .collect();
        for j in stale.into_iter().rev() {
            self.ack(j, false)?;
        }
        Ok(())
    }
}
