//! The `ferry-offsets` thread: group commit and compaction. `record`
//! encodes its changes into the pending buffer and returns; each round the
//! thread writes everything pending in one write, syncs per the fsync
//! policy, applies the changes to the live offsets, then settles the
//! commits. Between rounds it compacts the file when it has grown past its
//! bound.
//!
//! Only this thread changes the live offsets, and only for what it has
//! written: between rounds they are exactly what the file replays to, which
//! is what a compaction writes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ferry_core::group::OffsetChange;
use ferry_core::store::{Commit, StoreError, Tracker};

use super::live::Live;
use super::{FILE, HEADER_LEN, NEW_FILE, codec};
use crate::FsyncPolicy;
use crate::frame;
use crate::journal::io_error;
use crate::segment::sync_dir;

/// The file is compacted once past this size, whatever is live.
pub(super) const COMPACT_MIN: u64 = 4 << 20;
/// …and once past this many times the size of a compacted file.
const COMPACT_RATIO: u64 = 4;

/// What `record` and the writer share.
pub(super) struct Shared {
    fsync: FsyncPolicy,
    state: Mutex<State>,
    work: Condvar,
    pub progress: Arc<Tracker>,
    live: Mutex<Live>,
}

#[derive(Default)]
struct State {
    /// Frames recorded and not yet taken by the writer, in record order.
    bytes: Vec<u8>,
    /// The same changes, each with its frame's size, to apply once written.
    changes: Vec<(OffsetChange, u64)>,
    /// The newest commit number handed out (each non-empty `record` call
    /// takes one).
    last_seq: u64,
    closed: bool,
    /// Set when a write or sync failed: what the file holds past the last
    /// good round is unknown, so nothing more is written.
    broken: Option<StoreError>,
}

