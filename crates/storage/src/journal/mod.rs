//! The journal: one append-only log of segment files for every durable
//! change of a broker, written by one thread with group commit.
//!
//! - `append` (any thread) encodes records into the pending buffer and
//!   returns at once with a [`Commit`]; the writer thread takes everything
//!   pending, writes it with one call per segment, runs one `fdatasync`
//!   (policy `always`), and completes every commit of the batch together.
//! - Each segment starts with a checkpoint of the topology (namespaces,
//!   queues, routers, bindings) as it was when the segment began, so a
//!   segment's topology records are never needed once a newer one exists.
//! - Each segment counts its live messages (enqueued, not yet removed). The
//!   oldest segments are deleted once none of theirs are live. Deletion
//!   only ever takes the oldest segment, so a removal record never outlives
//!   the message it removes.

mod account;
mod kept;
mod recover;
mod sealing;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ferry_core::clock::Timestamp;
use ferry_core::store::{Commit, Location, QueueId, Record, Store, StoreError, Tracker};

use crate::codec;
use crate::frame;
use crate::seal::{Keyring, MasterKey};
use crate::segment;

use account::Accounts;
pub(crate) use sealing::{Unreadable, decode_frame};

/// When the journal calls `fdatasync`, and what each choice risks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch, before any of its commits complete: a confirmed
    /// message survives a crash of the process and of the machine.
    Always,
    /// Commits complete once written to the OS; a sync runs at this
    /// interval. A process crash loses nothing confirmed; a power loss or
    /// kernel crash may lose up to the interval's confirmed messages.
    Interval(Duration),
    /// Commits complete once written to the OS, which syncs when it likes:
    /// a power loss may lose any amount of recent confirmed messages.
    Never,
}

#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// A segment is closed and a new one begun past this size.
    pub segment_size: u64,
    pub fsync: FsyncPolicy,
    /// On recovery, skip corrupt records (logging what was lost) instead of
    /// refusing to start.
    pub repair: bool,
    /// Seal message records with this master key's data keys (see
    /// [`crate::seal`]); an encrypted journal cannot be opened without it.
    pub encryption: Option<Arc<MasterKey>>,
    /// Master keys queues may name to seal their messages with instead
    /// ([`ferry_core::queue::QueueConfig::encryption_key`]), by name.
    pub queue_keys: BTreeMap<String, Arc<MasterKey>>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_size: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
            repair: false,
            encryption: None,
            queue_keys: BTreeMap::new(),
        }
    }
}

/// Segments read back for their deduplication keys per
/// [`Journal::carry_dedup_windows`] call.
const CARRY_PER_CALL: usize = 16;

/// The wall clock, as windows are kept by it.
fn system_now() -> Timestamp {
    use ferry_core::clock::Clock;
    ferry_core::clock::SystemClock::new().now()
}

/// The largest segment size accepted: locations keep offsets in 32 bits.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

pub(crate) fn location(segment: u64, offset: u64) -> Location {
    Location((segment << 32) | offset)
}

/// The segment a location is in.
pub fn segment_of(loc: Location) -> u64 {
    loc.0 >> 32
}

/// Bytes bound for one segment, and the last commit they carry.
struct Chunk {
    segment: u64,
    /// The writer creates the segment before writing this chunk.
    create: bool,
    bytes: Vec<u8>,
    last_commit: u64,
}

struct State {
    recovered: bool,
    closed: bool,
    /// What the writer has not taken yet, in order.
    chunks: Vec<Chunk>,
    /// The commit number of the newest append.
    last_commit: u64,
    /// The segment appends go to, and its length once all pending bytes are written.
    head: u64,
    head_len: u64,
    accounts: Accounts,
    /// The writer failed on the head segment: the next append starts a new one.
    roll_next: bool,
    /// Appends wake the writer once `last_commit` reaches this (it waits for
    /// one commit when idle, for a batch's worth when gathering, for none
    /// while writing): a futex wake per append would cost more than the append.
    wake_at: u64,
    /// Segments may have become deletable without a write (their keys were
    /// carried out): the writer looks at once.
    sweep: bool,
    /// Buffers of written chunks, emptied, for new chunks: a fresh buffer
    /// would be regrown (and copied) on every batch.
    free_buffers: Vec<Vec<u8>>,
}

/// Free chunk buffers kept, and the largest kept (a burst of big messages
/// must not pin its buffers for good).
const FREE_BUFFERS: usize = 4;
const FREE_BUFFER_MAX: usize = 4 << 20;

