//! Kept keys: the deduplication keys of a segment the journal reclaims
//! while their windows are still open, in a small file of their own.
//!
//! A FIFO queue's window (five minutes for SQS) must survive a restart, and
//! recovery rebuilds it from the sends' `Enqueued` records. Keeping those
//! records' segments until the windows close would pin every later segment
//! too (segments go oldest first), so a short burst would hold its whole
//! journal for the length of the window. Instead, once a segment holds
//! nothing live, its still-open keys are copied out as `DedupKept` records
//! (no bodies, no headers) and the segment goes; the file goes once its
//! last window is over. Each key is copied at most once: the file is not
//! part of the segment chain, so nothing ever has to move it on again.
//!
//! `<id>.keys`, named after the segment it came from: a header (magic,
//! version, the segment's id, when the last window ends, a CRC), then
//! frames as in a segment, sealed as that segment's messages were (with
//! its data keys, which stay while the file does). The file is written
//! whole under a temporary name, synced and renamed, so a crash leaves all
//! of it or none.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::clock::Timestamp;
use ferry_core::message::Message;
use ferry_core::queue::content_dedup_id;
use ferry_core::store::{QueueId, Record, StoreError};

use super::{Shared, io_error, sealing};
use crate::{frame, segment};

pub(super) const HEADER: usize = 32;
const MAGIC: &[u8; 8] = b"FERRYKEY";
const VERSION: u32 = 1;

pub(super) fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.keys"))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".keys")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Ids of the kept-keys files in `dir`, oldest first.
pub(super) fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(id) = entry?.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

pub(super) fn header(id: u64, until: Timestamp) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    h[20..28].copy_from_slice(&until.as_millis().to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// When the last window of kept-keys file `id` ends, from its header.
fn check_header(data: &[u8], id: u64) -> Result<Timestamp, String> {
    let h = data
        .get(..HEADER)
        .ok_or_else(|| format!("header is {} of {HEADER} bytes", data.len()))?;
    if &h[..8] != MAGIC {
        return Err("not a ferry kept-keys file (bad magic)".into());
    }
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&h[r]);
        u64::from_le_bytes(b)
    };
    if crc32c::crc32c(&h[..28]) != word(28..32) as u32 {
        return Err("header checksum mismatch".into());
    }
    let version = word(8..12) as u32;
    if version != VERSION {
        return Err(format!(
            "format version {version}; this build reads version {VERSION}"
        ));
    }
    if word(12..20) != id {
        return Err("header names another segment id".into());
    }
    Ok(Timestamp(word(20..28)))
}

/// A kept record, and how its send was sealed in the segment (see
/// [`sealing::sealed_under`]): it is sealed the same way, with the same
/// data keys, so it reveals no more than the segment did and needs no key
/// the segment did not.
pub(super) type Kept = (Record, Option<Option<String>>);

/// The keys of segment `id`'s sends whose windows are still open at `now`,
/// for the deduplicating queues in `queues` (window, content-based),
/// and when the last of them ends. The segment is wholly written and
/// was checked at start or written since: damage here is an error, and the
/// segment then simply waits for its windows.
pub(super) fn collect(
    shared: &Shared,
    id: u64,
    queues: &HashMap<QueueId, (Duration, bool)>,
    now: Timestamp,
) -> Result<(Vec<Kept>, Timestamp), StoreError> {
    let p = segment::path(&shared.dir, id);
    let data = std::fs::read(&p).map_err(|e| io_error(&p, e))?;
    let corrupt = |offset: usize, detail: String| StoreError::Corrupt {
        file: p.display().to_string(),
        offset: offset as u64,
        detail,
    };
    segment::check_header(&data, id).map_err(|d| corrupt(0, d))?;
    let mut kept = Vec::new();
    let mut last = Timestamp(0);
    let mut pos = segment::HEADER as usize;
    while pos < data.len() {
        let f = frame::read(&data[pos..]).map_err(|e| corrupt(pos, e.to_string()))?;
        let offset = pos;
        pos += f.size;
        // Only message records can be sends; topology is never sealed and
        // never a send, so it need not be opened or decoded at all.
        if !is_message_frame(f.kind) {
            continue;
        }
        let r = super::decode_frame(
            shared.keyring.as_ref(),
            id,
            offset as u64,
            f.kind,
            f.payload,
        )
        .map_err(|e| corrupt(offset, e.to_string()))?;
        // The sends recovery would open a window for (see its replay).
        let Record::Enqueued {
            queue,
            seq,
            at,
            message,
            replaces: None,
            forwarded: false,
            ..
        } = r
        else {
            continue;
        };
        let Some((window, by_content)) = queues.get(&queue) else {
            continue;
        };
        let until = at.plus(*window);
        let token = match (&message.dedup_id, by_content) {
            (Some(t), _) => t.clone(),
            (None, true) => content_dedup_id(&message.body),
            (None, false) => continue,
        };
        if until <= now {
            continue;
        }
        last = last.max(until);
        let mut stand_in = Message::new(bytes::Bytes::new());
        stand_in.id = message.id;
        stand_in.published_at = message.published_at;
        stand_in.group_id = message.group_id.clone();
        stand_in.dedup_id = Some(token);
        let record = Record::DedupKept {
            queue,
            seq,
            at,
            message: Arc::new(stand_in),
        };
        kept.push((record, sealing::sealed_under(f.kind, f.payload)));
    }
    Ok((kept, last))
}