impl Shared {
    pub fn new(fsync: FsyncPolicy, live: Live) -> Shared {
        Shared {
            fsync,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Tracker::new(),
            live: Mutex::new(live),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `changes` for the writer (no I/O here); the commit completes
    /// once they are written (and synced, if the policy says so).
    pub fn submit(&self, changes: Vec<OffsetChange>) -> Commit {
        let mut st = self.lock();
        if let Some(e) = &st.broken {
            return Commit::failed(e.clone());
        }
        if st.closed {
            return Commit::failed(StoreError::Closed);
        }
        if changes.is_empty() {
            // Nothing of its own: durable once everything before it is.
            return match st.last_seq {
                0 => Commit::done(),
                seq => Commit::pending(seq, Arc::clone(&self.progress)),
            };
        }
        let wake = st.bytes.is_empty();
        let (bytes_at, changes_at) = (st.bytes.len(), st.changes.len());
        for c in changes {
            let size = codec::put(&mut st.bytes, &c);
            if size > frame::MAX_FRAME {
                // Replay would refuse such a frame: the call fails whole.
                st.bytes.truncate(bytes_at);
                st.changes.truncate(changes_at);
                return Commit::failed(StoreError::Io(format!(
                    "an offset change of {size} bytes is larger than a record may be"
                )));
            }
            st.changes.push((c, size as u64));
        }
        st.last_seq += 1;
        let seq = st.last_seq;
        drop(st);
        // The writer waits only while nothing is pending.
        if wake {
            self.work.notify_one();
        }
        Commit::pending(seq, Arc::clone(&self.progress))
    }

    /// Has the writer write what is pending, sync, and stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.work.notify_one();
    }
}

/// The writer thread's own state.
pub(super) struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// The file's length: everything written to it so far.
    len: u64,
    /// Every commit up to here is settled.
    settled: u64,
    /// Written since the last sync.
    unsynced: bool,
    last_sync: Instant,
    /// The writer's copy of `State::broken`.
    broken: Option<StoreError>,
    /// No compaction is tried below this length (raised after one fails,
    /// so a full disk is not retried every round).
    compact_from: u64,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, dir: &Path, file: File, len: u64) -> Writer {
        Writer {
            shared,
            dir: dir.to_owned(),
            path: dir.join(FILE),
            file,
            len,
            settled: 0,
            unsynced: false,
            last_sync: Instant::now(),
            broken: None,
            compact_from: 0,
        }
    }

    pub fn run(mut self) {
        let policy = self.shared.fsync;
        let mut spare: (Vec<u8>, Vec<(OffsetChange, u64)>) = Default::default();
        loop {
            // Between rounds: the live offsets match the file.
            self.maybe_compact();
            let (mut bytes, mut changes, last, closing) = {
                let mut st = self.shared.lock();
                while st.bytes.is_empty() && !st.closed {
                    st = match policy {
                        FsyncPolicy::Interval(every) if self.unsynced => {
                            let waited = self.last_sync.elapsed();
                            if waited >= every {
                                break;
                            }
                            self.shared
                                .work
                                .wait_timeout(st, every - waited)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                        _ => self
                            .shared
                            .work
                            .wait(st)
                            .unwrap_or_else(PoisonError::into_inner),
                    };
                }
                (
                    std::mem::replace(&mut st.bytes, std::mem::take(&mut spare.0)),
                    std::mem::replace(&mut st.changes, std::mem::take(&mut spare.1)),
                    st.last_seq,
                    st.closed,
                )
            };
            if last > self.settled {
                self.round(&bytes, &mut changes, last, closing);
            } else if self.unsynced && !closing {
                // The interval's deferred sync.
                self.sync();
            }
            bytes.clear();
            changes.clear();
            spare = (bytes, changes);
            if closing {
                if self.unsynced {
                    self.sync();
                }
                return;
            }
        }
    }

    /// One group commit: commits `settled + 1..=last`, whose frames are
    /// `bytes` and changes `changes`.
    fn round(
        &mut self,
        bytes: &[u8],
        changes: &mut Vec<(OffsetChange, u64)>,
        last: u64,
        closing: bool,
    ) {
        let first = self.settled + 1;
        self.settled = last;
        if let Some(e) = &self.broken {
            // Recorded before the fence was seen.
            let e = e.clone();
            self.shared.progress.update(|p| p.fail(first, last, e));
            return;
        }
        let sync_now = match self.shared.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => closing || self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => closing,
        };
        let file = &mut self.file;
        let written = file
            .write_all(bytes)
            .and_then(|()| if sync_now { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            let err = io_error(&self.path, e);
            self.fence(&err);
            self.shared.progress.update(|p| p.fail(first, last, err));
            return;
        }
        self.len += bytes.len() as u64;
        if sync_now {
            self.unsynced = false;
            self.last_sync = Instant::now();
        } else {
            self.unsynced = true;
        }
        // Applied before the commits complete, so a `load` after a commit
        // completed sees it.
        {
            let mut live = self.shared.live();
            for (c, size) in changes.drain(..) {
                live.apply(c, size);
            }
        }
        self.shared.progress.update(|p| p.done = p.done.max(last));
    }

    /// A sync of rounds whose commits completed unsynced (per the policy).
    fn sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            self.fence(&io_error(&self.path, e));
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
    }

    /// After a failed write or sync: every later commit fails.
    fn fence(&mut self, err: &StoreError) {
        tracing::error!(file = %self.path.display(), error = %err, "offsets log write failed; no more offsets are stored until restart");
        self.broken = Some(err.clone());
        self.shared.lock().broken = Some(err.clone());
    }

    fn maybe_compact(&mut self) {
        if self.broken.is_some() || self.len < self.compact_from {
            return;
        }
        let compacted = HEADER_LEN as u64 + self.shared.live().bytes();
        if self.len <= COMPACT_MIN.max(COMPACT_RATIO * compacted) {
            return;
        }
        let before = self.len;
        let started = Instant::now();
        match self.compact() {
            Ok(()) => {
                tracing::debug!(file = %self.path.display(), before, after = self.len, took = ?started.elapsed(), "offsets log compacted")
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "offsets log compaction failed; the old file is kept");
                let _ = std::fs::remove_file(self.dir.join(NEW_FILE));
                self.compact_from = self.len + COMPACT_MIN;
            }
        }
    }

    /// Rewrites the file with one commit per live offset. An error is
    /// returned only while the old file is still the one in place.
    fn compact(&mut self) -> Result<(), StoreError> {
        let mut contents = super::header().to_vec();
        // Encoded under the lock (a `load` waits that long, `record` not
        // at all); written without it.
        self.shared.live().encode(&mut contents);
        let file = super::write_new(&self.dir, &contents)?;
        super::install(&self.dir)?;
        // In place: it holds (synced) everything the old file did.
        self.file = file;
        self.len = contents.len() as u64;
        self.unsynced = false;
        self.last_sync = Instant::now();
        self.compact_from = 0;
        if let Err(e) = sync_dir(&self.dir) {
            // The rename may not last: a crash could bring back the old
            // file without what is appended to the new one from now on.
            self.fence(&io_error(&self.dir, e));
        }
        Ok(())
    }
}
