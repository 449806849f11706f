//! A store that fails on purpose, under the simulation's control.
//!
//! It behaves as a journal with group commit would, with every decision
//! taken by the simulation instead of a disk:
//! - `append` numbers each call as one commit and holds its records as
//!   pending; it may also refuse a call outright (as a journal that cannot
//!   buffer more does), and then nothing of it ever exists.
//! - [`FaultyStore::sync`] makes the oldest pending commits durable, in
//!   append order; [`FaultyStore::fail`] fails them instead (their records
//!   never appear after a restart); [`FaultyStore::publish`] tells the
//!   commits' waiters, possibly long after the sync (a delayed completion).
//! - [`FaultyStore::crash`] keeps a prefix of the pending records, cut at
//!   any record (a torn tail), and loses the rest.
//!
//! The [`Disk`] outlives each broker and store instance: a restart opens a
//! new store over the records that are durable. Every record ever handed to
//! a store stays listed there with its fate, so the model can tell which of
//! the changes it expects a crash may have kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ferry_core::message::Message;
use ferry_core::store::{Commit, Location, QueueId, Record, Store, StoreError, Tracker};

use super::rng::Rng;

/// A record's index in [`Disk::records`]; an `Enqueued` record's
/// [`Location`] is its id.
pub type RecId = u64;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Appended, not yet synced.
    Pending,
    Synced,
    /// Its commit failed.
    Failed,
    /// Its `append` call returned an error.
    Refused,
    /// Pending at a crash, and inside the prefix that survived it.
    TornKept,
    /// Pending at a crash, and past the tear.
    TornLost,
}

impl Status {
    pub fn durable(self) -> bool {
        matches!(self, Status::Synced | Status::TornKept)
    }
}

#[derive(Debug)]
pub struct Logged {
    pub record: Record,
    pub loc: Option<Location>,
    /// The `append` call it came in (one call, one commit).
    pub call: u64,
    pub status: Status,
}

/// How much of the pending records a crash keeps.
#[derive(Copy, Clone, Debug)]
pub enum Keep {
    Nothing,
    All,
    /// `n % (pending + 1)` records.
    Prefix(u64),
}

pub struct Disk {
    pub records: Vec<Logged>,
    /// What a restart replays, in append order.
    durable: Vec<RecId>,
    /// Commits not yet settled, oldest first, with their records.
    pending: VecDeque<(u64, Vec<RecId>)>,
    /// Commit numbers of the current store instance (they restart with it).
    commits: u64,
    /// Every commit up to here is synced or failed.
    settled: u64,
    failed_any: bool,
    calls: u64,
    /// Which store instance may append; older ones are closed.
    life: u32,
    rng: Rng,
    refuse_percent: u64,
    /// Appends from a store instance after its crash (must stay 0).
    pub stale_appends: u64,
    /// What the broker said survived recovery (`Store::recovered`).
    pub recovered_live: Vec<(QueueId, Location)>,
}

impl Disk {
    pub fn new(seed: u64) -> Arc<Mutex<Disk>> {
        Arc::new(Mutex::new(Disk {
            records: Vec::new(),
            durable: Vec::new(),
            pending: VecDeque::new(),
            commits: 0,
            settled: 0,
            failed_any: false,
            calls: 0,
            life: 0,
            rng: Rng::new(seed),
            refuse_percent: 0,
            stale_appends: 0,
            recovered_live: Vec::new(),
        }))
    }

    pub fn set_refusals(&mut self, percent: u64) {
        self.refuse_percent = percent;
    }

    pub fn durable(&self, r: RecId) -> bool {
        self.records[r as usize].status.durable()
    }
}

