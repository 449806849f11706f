//! ferry's durable storage: the segmented journal that implements the
//! core's `Store` trait, with group commit, an explicit fsync policy and
//! crash recovery.
//!
//! - [`frame`]: length + CRC32C framing of every record on disk.
//! - [`codec`]: records to bytes and back (the segment header carries the
//!   format version, 2 now: see `segment`).
//! - [`segment`]: segment files and their headers.
//! - [`journal`]: the journal itself.
//! - [`seal`]: encryption at rest of message records (envelope keys).
//! - [`log`]: the streams engine's segment logs, one per partition.
//! - [`offsets`]: consumer groups' committed offsets, in a compacted log.

pub mod codec;
pub mod frame;
pub mod journal;
pub mod log;
pub mod offsets;
pub mod seal;
pub mod segment;

pub use journal::{FsyncPolicy, Journal, JournalConfig, JournalStats, segment_of};
pub use seal::{Keyring, MasterKey, SealError, valid_key_name};