impl State {
    fn buffer(&mut self) -> Vec<u8> {
        self.free_buffers.pop().unwrap_or_default()
    }

    /// Takes back the buffers of chunks the writer is done with; returns
    /// those it does not keep, to be freed outside the lock.
    fn recycle(&mut self, chunks: Vec<Chunk>) -> Vec<Chunk> {
        let mut rest = Vec::new();
        for c in chunks {
            if self.free_buffers.len() < FREE_BUFFERS && c.bytes.capacity() <= FREE_BUFFER_MAX {
                let mut b = c.bytes;
                b.clear();
                self.free_buffers.push(b);
            } else {
                rest.push(c);
            }
        }
        rest
    }
}

/// Counters of the writer, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// `append` calls.
    pub commits: u64,
    /// Writes of everything pending (each one batch of commits).
    pub batches: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    pub bytes_written: u64,
}

struct Shared {
    dir: PathBuf,
    /// How far the writer has written: (segment, length). Records before
    /// it can be read back.
    written: Mutex<(u64, u64)>,
    stats: Mutex<JournalStats>,
    config: JournalConfig,
    /// The data keys, when the journal is encrypted.
    keyring: Option<Keyring>,
    state: Mutex<State>,
    /// Wakes the writer.
    work: Condvar,
    /// Settles commits as the writer gets through them.
    progress: Arc<Tracker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A durable [`Store`] in a directory of segment files.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`. Nothing is read
    /// until [`Store::recover`], which must come before any append.
    pub fn open(dir: &Path, config: JournalConfig) -> Result<Journal, StoreError> {
        if config.segment_size > MAX_SEGMENT_SIZE || config.segment_size < 4096 {
            return Err(StoreError::Io(format!(
                "segment size must be from 4 KiB to {MAX_SEGMENT_SIZE} bytes"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut on_disk = segment::list(dir).map_err(|e| io_error(dir, e))?;
        on_disk.extend(segment::list_set_aside(dir).map_err(|e| io_error(dir, e))?);
        // A kept-keys file is sealed with its gone segment's data keys.
        on_disk.extend(kept::list(dir).map_err(|e| io_error(dir, e))?);
        let keyring = Keyring::open(
            dir,
            config.encryption.as_deref(),
            &config.queue_keys,
            &on_disk,
        )
        .map_err(|e| StoreError::Io(e.to_string()))?;
        let state = State {
            recovered: false,
            closed: false,
            chunks: Vec::new(),
            last_commit: 0,
            head: 0,
            head_len: 0,
            accounts: Accounts::default(),
            roll_next: false,
            wake_at: 1,
            sweep: false,
            free_buffers: Vec::new(),
        };
        Ok(Journal {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                written: Mutex::new((0, 0)),
                stats: Mutex::new(JournalStats::default()),
                config,
                keyring,
                state: Mutex::new(state),
                work: Condvar::new(),
                progress: Tracker::new(),
            }),
            writer: Mutex::new(None),
        })
    }

    /// Writes what is pending, syncs, and stops the writer. Appends after
    /// this fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("journal writer panicked");
        }
        // What the writer settled is settled; nothing else will be.
        self.shared.progress.close();
    }

    /// The oldest segment, if compacting it is worth it: it still holds live
    /// messages, at most half of what it was given, and newer segments
    /// exist. Copy its live messages forward (`Broker::relocate` with
    /// [`segment_of`]) and it is deleted after the next write.
    pub fn sparse_oldest(&self) -> Option<u64> {
        let st = self.shared.lock();
        st.accounts.sparse_oldest(st.head)
    }

    /// Copies the deduplication keys still in their windows out of the
    /// oldest segments that hold nothing live any more, so those segments
    /// can go (see `kept`), and deletes kept-keys files whose windows are
    /// over. Blocking file I/O: run it off the async runtime. Returns how
    /// many segments were freed.
    pub fn carry_dedup_windows(&self) -> usize {
        let now = system_now();
        let mut freed = 0;
        // Bounded per call (each reads a segment back); the rest next time.
        while freed < CARRY_PER_CALL {
            let written_below = self
                .shared
                .written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            let carry = {
                let mut st = self.shared.lock();
                if st.closed {
                    break;
                }
                st.accounts.start_carry(written_below, now)
            };
            let Some(carry) = carry else {
                break;
            };
            let id = carry.segment;
            let done = kept::collect(&self.shared, id, &carry.queues, now).map(|(keys, until)| {
                if keys.is_empty() {
                    // Their queues are gone or no longer deduplicate (a
                    // file an earlier try left unsynced goes too).
                    let _ = kept::remove(&self.shared.dir, id);
                    return Ok((0, Timestamp(0)));
                }
                kept::write(&self.shared, id, &keys, until).map(|()| (keys.len(), until))
            });
            let mut st = self.shared.lock();
            match done {
                Ok(Ok((keys, until))) => {
                    tracing::debug!(
                        segment = id,
                        keys,
                        "carried a reclaimed segment's deduplication keys out"
                    );
                    st.accounts.carried(id, until);
                    st.sweep = true;
                    freed += 1;
                }
                Ok(Err(e)) => {
                    // Writing failed (a full disk?): tried again next time.
                    st.accounts.carry_failed(id, false);
                    tracing::warn!(segment = id, error = %e, "could not write a segment's deduplication keys out; it stays until their window ends");
                    break;
                }
                Err(e) => {
                    st.accounts.carry_failed(id, true);
                    tracing::error!(segment = id, error = %e, "could not read a segment's deduplication keys back; it stays until their window ends");
                }
            }
        }
        if freed > 0 {
            self.shared.work.notify_one();
        }
        self.drop_expired_kept(now);
        freed
    }

    /// Deletes the kept-keys files whose windows are all over, then the
    /// data keys only they still needed: those of segments whose file is
    /// gone too (the accounts let a segment go before the writer deletes
    /// its file, and a failed delete leaves it for the next start, which
    /// must still open it). The deletions are synced first, so no file can
    /// come back that its keys no longer open.
    fn drop_expired_kept(&self, now: Timestamp) {
        let expired = self.shared.lock().accounts.take_expired_kept(now);
        if expired.is_empty() {
            return;
        }
        let dir = &self.shared.dir;
        let mut removed = Vec::new();
        for id in expired {
            match kept::remove(dir, id) {
                Ok(()) => removed.push(id),
                Err(e) => {
                    tracing::warn!(error = %e, file = %kept::path(dir, id).display(), "could not delete an expired kept-keys file");
                }
            }
        }
        if let Err(e) = segment::sync_dir(dir) {
            tracing::warn!(error = %e, "could not sync the journal directory");
            return;
        }
        // A segment the writer deletes after this keeps its keys in the
        // file until the next start drops them (they are older than every
        // segment then): never the other way round.
        removed.retain(|id| !segment::path(dir, *id).exists());
        if let Some(k) = &self.shared.keyring
            && !removed.is_empty()
        {
            k.forget(&removed);
            if let Err(e) = k.persist() {
                tracing::warn!(error = %e, "could not save the encryption keys");
            }
        }
    }

    /// Segment ids on disk with their live message counts, oldest first.
    pub fn segments(&self) -> Vec<(u64, u64)> {
        self.shared.lock().accounts.live_by_segment()
    }

    pub fn stats(&self) -> JournalStats {
        let mut s = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        s.commits = self.shared.lock().last_commit;
        s
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        // ENOSPC
        return StoreError::Full;
    }
    StoreError::Io(format!("{}: {e}", path.display()))
}

impl State {
    /// The chunk that bytes for the head segment go to.
    fn head_chunk(&mut self) -> &mut Chunk {
        let needs_new = self.chunks.last().is_none_or(|c| c.segment != self.head);
        if needs_new {
            let bytes = self.buffer();
            self.chunks.push(Chunk {
                segment: self.head,
                create: false,
                bytes,
                last_commit: 0,
            });
        }
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }

    /// Starts a new head segment, beginning with a topology checkpoint
    /// (topology is never sealed: no data key is needed for it).
    fn roll(&mut self) {
        self.head += 1;
        self.head_len = segment::HEADER;
        self.accounts.add_segment(self.head);
        let bytes = self.buffer();
        self.chunks.push(Chunk {
            segment: self.head,
            create: true,
            bytes,
            last_commit: 0,
        });
        for r in self.accounts.topology_records() {
            let n = frame::put(&mut self.head_chunk().bytes, |out| codec::encode(&r, out));
            self.head_len += n as u64;
        }
    }

    /// Frames one record at the end of the head (a message record sealed
    /// when the journal is encrypted or its queue names a key); returns its
    /// location.
    fn put(&mut self, r: &Record, keyring: Option<&Keyring>) -> Result<Location, StoreError> {
        let loc = location(self.head, self.head_len);
        let (segment, offset) = (self.head, self.head_len);
        let sealed = match (keyring, r) {
            (Some(k), Record::Enqueued { queue, .. }) => {
                sealing::seal(k, self.accounts.key_of(*queue), segment, offset, r)?
            }
            _ => None,
        };
        let n = sealing::put_frame(&mut self.head_chunk().bytes, r, sealed.as_ref());
        if n > frame::MAX_FRAME {
            // Taken back at once: recovery would refuse such a frame.
            let chunk = self.head_chunk();
            let len = chunk.bytes.len() - n;
            chunk.bytes.truncate(len);
            return Err(StoreError::Io(format!(
                "a record of {n} bytes is larger than the journal's largest frame ({} bytes)",
                frame::MAX_FRAME
            )));
        }
        self.head_len += n as u64;
        Ok(loc)
    }
}

/// Where an append started, and where each segment it rolled to began
/// (after that segment's topology checkpoint), so that a failed append
/// leaves the buffered chunks as they were. A rolled segment stays,
/// holding only its checkpoint: that is a valid segment. No allocation
/// unless the append rolls.
struct Undo {
    locations: usize,
    /// How many chunks there were.
    chunks: usize,
    /// The head chunk's index and length then; an index past the end when
    /// the append was to start a new chunk.
    head: (usize, usize),
    /// (chunk index, length just after its checkpoint) of every segment
    /// the append rolled to.
    rolled: Vec<(usize, usize)>,
    head_len: u64,
}

impl Undo {
    fn mark(st: &State, locations: usize) -> Undo {
        let head = match st.chunks.last() {
            Some(c) if c.segment == st.head => (st.chunks.len() - 1, c.bytes.len()),
            _ => (st.chunks.len(), 0),
        };
        Undo {
            locations,
            chunks: st.chunks.len(),
            head,
            rolled: Vec::new(),
            head_len: st.head_len,
        }
    }

    /// The append rolled to a new head segment (just checkpointed).
    fn rolled(&mut self, st: &State) {
        if let Some(c) = st.chunks.last() {
            self.rolled.push((st.chunks.len() - 1, c.bytes.len()));
        }
        self.head_len = st.head_len;
    }

    fn apply(self, st: &mut State, locations: &mut Vec<Location>) {
        // A chunk the append began by rolling keeps its checkpoint: its
        // rolled entry, not the head's, says where it ends.
        if !self.rolled.iter().any(|(i, _)| *i == self.head.0)
            && let Some(c) = st.chunks.get_mut(self.head.0)
        {
            c.bytes.truncate(self.head.1);
        }
        for (i, len) in &self.rolled {
            if let Some(c) = st.chunks.get_mut(*i) {
                c.bytes.truncate(*len);
                // Written with the next commit, or settled as done.
                c.last_commit = st.last_commit;
            }
        }
        // A chunk begun by this append and now empty has nothing to write.
        let mut i = 0;
        st.chunks.retain(|c| {
            let keep = i < self.chunks || c.create || !c.bytes.is_empty();
            i += 1;
            keep
        });
        st.head_len = self.head_len;
        locations.truncate(self.locations);
    }
}

impl Store for Journal {
    fn append(
        &self,
        records: &mut Vec<Record>,
        locations: &mut Vec<Location>,
    ) -> Result<Commit, StoreError> {
        if records.is_empty() {
            return Ok(Commit::done());
        }
        let mut st = self.shared.lock();
        if st.closed {
            records.clear();
            return Err(StoreError::Closed);
        }
        if !st.recovered {
            records.clear();
            return Err(StoreError::Io("journal appended to before recovery".into()));
        }
        if st.roll_next {
            st.roll_next = false;
            st.roll();
        }
        let first_chunk = st.chunks.len().saturating_sub(1);
        // All or nothing: a record that cannot be framed (sealing failed)
        // takes back every frame this call buffered, so nothing of a
        // refused append reaches the disk and reappears after a restart.
        let mut undo = Undo::mark(&st, locations.len());
        // Messages enqueued by this same call, for removals that name none
        // (kept only when there are such removals: no allocation otherwise).
        let resolve = records
            .iter()
            .any(|r| matches!(r, Record::Removed { loc: None, .. } | Record::Purged { .. }));
        let mut batch: Vec<(QueueId, u64, Location)> = Vec::new();
        // A call holds topology records or message records, never both (the
        // core appends each declaration alone). Topology is never sealed, so
        // it cannot fail to frame and is counted at once, as a roll's
        // checkpoint needs; message records are counted once all are framed.
        let topology = records.first().is_some_and(account::is_topology);
        debug_assert!(
            records.iter().all(|r| account::is_topology(r) == topology),
            "an append mixes topology and message records"
        );
        let commit = st.last_commit + 1;
        for r in records.iter_mut() {
            if st.head_len >= self.shared.config.segment_size {
                st.roll();
                undo.rolled(&st);
            }
            account::resolve_in_place(r, &batch);
            let loc = match st.put(r, self.shared.keyring.as_ref()) {
                Ok(loc) => loc,
                Err(e) => {
                    undo.apply(&mut st, locations);
                    records.clear();
                    return Err(e);
                }
            };
            if let Record::Enqueued { queue, seq, .. } = r {
                locations.push(loc);
                if resolve {
                    batch.push((*queue, *seq, loc));
                }
            }
            if topology {
                st.accounts.apply_appended(r, loc, commit);
            }
        }
        if !topology {
            // Only an Enqueued record's count uses its location; the others
            // name their own (a removal's is the message's).
            let mut enqueued_at = locations.iter().skip(undo.locations).copied();
            let mut at = Location(0);
            for r in records.iter() {
                if matches!(r, Record::Enqueued { .. }) {
                    at = enqueued_at.next().unwrap_or(at);
                }
                st.accounts.apply_appended(r, at, commit);
            }
        }
        records.clear();
        st.last_commit = commit;
        // Every chunk this call wrote to carries its commit, so a failure
        // of any of them fails the commit.
        for c in st.chunks.iter_mut().skip(first_chunk) {
            c.last_commit = commit;
        }
        let wake = commit >= st.wake_at;
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(Commit::pending(commit, Arc::clone(&self.shared.progress)))
    }

    fn load(&self, loc: Location) -> Result<Arc<ferry_core::message::Message>, StoreError> {
        use std::os::unix::fs::FileExt;
        let (seg, offset) = (segment_of(loc), loc.0 & 0xffff_ffff);
        let path = segment::path(&self.shared.dir, seg);
        let corrupt = |detail: String| StoreError::Corrupt {
            file: path.display().to_string(),
            offset,
            detail,
        };
        let file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut header = [0u8; frame::FRAME_HEADER];
        file.read_exact_at(&mut header, offset)
            .map_err(|e| io_error(&path, e))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 || len > frame::MAX_FRAME {
            return Err(corrupt(format!("frame length {len}")));
        }
        let mut buf = vec![0u8; frame::FRAME_HEADER + len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| io_error(&path, e))?;
        let f = frame::read(&buf).map_err(|e| corrupt(e.to_string()))?;
        match decode_frame(self.shared.keyring.as_ref(), seg, offset, f.kind, f.payload) {
            Ok(Record::Enqueued { message, .. }) => Ok(message),
            Ok(_) => Err(corrupt("not a message record".into())),
            Err(e) => Err(corrupt(e.to_string())),
        }
    }

    fn loadable(&self, loc: Location) -> bool {
        let (seg, len) = *self
            .shared
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (s, o) = (segment_of(loc), loc.0 & 0xffff_ffff);
        s < seg || (s == seg && o < len)
    }

    fn recovered(&self, live: &mut dyn Iterator<Item = (QueueId, Location)>) {
        self.shared.lock().accounts.set_live(live);
    }

    fn has_key(&self, name: &str) -> bool {
        holds_key(&self.shared, name)
    }

    fn barrier(&self) -> Commit {
        let last = self.shared.lock().last_commit;
        if last == 0 {
            Commit::done()
        } else {
            Commit::pending(last, Arc::clone(&self.shared.progress))
        }
    }

    fn recover(&self, visit: &mut dyn FnMut(Record, Option<Location>)) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        if st.recovered {
            return Err(StoreError::Io("journal recovered twice".into()));
        }
        let head_file = recover::replay(&self.shared, &mut st, visit)?;
        st.recovered = true;
        drop(st);
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("ferry-journal".into())
            .spawn(move || writer::run(&shared, head_file))
            .map_err(|e| StoreError::Io(format!("starting the journal writer: {e}")))?;
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// Whether queues may name key `name`: a valid name of a key given (never
/// the journal's own, whose slot is the empty name).
fn holds_key(shared: &Shared, name: &str) -> bool {
    crate::seal::valid_key_name(name)
        && shared
            .keyring
            .as_ref()
            .is_some_and(|k| k.has_key(Some(name)))
}
