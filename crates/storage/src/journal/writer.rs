//! The writer thread: takes everything appended since its last write,
//! writes it, syncs per policy, settles the commits, deletes dead segments.

use std::fs::File;
use std::io::Write;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use ferry_core::store::StoreError;

use super::{Chunk, FsyncPolicy, Shared, io_error};
use crate::segment;

/// The segment file being appended to.
pub(super) struct Head {
    pub segment: u64,
    pub file: File,
    pub len: u64,
}

pub(super) fn run(shared: &Shared, mut head: Option<Head>) {
    let policy = shared.config.fsync;
    let mut settled: u64 = 0;
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    // Group commit: publishers released by one sync send their next
    // messages together, but the writer wakes for the first of them. So
    // when fewer commits are pending than the last batch held, it waits a
    // little (at most half a sync) for the rest to arrive. One publisher
    // never waits: its batches hold one commit.
    let mut last_batch: u64 = 0;
    let mut sync_time = Duration::ZERO;
    loop {
        let (chunks, closing, sweep) = {
            let mut st = shared.lock();
            st.wake_at = st.last_commit + 1;
            loop {
                if !st.chunks.is_empty() || st.closed || st.sweep {
                    break;
                }
                match policy {
                    FsyncPolicy::Interval(every) if unsynced => {
                        let waited = last_sync.elapsed();
                        if waited >= every {
                            break;
                        }
                        st = shared
                            .work
                            .wait_timeout(st, every - waited)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    _ => st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner),
                }
            }
            if policy == FsyncPolicy::Always && !st.closed && !st.chunks.is_empty() {
                let gather_until = Instant::now() + sync_time / 2;
                st.wake_at = settled + last_batch;
                while st.last_commit - settled < last_batch && !st.closed {
                    let now = Instant::now();
                    if now >= gather_until {
                        break;
                    }
                    st = shared
                        .work
                        .wait_timeout(st, gather_until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            // Writing: appends need not wake anyone until it waits again.
            st.wake_at = u64::MAX;
            (
                std::mem::take(&mut st.chunks),
                st.closed,
                std::mem::take(&mut st.sweep),
            )
        };
        let last = chunks
            .iter()
            .map(|c| c.last_commit)
            .max()
            .unwrap_or(settled)
            // Chunks a refused append left (a checkpoint alone) carry no
            // commit of their own.
            .max(settled);
        if !chunks.is_empty() {
            let sync_now = match policy {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(every) => closing || last_sync.elapsed() >= every,
                FsyncPolicy::Never => closing,
            };
            let started = Instant::now();
            let written = write_chunks(shared, &mut head, &chunks).and_then(|()| {
                if sync_now {
                    sync(shared, &head)
                } else {
                    Ok(())
                }
            });
            if sync_now {
                sync_time = started.elapsed();
            }
            last_batch = last - settled;
            match written {
                Ok(()) => {
                    if sync_now {
                        unsynced = false;
                        last_sync = Instant::now();
                    } else {
                        unsynced = true;
                    }
                    // On disk (or in the OS, which `delete_dead` syncs before
                    // deleting anything): counted before the commits complete.
                    let unkept = {
                        let mut st = shared.lock();
                        st.accounts.written(last);
                        st.recycle(chunks)
                    };
                    drop(unkept);
                    shared.progress.update(|p| p.done = p.done.max(last));
                    settled = last;
                }
                Err(e) => {
                    settled = fail(shared, &mut head, settled, last, e);
                    unsynced = false;
                }
            }
            delete_dead(shared, &head, &mut unsynced);
        } else {
            if unsynced {
                // The interval ran out with nothing new: sync what was written.
                if let Err(e) = sync(shared, &head) {
                    tracing::error!(error = %e, "journal sync failed; recent confirmed messages may be lost on power failure");
                }
                unsynced = false;
                last_sync = Instant::now();
            }
            if sweep {
                delete_dead(shared, &head, &mut unsynced);
            }
        }
        if closing {
            if unsynced && let Err(e) = sync(shared, &head) {
                tracing::error!(error = %e, "final journal sync failed");
            }
            return;
        }
    }
}

fn write_chunks(
    shared: &Shared,
    head: &mut Option<Head>,
    chunks: &[Chunk],
) -> Result<(), StoreError> {
    // Data keys made since the last write go to disk before any record
    // sealed with them.
    if let Some(k) = &shared.keyring {
        k.persist()
            .map_err(|e| StoreError::Io(format!("saving the encryption keys: {e}")))?;
    }
    for chunk in chunks {
        if chunk.create {
            // The segment being left must be on disk before commits in it
            // complete or anything depends on it (once per segment).
            sync(shared, head)?;
            let file = segment::create(&shared.dir, chunk.segment)
                .map_err(|e| io_error(&segment::path(&shared.dir, chunk.segment), e))?;
            *head = Some(Head {
                segment: chunk.segment,
                file,
                len: segment::HEADER,
            });
            note_written(shared, chunk.segment, segment::HEADER);
        }
        let Some(h) = head.as_mut().filter(|h| h.segment == chunk.segment) else {
            return Err(StoreError::Io(format!(
                "journal segment {} is not open for writing",
                chunk.segment
            )));
        };
        if let Err(e) = h.file.write_all(&chunk.bytes) {
            // Cut back to the last good frame so the segment stays readable.
            if let Err(t) = h.file.set_len(h.len) {
                tracing::error!(error = %t, "could not cut a failed write back");
            }
            return Err(io_error(&segment::path(&shared.dir, h.segment), e));
        }
        h.len += chunk.bytes.len() as u64;
        note_written(shared, h.segment, h.len);
    }
    let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
    stats.batches += 1;
    let bytes = chunks.iter().map(|c| c.bytes.len() as u64).sum::<u64>();
    stats.bytes_written += bytes;
    metrics::counter!("ferry_journal_bytes_written_total").increment(bytes);
    Ok(())
}

fn note_written(shared: &Shared, segment: u64, len: u64) {
    *shared
        .written
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = (segment, len);
}

fn sync(shared: &Shared, head: &Option<Head>) -> Result<(), StoreError> {
    shared
        .stats
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .syncs += 1;
    let started = Instant::now();
    let r = match head {
        Some(h) => h
            .file
            .sync_data()
            .map_err(|e| io_error(&segment::path(&shared.dir, h.segment), e)),
        None => return Ok(()),
    };
    metrics::histogram!("ferry_journal_fsync_seconds").record(started.elapsed().as_secs_f64());
    r
}

/// A write or sync failed: the batch's commits fail, and so do the pending
/// bytes bound for the same segment (their offsets assumed this batch was
/// there). The next append starts a new segment. Returns the new settled mark.
fn fail(shared: &Shared, head: &mut Option<Head>, settled: u64, last: u64, e: StoreError) -> u64 {
    let broken = head.as_ref().map(|h| h.segment);
    tracing::error!(error = %e, segment = ?broken, "journal write failed; publishes waiting on it get an error");
    let mut through = last;
    {
        let mut st = shared.lock();
        if let Some(b) = broken {
            st.chunks.retain(|c| {
                if c.segment == b {
                    through = through.max(c.last_commit);
                    false
                } else {
                    true
                }
            });
            if st.head == b {
                st.roll_next = true;
            }
        } else {
            st.roll_next = true;
        }
        st.accounts.failed(through);
    }
    *head = None;
    shared
        .progress
        .update(|p| p.fail(settled + 1, through, e.clone()));
    through
}

/// Deletes the oldest segments that hold nothing live any more (never the
/// one being written). What made them dead is synced first.
fn delete_dead(shared: &Shared, head: &Option<Head>, unsynced: &mut bool) {
    let Some(current) = head.as_ref().map(|h| h.segment) else {
        return;
    };
    let now = {
        use ferry_core::clock::Clock;
        ferry_core::clock::SystemClock::new().now()
    };
    let dead = shared.lock().accounts.take_dead_prefix(current, now);
    if dead.is_empty() {
        return;
    }
    if *unsynced {
        if sync(shared, head).is_err() {
            return;
        }
        *unsynced = false;
    }
    let mut deleted = Vec::with_capacity(dead.len());
    for id in &dead {
        let p = segment::path(&shared.dir, *id);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                deleted.push(*id);
                tracing::debug!(segment = id, "deleted journal segment with nothing live");
            }
            Err(e) => {
                // Stop here: deleting a newer segment while an older one
                // stays would break the oldest-first rule replay relies on.
                // The rest are dead too; a later start deletes them.
                tracing::warn!(error = %e, file = %p.display(), "could not delete a dead segment");
                break;
            }
        }
    }
    if let Err(e) = segment::sync_dir(&shared.dir) {
        tracing::warn!(error = %e, "could not sync the journal directory");
    }
    if let Some(k) = &shared.keyring {
        // Once the segments are gone, so are their keys (saved at the next
        // write or here), but for those a kept-keys file still needs. Asked
        // once the files are gone: a kept-keys file that expired meanwhile
        // left the keys to whoever deleted the segment last.
        {
            let st = shared.lock();
            deleted.retain(|id| !st.accounts.keeps(*id));
        }
        k.forget(&deleted);
        if let Err(e) = k.persist() {
            tracing::warn!(error = %e, "could not save the encryption keys");
        }
    }
}
