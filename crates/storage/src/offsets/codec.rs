//! Offset changes to frame payloads and back. One frame per change, its
//! kind byte naming the change; fixed-width numbers are little-endian and
//! strings are a LEB128 byte length then UTF-8 (the journal's primitives,
//! `codec::wire`, whose decoder checks every length against what is left):
//!
//! ```text
//! 1 Commit       namespace group topic partition:u32 offset:i64
//!                leader_epoch:i32 metadata commit_ms:i64
//! 2 Delete       namespace group topic partition:u32
//! 3 DeleteGroup  namespace group
//! ```

use ferry_core::group::{Committed, OffsetChange, OffsetKey};

use crate::codec::DecodeError;
use crate::codec::wire::{Dec, Enc};
use crate::frame;

const COMMIT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_GROUP: u8 = 3;

/// A key by reference: the live map keeps its parts apart.
#[derive(Clone, Copy)]
pub(super) struct KeyRef<'a> {
    pub namespace: &'a str,
    pub group: &'a str,
    pub topic: &'a str,
    pub partition: u32,
}

impl<'a> From<&'a OffsetKey> for KeyRef<'a> {
    fn from(k: &'a OffsetKey) -> Self {
        KeyRef {
            namespace: &k.namespace,
            group: &k.group,
            topic: &k.topic,
            partition: k.partition,
        }
    }
}

fn put_key(e: &mut Enc<'_>, k: KeyRef<'_>) {
    e.str(k.namespace);
    e.str(k.group);
    e.str(k.topic);
    e.u32_le(k.partition);
}

/// Appends the frame of a commit of `key`; returns the frame's size.
pub(super) fn put_commit(out: &mut Vec<u8>, key: KeyRef<'_>, c: &Committed) -> usize {
    frame::put(out, |b| {
        let mut e = Enc(b);
        put_key(&mut e, key);
        e.i64_le(c.offset);
        e.i32_le(c.leader_epoch);
        e.str(&c.metadata);
        e.i64_le(c.commit_ms);
        COMMIT
    })
}

/// Appends the frame of `change`; returns the frame's size.
pub(super) fn put(out: &mut Vec<u8>, change: &OffsetChange) -> usize {
    match change {
        OffsetChange::Commit(k, c) => put_commit(out, k.into(), c),
        OffsetChange::Delete(k) => frame::put(out, |b| {
            put_key(&mut Enc(b), k.into());
            DELETE
        }),
        OffsetChange::DeleteGroup { namespace, group } => frame::put(out, |b| {
            let mut e = Enc(b);
            e.str(namespace);
            e.str(group);
            DELETE_GROUP
        }),
    }
}

fn get_key(d: &mut Dec<'_>) -> Result<OffsetKey, DecodeError> {
    Ok(OffsetKey {
        namespace: d.str()?,
        group: d.str()?,
        topic: d.str()?,
        partition: d.u32_le()?,
    })
}

/// Decodes the change a frame of `kind` holds; the payload must be used
/// up exactly.
pub(super) fn decode(kind: u8, payload: &[u8]) -> Result<OffsetChange, DecodeError> {
    let mut d = Dec::new(payload);
    let change = match kind {
        COMMIT => {
            let key = get_key(&mut d)?;
            OffsetChange::Commit(
                key,
                Committed {
                    offset: d.i64_le()?,
                    leader_epoch: d.i32_le()?,
                    metadata: d.str()?,
                    commit_ms: d.i64_le()?,
                },
            )
        }
        DELETE => OffsetChange::Delete(get_key(&mut d)?),
        DELETE_GROUP => OffsetChange::DeleteGroup {
            namespace: d.str()?,
            group: d.str()?,
        },
        tag => {
            return Err(DecodeError::Tag {
                what: "offset change",
                tag,
            });
        }
    };
    d.finish()?;
    Ok(change)
}
