//! A store that keeps its records in memory: nothing survives the process,
//! but a broker reopened on the same `MemoryStore` recovers exactly as it
//! would from a journal, so recovery is tested without touching disk.

use std::sync::Mutex;

use super::state::DurableState;
use super::{Commit, Location, Record, Store, StoreError};

/// Compaction runs when the log has grown this much since the last one.
const COMPACT_MIN_RECORDS: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    records: Vec<Record>,
    /// Length of `records` right after the last compaction.
    compacted_len: usize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records currently held (after compaction).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|l| l.records.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for MemoryStore {
    fn append(
        &self,
        records: &mut Vec<Record>,
        locations: &mut Vec<Location>,
    ) -> Result<Commit, StoreError> {
        let mut log = self.inner.lock().map_err(|_| StoreError::Closed)?;
        // Positions in the log serve as locations; nothing reads them back.
        for r in records.iter() {
            if matches!(r, Record::Enqueued { .. }) {
                locations.push(Location(log.records.len() as u64));
            }
        }
        log.records.append(records);
        let len = log.records.len();
        if len >= COMPACT_MIN_RECORDS && len >= 2 * log.compacted_len {
            // Replaying into the live state drops acked messages and deleted
            // queues; writing it back is what a journal's compaction does too.
            let state = DurableState::from_records(log.records.drain(..).map(|r| (r, None)));
            log.records = state.to_records();
            log.compacted_len = log.records.len().max(COMPACT_MIN_RECORDS / 2);
        }
        Ok(Commit::done())
    }

    fn recover(&self, visit: &mut dyn FnMut(Record, Option<Location>)) -> Result<(), StoreError> {
        let log = self.inner.lock().map_err(|_| StoreError::Closed)?;
        for r in log.records.iter() {
            visit(r.clone(), None);
        }
        Ok(())
    }
}
