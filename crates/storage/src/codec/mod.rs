//! Records to bytes and back. The record type is a byte of its own (it sits
//! in the frame header); the payload layout per type is below. The format
//! version is the segment header's (2 now: see `segment`).

mod config;
mod message;
/// Also the offsets log's primitives (`crate::offsets`).
pub(crate) mod wire;

pub use wire::DecodeError;

use std::sync::Arc;

use ferry_core::clock::Timestamp;
use ferry_core::store::{Location, QueueId, Record};

use config::{
    get_binding, get_queue_config, get_router_config, put_binding, put_queue_config,
    put_router_config,
};
use message::{get_message, put_message};
use wire::{Dec, DecodeResult, Enc};

const NAMESPACE_CREATED: u8 = 1;
const NAMESPACE_DELETED: u8 = 2;
const QUEUE_DECLARED: u8 = 3;
const QUEUE_DELETED: u8 = 4;
/// An `Enqueued` record's kind (kept-keys files look for them unopened).
pub(crate) const ENQUEUED: u8 = 5;
const DELIVERED: u8 = 6;
const REMOVED: u8 = 7;
const PURGED: u8 = 8;
const ROUTER_DECLARED: u8 = 9;
const ROUTER_DELETED: u8 = 10;
const BOUND: u8 = 11;
const UNBOUND: u8 = 12;
/// Written only in kept-keys files (`journal::kept`), never in a segment.
const DEDUP_KEPT: u8 = 13;

fn put_loc(e: &mut Enc<'_>, loc: Option<Location>) {
    match loc {
        None => e.u8(0),
        Some(l) => {
            e.u8(1);
            e.var(l.0);
        }
    }
}

fn get_loc(d: &mut Dec<'_>) -> DecodeResult<Option<Location>> {
    Ok(match d.u8()? {
        0 => None,
        _ => Some(Location(d.var()?)),
    })
}

/// Appends `r`'s payload to `out`; returns its type byte.
pub fn encode(r: &Record, out: &mut Vec<u8>) -> u8 {
    let mut e = Enc(out);
    match r {
        Record::NamespaceCreated { name } => {
            e.str(name);
            NAMESPACE_CREATED
        }
        Record::NamespaceDeleted { name } => {
            e.str(name);
            NAMESPACE_DELETED
        }
        Record::QueueDeclared {
            id,
            namespace,
            name,
            config,
        } => {
            e.var(id.0);
            e.str(namespace);
            e.str(name);
            put_queue_config(&mut e, config);
            QUEUE_DECLARED
        }
        Record::QueueDeleted { id } => {
            e.var(id.0);
            QUEUE_DELETED
        }
        Record::Enqueued {
            queue,
            seq,
            at,
            deliveries,
            message,
            replaces,
            forwarded,
        } => {
            e.var(queue.0);
            e.var(*seq);
            e.var(at.as_millis());
            e.var(u64::from(*deliveries));
            // The byte that says whether a location follows (0 or 1, as
            // `put_loc` writes it) also carries the forwarded flag.
            e.u8(u8::from(replaces.is_some()) | (u8::from(*forwarded) << 1));
            if let Some(l) = replaces {
                e.var(l.0);
            }
            put_message(&mut e, message);
            ENQUEUED
        }
        Record::DedupKept {
            queue,
            seq,
            at,
            message,
        } => {
            // Only what the window keys and answers with; the key is always
            // explicit here (a content-based one was hashed when kept).
            e.var(queue.0);
            e.var(*seq);
            e.var(at.as_millis());
            e.u128_le(message.id.0);
            e.var(message.published_at.as_millis());
            e.opt_str(message.group_id.as_deref());
            e.str(message.dedup_id.as_deref().unwrap_or_default());
            DEDUP_KEPT
        }
        Record::Delivered { queue, seq, count } => {
            e.var(queue.0);
            e.var(*seq);
            e.var(u64::from(*count));
            DELIVERED
        }
        Record::Removed { queue, seq, loc } => {
            e.var(queue.0);
            e.var(*seq);
            put_loc(&mut e, *loc);
            REMOVED
        }
        Record::Purged { queue, removed } => {
            e.var(queue.0);
            e.var(removed.len() as u64);
            for (seq, loc) in removed {
                e.var(*seq);
                put_loc(&mut e, *loc);
            }
            PURGED
        }
        Record::RouterDeclared {
            namespace,
            name,
            config,
        } => {
            e.str(namespace);
            e.str(name);
            put_router_config(&mut e, config);
            ROUTER_DECLARED
        }
        Record::RouterDeleted { namespace, name } => {
            e.str(namespace);
            e.str(name);
            ROUTER_DELETED
        }
        Record::Bound { namespace, binding } => {
            e.str(namespace);
            put_binding(&mut e, binding);
            BOUND
        }
        Record::Unbound { namespace, binding } => {
            e.str(namespace);
            put_binding(&mut e, binding);
            UNBOUND
        }
    }
}