pub fn lock(d: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    d.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One store instance: what one broker (one life) writes through.
pub struct FaultyStore {
    disk: Arc<Mutex<Disk>>,
    tracker: Arc<Tracker>,
    life: u32,
}

impl FaultyStore {
    /// A store over what `disk` holds durably now.
    pub fn open(disk: &Arc<Mutex<Disk>>) -> Arc<FaultyStore> {
        let life = lock(disk).life;
        Arc::new(FaultyStore {
            disk: Arc::clone(disk),
            tracker: Tracker::new(),
            life,
        })
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        lock(&self.disk)
    }

    /// Makes the `n` oldest pending commits durable (`0`: all of them).
    /// Their waiters hear of it only on [`FaultyStore::publish`].
    pub fn sync(&self, n: usize) {
        let mut d = self.disk();
        let n = if n == 0 {
            d.pending.len()
        } else {
            n.min(d.pending.len())
        };
        for _ in 0..n {
            let Some((commit, ids)) = d.pending.pop_front() else {
                break;
            };
            for id in ids {
                d.records[id as usize].status = Status::Synced;
                d.durable.push(id);
            }
            d.settled = commit;
        }
    }

    /// Tells waiters that every synced commit is durable.
    pub fn publish(&self) {
        let settled = self.disk().settled;
        self.tracker.update(|p| p.done = p.done.max(settled));
    }

    /// Fails the `n` oldest pending commits (a write error): their records
    /// are gone for good. Commits synced before them are settled with them.
    pub fn fail(&self, n: usize) {
        let range = {
            let mut d = self.disk();
            let n = n.min(d.pending.len());
            let mut range = None;
            for _ in 0..n {
                let Some((commit, ids)) = d.pending.pop_front() else {
                    break;
                };
                for id in ids {
                    d.records[id as usize].status = Status::Failed;
                }
                let first = range.map_or(commit, |(f, _)| f);
                range = Some((first, commit));
                d.settled = commit;
                d.failed_any = true;
            }
            range
        };
        if let Some((first, last)) = range {
            self.tracker.update(|p| {
                p.fail(
                    first,
                    last,
                    StoreError::Io("simulated write failure".into()),
                )
            });
        }
    }

    /// The process dies: pending records up to the tear survive, the rest
    /// are lost, and this store instance accepts nothing more. Returns
    /// (kept, lost).
    pub fn crash(&self, keep: Keep) -> (usize, usize) {
        let counts = {
            let mut d = self.disk();
            let ids: Vec<RecId> = d.pending.drain(..).flat_map(|(_, ids)| ids).collect();
            let n = ids.len();
            let kept = match keep {
                Keep::Nothing => 0,
                Keep::All => n,
                Keep::Prefix(x) => (x % (n as u64 + 1)) as usize,
            };
            for (j, id) in ids.into_iter().enumerate() {
                if j < kept {
                    d.records[id as usize].status = Status::TornKept;
                    d.durable.push(id);
                } else {
                    d.records[id as usize].status = Status::TornLost;
                }
            }
            d.life += 1;
            d.commits = 0;
            d.settled = 0;
            d.failed_any = false;
            d.recovered_live.clear();
            (kept, n - kept)
        };
        self.tracker.close();
        counts
    }
}

impl Store for FaultyStore {
    fn append(
        &self,
        records: &mut Vec<Record>,
        locations: &mut Vec<Location>,
    ) -> Result<Commit, StoreError> {
        let mut d = self.disk();
        if d.life != self.life {
            d.stale_appends += 1;
            records.clear();
            return Err(StoreError::Closed);
        }
        d.calls += 1;
        let call = d.calls;
        let percent = d.refuse_percent;
        if percent > 0 && d.rng.chance(percent) {
            for record in records.drain(..) {
                d.records.push(Logged {
                    record,
                    loc: None,
                    call,
                    status: Status::Refused,
                });
            }
            return Err(StoreError::Full);
        }
        d.commits += 1;
        let commit = d.commits;
        let mut ids = Vec::with_capacity(records.len());
        for record in records.drain(..) {
            let id = d.records.len() as RecId;
            let loc = matches!(record, Record::Enqueued { .. }).then_some(Location(id));
            locations.extend(loc);
            d.records.push(Logged {
                record,
                loc,
                call,
                status: Status::Pending,
            });
            ids.push(id);
        }
        d.pending.push_back((commit, ids));
        Ok(Commit::pending(commit, Arc::clone(&self.tracker)))
    }

    fn recover(&self, visit: &mut dyn FnMut(Record, Option<Location>)) -> Result<(), StoreError> {
        // Copied out first: replay runs broker code, which must not find
        // the disk locked.
        let durable: Vec<(Record, Option<Location>)> = {
            let d = self.disk();
            d.durable
                .iter()
                .map(|&id| {
                    let l = &d.records[id as usize];
                    (l.record.clone(), l.loc)
                })
                .collect()
        };
        for (r, loc) in durable {
            visit(r, loc);
        }
        Ok(())
    }

    fn load(&self, loc: Location) -> Result<Arc<Message>, StoreError> {
        let d = self.disk();
        match d.records.get(loc.0 as usize) {
            Some(Logged {
                record: Record::Enqueued { message, .. },
                status,
                ..
            }) if status.durable() => Ok(Arc::clone(message)),
            _ => Err(StoreError::Io(format!("no durable message at {loc:?}"))),
        }
    }

    fn loadable(&self, loc: Location) -> bool {
        let d = self.disk();
        d.records
            .get(loc.0 as usize)
            .is_some_and(|l| l.status.durable() && matches!(l.record, Record::Enqueued { .. }))
    }

    fn recovered(&self, live: &mut dyn Iterator<Item = (QueueId, Location)>) {
        self.disk().recovered_live = live.collect();
    }

    /// Completes once everything appended before it is durable, and fails
    /// if any of that failed: after a failure in this life, forever (what
    /// was lost is not coming back).
    fn barrier(&self) -> Commit {
        let d = self.disk();
        if d.life != self.life {
            return Commit::failed(StoreError::Closed);
        }
        if d.failed_any {
            return Commit::failed(StoreError::Io("an earlier write failed".into()));
        }
        if d.settled == d.commits {
            return Commit::done();
        }
        Commit::pending(d.settled + 1, Arc::clone(&self.tracker))
            .and(Commit::pending(d.commits, Arc::clone(&self.tracker)))
    }
}