/// Whether a frame of this kind can hold a message record (sealed ones
/// always do; in the clear, by the record's own kind).
fn is_message_frame(kind: u8) -> bool {
    kind == crate::seal::SEALED
        || kind == crate::seal::SEALED_NAMED
        || kind == crate::codec::ENQUEUED
}

/// Writes kept-keys file `id` whole and durably: under a temporary name,
/// synced, renamed, the directory synced. Data keys made for it are saved
/// before it appears.
pub(super) fn write(
    shared: &Shared,
    id: u64,
    records: &[Kept],
    until: Timestamp,
) -> Result<(), StoreError> {
    let mut bytes = header(id, until).to_vec();
    for (r, how) in records {
        let offset = bytes.len() as u64;
        let sealed = match (&shared.keyring, how) {
            (Some(k), Some(name)) => Some(sealing::seal_under(k, name.as_deref(), id, offset, r)?),
            (None, Some(_)) => {
                return Err(StoreError::Io("a sealed send, and no keys".into()));
            }
            (_, None) => None,
        };
        sealing::put_frame(&mut bytes, r, sealed.as_ref());
    }
    if let Some(k) = &shared.keyring {
        k.persist()
            .map_err(|e| StoreError::Io(format!("saving the encryption keys: {e}")))?;
    }
    let dir = &shared.dir;
    let tmp = dir.join(format!("{id:020}.keys.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_error(&tmp, e))?;
    f.sync_data().map_err(|e| io_error(&tmp, e))?;
    let to = path(dir, id);
    std::fs::rename(&tmp, &to).map_err(|e| io_error(&to, e))?;
    segment::sync_dir(dir).map_err(|e| io_error(dir, e))
}

/// Reads kept-keys file `id` back: hands its records to `visit` unless its
/// windows are all over by `now`; returns when the last ends. Damage stops
/// the start (naming file and offset) unless `repair`, which skips it.
pub(super) fn read(
    shared: &Shared,
    id: u64,
    now: Timestamp,
    visit: &mut dyn FnMut(Record),
) -> Result<Timestamp, StoreError> {
    let p = path(&shared.dir, id);
    let name = p.display().to_string();
    let data = std::fs::read(&p).map_err(|e| io_error(&p, e))?;
    let corrupt = |offset: usize, detail: String| StoreError::Corrupt {
        file: name.clone(),
        offset: offset as u64,
        detail,
    };
    let repair = shared.config.repair;
    let until = match check_header(&data, id) {
        Ok(u) => u,
        Err(why) if repair => {
            tracing::error!(file = %name, reason = %why, "repair: skipping an unreadable kept-keys file; duplicates of its sends may be accepted again");
            return Ok(Timestamp(0));
        }
        Err(why) => return Err(corrupt(0, why)),
    };
    if until <= now {
        return Ok(until);
    }
    let mut pos = HEADER;
    while pos < data.len() {
        let f = match frame::read(&data[pos..]) {
            Ok(f) => f,
            Err(e) if repair => {
                tracing::error!(file = %name, offset = pos, error = %e, "repair: skipping the damaged rest of a kept-keys file");
                break;
            }
            Err(e) => {
                return Err(corrupt(
                    pos,
                    format!("{e} (start with --repair to skip it)"),
                ));
            }
        };
        match super::decode_frame(shared.keyring.as_ref(), id, pos as u64, f.kind, f.payload) {
            Ok(r @ Record::DedupKept { .. }) => visit(r),
            // A missing key is not damage: skipping would forget the keys.
            Err(e @ super::Unreadable::NoKey(_)) => {
                return Err(corrupt(pos, format!("cannot open a sealed record: {e}")));
            }
            other => {
                let why = match other {
                    Err(e) => format!("record does not decode: {e}"),
                    Ok(_) => "a record that is not a kept key".to_owned(),
                };
                if !repair {
                    return Err(corrupt(pos, why));
                }
                tracing::error!(file = %name, offset = pos, error = %why, "repair: skipping a damaged kept key");
            }
        }
        pos += f.size;
    }
    Ok(until)
}

/// Deletes kept-keys file `id` (its windows are over).
pub(super) fn remove(dir: &Path, id: u64) -> std::io::Result<()> {
    match std::fs::remove_file(path(dir, id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes what a crash left of files being written (`.keys.tmp`).
pub(super) fn remove_partial(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".keys.tmp"))
            .is_some()
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