/// Decodes a record of type `kind` from its whole payload.
pub fn decode(kind: u8, payload: &[u8]) -> Result<Record, DecodeError> {
    let mut d = Dec::new(payload);
    let r = match kind {
        NAMESPACE_CREATED => Record::NamespaceCreated { name: d.str()? },
        NAMESPACE_DELETED => Record::NamespaceDeleted { name: d.str()? },
        QUEUE_DECLARED => Record::QueueDeclared {
            id: QueueId(d.var()?),
            namespace: d.str()?,
            name: d.str()?,
            config: get_queue_config(&mut d)?,
        },
        QUEUE_DELETED => Record::QueueDeleted {
            id: QueueId(d.var()?),
        },
        ENQUEUED => {
            let queue = QueueId(d.var()?);
            let seq = d.var()?;
            let at = Timestamp(d.var()?);
            let deliveries = d.var_u32()?;
            let flags = d.u8()?;
            if flags & !3 != 0 {
                return Err(DecodeError::Tag {
                    what: "enqueued record flags",
                    tag: flags,
                });
            }
            let replaces = if flags & 1 != 0 {
                Some(Location(d.var()?))
            } else {
                None
            };
            Record::Enqueued {
                queue,
                seq,
                at,
                deliveries,
                replaces,
                forwarded: flags & 2 != 0,
                message: Arc::new(get_message(&mut d)?),
            }
        }
        DEDUP_KEPT => {
            let queue = QueueId(d.var()?);
            let seq = d.var()?;
            let at = Timestamp(d.var()?);
            let mut message = ferry_core::message::Message::new(bytes::Bytes::new());
            message.id = ferry_core::message::MessageId(d.u128_le()?);
            message.published_at = Timestamp(d.var()?);
            message.group_id = d.opt_str()?;
            message.dedup_id = Some(d.str()?);
            Record::DedupKept {
                queue,
                seq,
                at,
                message: Arc::new(message),
            }
        }
        DELIVERED => Record::Delivered {
            queue: QueueId(d.var()?),
            seq: d.var()?,
            count: d.var_u32()?,
        },
        REMOVED => Record::Removed {
            queue: QueueId(d.var()?),
            seq: d.var()?,
            loc: get_loc(&mut d)?,
        },
        PURGED => {
            let queue = QueueId(d.var()?);
            let n = d.len()?;
            let mut removed = Vec::with_capacity(n);
            for _ in 0..n {
                removed.push((d.var()?, get_loc(&mut d)?));
            }
            Record::Purged { queue, removed }
        }
        ROUTER_DECLARED => Record::RouterDeclared {
            namespace: d.str()?,
            name: d.str()?,
            config: get_router_config(&mut d)?,
        },
        ROUTER_DELETED => Record::RouterDeleted {
            namespace: d.str()?,
            name: d.str()?,
        },
        BOUND => Record::Bound {
            namespace: d.str()?,
            binding: get_binding(&mut d)?,
        },
        UNBOUND => Record::Unbound {
            namespace: d.str()?,
            binding: get_binding(&mut d)?,
        },
        tag => {
            return Err(DecodeError::Tag {
                what: "record",
                tag,
            });
        }
    };
    d.finish()?;
    Ok(r)
}

#[cfg(test)]
mod tests;
