//! The log writer thread: group commit across every partition. It takes
//! every batch appended since its last round, writes each to its
//! partition's active segment, syncs each file touched once (per the fsync
//! policy), then moves each partition's durable end and settles the
//! commits, in append order.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use ferry_core::store::{Commit, Progress, StoreError, Tracker};
use ferry_core::stream::batch::BatchHeader;

use super::partition::PartitionFiles;
use super::segment::Segment;
use crate::FsyncPolicy;
use crate::journal::io_error;

/// A segment written in a round: its partition, and the jobs that wrote it.
type Touched = (Arc<PartitionFiles>, Arc<Segment>, Vec<usize>);

struct Job {
    files: Arc<PartitionFiles>,
    batch: Bytes,
    header: BatchHeader,
    seq: u64,
}

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    last_seq: u64,
    closed: bool,
}

pub struct Writer {
    fsync: FsyncPolicy,
    state: Mutex<State>,
    work: Condvar,
    progress: Arc<Tracker>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(fsync: FsyncPolicy) -> Result<Arc<Writer>, StoreError> {
        let w = Arc::new(Writer {
            fsync,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Tracker::new(),
            thread: Mutex::new(None),
        });
        let runner = Arc::clone(&w);
        let handle = std::thread::Builder::new()
            .name("ferry-log".into())
            .spawn(move || runner.run())
            .map_err(|e| StoreError::Io(format!("cannot start the log writer: {e}")))?;
        *w.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(w)
    }

    /// Whether the fsync policy is never to sync (so a recovery point
    /// must sync the segment itself).
    pub fn never_syncs(&self) -> bool {
        matches!(self.fsync, FsyncPolicy::Never)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a batch; the commit completes once it is durable.
    pub fn submit(
        &self,
        files: &Arc<PartitionFiles>,
        batch: Bytes,
        header: BatchHeader,
    ) -> Result<Commit, StoreError> {
        let mut st = self.lock();
        if st.closed {
            return Err(StoreError::Closed);
        }
        st.last_seq += 1;
        let seq = st.last_seq;
        let wake = st.jobs.is_empty();
        st.jobs.push(Job {
            files: Arc::clone(files),
            batch,
            header,
            seq,
        });
        drop(st);
        if wake {
            self.work.notify_one();
        }
        Ok(Commit::pending(seq, Arc::clone(&self.progress)))
    }

    /// Writes what is queued, then stops the thread.
    pub fn close(&self) {
        self.lock().closed = true;
        self.work.notify_one();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.progress.close();
    }

    fn run(&self) {
        let mut spare: Vec<Job> = Vec::new();
        let mut last_sync = Instant::now();
        let mut unsynced: Vec<Arc<Segment>> = Vec::new();
        loop {
            let (mut jobs, closing) = {
                let mut st = self.lock();
                while st.jobs.is_empty() && !st.closed {
                    st = match self.fsync {
                        FsyncPolicy::Interval(every) if !unsynced.is_empty() => {
                            let waited = last_sync.elapsed();
                            if waited >= every {
                                break;
                            }
                            self.work
                                .wait_timeout(st, every - waited)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                        _ => self.work.wait(st).unwrap_or_else(PoisonError::into_inner),
                    };
                }
                (
                    std::mem::replace(&mut st.jobs, std::mem::take(&mut spare)),
                    st.closed,
                )
            };
            if jobs.is_empty() && !unsynced.is_empty() {
                sync_all(&mut unsynced);
                last_sync = Instant::now();
            }
            if !jobs.is_empty() {
                self.round(&jobs, &mut unsynced, &mut last_sync, closing);
            }
            jobs.clear();
            spare = jobs;
            if closing {
                sync_all(&mut unsynced);
                return;
            }
        }
    }

    /// One group commit.
    fn round(
        &self,
        jobs: &[Job],
        unsynced: &mut Vec<Arc<Segment>>,
        last_sync: &mut Instant,
        closing: bool,
    ) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut failed: Vec<(u64, StoreError)> = Vec::new();
        // A batch not written, or not synced: its partition's durable end
        // stops before it this round.
        let mut lost = vec![false; jobs.len()];
        // Segments written this round, and the jobs that wrote to each.
        let mut touched: HashMap<*const Segment, Touched> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            if job.files.deleted.load(std::sync::atomic::Ordering::Acquire) {
                lost[i] = true;
                failed.push((job.seq, StoreError::Io("the stream was deleted".into())));
                continue;
            }
            match job.files.write(&job.batch, &job.header, now_ms) {
                Ok(seg) => {
                    touched
                        .entry(Arc::as_ptr(&seg))
                        .or_insert_with(|| (Arc::clone(&job.files), Arc::clone(&seg), Vec::new()))
                        .2
                        .push(i);
                }
                Err(e) => {
                    lost[i] = true;
                    failed.push((job.seq, e));
                }
            }
        }
        let sync_now = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => closing || last_sync.elapsed() >= every,
            FsyncPolicy::Never => closing,
        };
        // Jobs whose segment did not sync are lost (and their partition
        // fenced: what the kernel kept of the file is unknown).
        for (files, seg, written) in touched.values() {
            if sync_now {
                if let Err(e) = seg.file.sync_data() {
                    let err = io_error(&seg.path, e);
                    tracing::error!(file = %seg.path.display(), error = %err, "log sync failed; partition fenced");
                    *files.broken.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(err.clone());
                    for &i in written {
                        lost[i] = true;
                        failed.push((jobs[i].seq, err.clone()));
                    }
                    continue;
                }
            } else {
                unsynced.push(Arc::clone(seg));
            }
            files.synced(seg);
        }
        if sync_now {
            sync_all(unsynced);
            *last_sync = Instant::now();
        }
        // Durable ends move in append order; a lost batch stops its
        // partition's end before it (a later round's batches may pass the
        // gap: a reader at a missing offset is given the next batch).
        let mut ends: HashMap<*const PartitionFiles, (Arc<PartitionFiles>, u64, bool)> =
            HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            let e = ends
                .entry(Arc::as_ptr(&job.files))
                .or_insert_with(|| (Arc::clone(&job.files), 0, false));
            if lost[i] {
                e.2 = true;
            } else if !e.2 {
                e.1 = e.1.max(job.header.last_offset() as u64 + 1);
            }
        }
        for (files, end, _) in ends.values() {
            if *end > 0 {
                files.durable.advance(*end);
            }
        }
        let last = jobs.last().map_or(0, |j| j.seq);
        self.progress.update(|p: &mut Progress| {
            for (seq, e) in failed.drain(..) {
                p.fail(seq, seq, e);
            }
            p.done = p.done.max(last);
        });
    }
}

fn sync_all(unsynced: &mut Vec<Arc<Segment>>) {
    let mut seen = std::collections::HashSet::new();
    for seg in unsynced.drain(..) {
        if !seen.insert(Arc::as_ptr(&seg)) {
            continue;
        }
        if let Err(e) = seg.file.sync_data() {
            tracing::error!(file = %seg.path.display(), error = %e, "log sync failed; recent appends may be lost on power failure");
        }
    }
}
