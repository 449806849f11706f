//! Reading the journal back at start: every segment in order, every frame
//! checked. A torn tail of the newest segment is cut off with a warning;
//! damage anywhere else stops the start, naming file and offset, unless
//! repair is on, which skips the damage and logs what was lost.

use std::io::Write;

use ferry_core::store::{Location, Record, StoreError};

use super::writer::Head;
use super::{Shared, State, io_error, kept, location};
use crate::{codec, frame, segment};

pub(super) fn replay(
    shared: &Shared,
    st: &mut State,
    visit: &mut dyn FnMut(Record, Option<Location>),
) -> Result<Option<Head>, StoreError> {
    let dir = &shared.dir;
    let repair = shared.config.repair;
    let ids = segment::list(dir).map_err(|e| io_error(dir, e))?;
    for (i, &id) in ids.iter().enumerate() {
        let newest = i + 1 == ids.len();
        let path = segment::path(dir, id);
        let name = path.display().to_string();
        let data = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        if let Err(why) = segment::check_header(&data, id) {
            let nothing_valid = frame::resync(&data, segment::HEADER as usize).is_none();
            if newest && (data.len() < segment::HEADER as usize || nothing_valid) {
                // Created, but the crash came before its header (or anything
                // after it) reached the disk: it holds nothing.
                tracing::warn!(file = %name, reason = %why, "newest segment was torn at creation; removing it");
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                forget_keys(shared, id);
                continue;
            }
            if repair {
                tracing::error!(file = %name, reason = %why, "repair: skipping an unreadable segment (moved aside as .corrupt)");
                let aside = path.with_extension("seg.corrupt");
                std::fs::rename(&path, &aside).map_err(|e| io_error(&path, e))?;
                // Its data keys stay: what was set aside may yet be salvaged.
                continue;
            }
            return Err(StoreError::Corrupt {
                file: name,
                offset: 0,
                detail: why,
            });
        }
        st.accounts.add_segment(id);
        let mut pos = segment::HEADER as usize;
        let mut end = data.len();
        while pos < end {
            match frame::read(&data[pos..end]) {
                Ok(f) => {
                    let at = location(id, pos as u64);
                    let decoded = super::decode_frame(
                        shared.keyring.as_ref(),
                        id,
                        pos as u64,
                        f.kind,
                        f.payload,
                    )
                    .and_then(|r| match r {
                        // Written only to kept-keys files: one in a segment
                        // was put there (sealed ones open alike in both).
                        Record::DedupKept { .. } => Err(super::Unreadable::Damaged(
                            "a kept deduplication key in a segment".into(),
                        )),
                        r => Ok(r),
                    });
                    match decoded {
                        Ok(r) => {
                            st.accounts.apply(&r, at);
                            let loc = matches!(r, Record::Enqueued { .. }).then_some(at);
                            visit(r, loc);
                        }
                        // A missing key is not damage: skipping would lose
                        // every sealed message of the segment for good.
                        Err(e @ super::Unreadable::NoKey(_)) => {
                            return Err(StoreError::Corrupt {
                                file: name,
                                offset: pos as u64,
                                detail: format!("cannot open a sealed record: {e}"),
                            });
                        }
                        Err(e) if repair => {
                            tracing::error!(file = %name, offset = pos, error = %e, "repair: skipping a record that does not decode");
                        }
                        Err(e) => {
                            return Err(StoreError::Corrupt {
                                file: name,
                                offset: pos as u64,
                                detail: format!("record does not decode: {e}"),
                            });
                        }
                    }
                    pos += f.size;
                }
                Err(fe) => {
                    let next = frame::resync(&data[..end], pos + 1);
                    if newest && next.is_none() {
                        tracing::warn!(file = %name, offset = pos, lost_bytes = end - pos, reason = %fe, "torn tail: cutting the newest segment back to its last whole record");
                        truncate(&path, pos as u64)?;
                        end = pos;
                        break;
                    }
                    if !repair {
                        return Err(StoreError::Corrupt {
                            file: name,
                            offset: pos as u64,
                            detail: format!("{fe} (start with --repair to skip it)"),
                        });
                    }
                    let resume = next.unwrap_or(end);
                    tracing::error!(file = %name, offset = pos, lost_bytes = resume - pos, reason = %fe, "repair: skipping damaged bytes; records in them are lost");
                    pos = resume;
                }
            }
        }
    }
    recover_kept(shared, st, &ids, visit)?;
    // A queue naming a key that was not given could take no message: refused
    // before anything is written.
    if let Some((ns, q, key)) = st
        .accounts
        .queue_keys()
        .find(|(_, _, key)| !super::holds_key(shared, key))
    {
        return Err(StoreError::Io(format!(
            "queue '{q}' (namespace '{ns}') seals its messages with the key '{key}', which was not given"
        )));
    }
    // Appends always go to a new segment that starts with a checkpoint of
    // the recovered topology: the newest old one may lack its own (a crash
    // right after it was created), and older segments must stay deletable.
    let id = ids.last().map_or(1, |l| l + 1);
    let len = create_with_checkpoint(shared, st, id)?;
    st.head = id;
    st.head_len = len;
    *shared
        .written
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = (id, len);
    let file =
        segment::open_append(dir, id, len).map_err(|e| io_error(&segment::path(dir, id), e))?;
    Ok(Some(Head {
        segment: id,
        file,
        len,
    }))
}

/// A segment gone at recovery takes its data keys with it (saved before the
/// next write), so no key stays needed for it.
fn forget_keys(shared: &Shared, id: u64) {
    if let Some(k) = &shared.keyring {
        k.forget(&[id]);
    }
}

fn truncate(path: &std::path::Path, len: u64) -> Result<(), StoreError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    f.set_len(len).map_err(|e| io_error(path, e))?;
    f.sync_all().map_err(|e| io_error(path, e))
}

/// Creates segment `id` beginning with a topology checkpoint; returns its length.
fn create_with_checkpoint(shared: &Shared, st: &mut State, id: u64) -> Result<u64, StoreError> {
    let path = segment::path(&shared.dir, id);
    let mut f = segment::create(&shared.dir, id).map_err(|e| io_error(&path, e))?;
    let mut bytes = Vec::new();
    for r in st.accounts.topology_records() {
        frame::put(&mut bytes, |out| codec::encode(&r, out));
    }
    f.write_all(&bytes).map_err(|e| io_error(&path, e))?;
    f.sync_data().map_err(|e| io_error(&path, e))?;
    st.accounts.add_segment(id);
    Ok(segment::HEADER + bytes.len() as u64)
}

/// Hands back the keys kept out of reclaimed segments (after the segments,
/// so their queues are declared); deletes the files whose windows are
/// over, and what a crash left half written.
fn recover_kept(
    shared: &Shared,
    st: &mut State,
    segments: &[u64],
    visit: &mut dyn FnMut(Record, Option<Location>),
) -> Result<(), StoreError> {
    let dir = &shared.dir;
    kept::remove_partial(dir).map_err(|e| io_error(dir, e))?;
    let now = super::system_now();
    for id in kept::list(dir).map_err(|e| io_error(dir, e))? {
        let until = kept::read(shared, id, now, &mut |r| visit(r, None))?;
        if until > now {
            // The segment, if a crash kept it, no longer waits for them.
            st.accounts.carried(id, until);
            continue;
        }
        kept::remove(dir, id).map_err(|e| io_error(&kept::path(dir, id), e))?;
        if segments.binary_search(&id).is_err() {
            forget_keys(shared, id);
        }
    }
    Ok(())
}
