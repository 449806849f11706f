//! Queue and router settings and bindings on disk. Queue settings are
//! tagged fields, so a later version can add some and still read what this
//! one wrote; router settings and bindings have a fixed layout, so
//! changing them takes a new format version.

use std::time::Duration;

use ferry_core::queue::{
    DeadLetterPolicy, DeadLetterTarget, DedupConfig, DedupScope, Overflow, QueueConfig,
};
use ferry_core::router::{Binding, Destination, RouterConfig, RouterKind};

use super::message::{get_headers, put_headers};
use super::wire::{Dec, DecodeError, DecodeResult, Enc};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ms(d: &mut Dec<'_>) -> DecodeResult<Duration> {
    Ok(Duration::from_millis(d.var()?))
}

const DURABLE: u8 = 1;
const FIFO: u8 = 2;
const DEDUP: u8 = 3;
const VISIBILITY: u8 = 4;
const DELAY: u8 = 5;
const MESSAGE_TTL: u8 = 6;
const MAX_LENGTH: u8 = 7;
const MAX_BYTES: u8 = 8;
const OVERFLOW: u8 = 9;
const MAX_PRIORITY: u8 = 10;
const DEAD_LETTER: u8 = 11;
const AUTO_DELETE: u8 = 12;
const EXPIRES: u8 = 13;
const SINGLE_ACTIVE: u8 = 14;
const ATTRIBUTES: u8 = 15;
const ENCRYPTION_KEY: u8 = 16;

/// Exclusive queues are never journaled, so `exclusive_owner` is not stored.
pub fn put_queue_config(e: &mut Enc<'_>, c: &QueueConfig) {
    e.field(DURABLE, |e| e.bool(c.durable));
    e.field(FIFO, |e| e.bool(c.fifo));
    if let Some(dd) = &c.dedup {
        e.field(DEDUP, |e| {
            e.var(millis(dd.window));
            e.bool(dd.content_based);
            e.u8(match dd.scope {
                DedupScope::Queue => 0,
                DedupScope::Group => 1,
            });
        });
    }
    e.field(VISIBILITY, |e| e.var(millis(c.visibility_timeout)));
    e.field(DELAY, |e| e.var(millis(c.delay)));
    if let Some(t) = c.message_ttl {
        e.field(MESSAGE_TTL, |e| e.var(millis(t)));
    }
    if let Some(n) = c.max_length {
        e.field(MAX_LENGTH, |e| e.var(n));
    }
    if let Some(n) = c.max_bytes {
        e.field(MAX_BYTES, |e| e.var(n));
    }
    e.field(OVERFLOW, |e| {
        e.u8(match c.overflow {
            Overflow::DropHead => 0,
            Overflow::RejectPublish => 1,
            Overflow::RejectPublishDeadLetter => 2,
        })
    });
    e.field(MAX_PRIORITY, |e| e.u8(c.max_priority));
    if let Some(p) = &c.dead_letter {
        e.field(DEAD_LETTER, |e| {
            match &p.target {
                DeadLetterTarget::Queue(q) => {
                    e.u8(0);
                    e.str(q);
                }
                DeadLetterTarget::Router {
                    router,
                    routing_key,
                } => {
                    e.u8(1);
                    e.str(router);
                    e.opt_str(routing_key.as_deref());
                }
                DeadLetterTarget::Discard => e.u8(2),
            }
            match p.max_deliveries {
                None => e.u8(0),
                Some(n) => {
                    e.u8(1);
                    e.var(u64::from(n));
                }
            }
            e.u8(u8::from(p.on_rejected)
                | u8::from(p.on_expired) << 1
                | u8::from(p.on_overflow) << 2);
        });
    }
    e.field(AUTO_DELETE, |e| e.bool(c.auto_delete));
    if let Some(t) = c.expires {
        e.field(EXPIRES, |e| e.var(millis(t)));
    }
    e.field(SINGLE_ACTIVE, |e| e.bool(c.single_active_consumer));
    if let Some(k) = &c.encryption_key {
        e.field(ENCRYPTION_KEY, |e| e.str(k));
    }
    if !c.attributes.is_empty() {
        e.field(ATTRIBUTES, |e| {
            e.var(c.attributes.len() as u64);
            for (k, v) in &c.attributes {
                e.str(k);
                e.str(v);
            }
        });
    }
    e.end_fields();
}

pub fn get_queue_config(d: &mut Dec<'_>) -> DecodeResult<QueueConfig> {
    let mut c = QueueConfig::default();
    d.fields(|tag, d| {
        match tag {
            DURABLE => c.durable = d.bool()?,
            FIFO => c.fifo = d.bool()?,
            DEDUP => {
                c.dedup = Some(DedupConfig {
                    window: ms(d)?,
                    content_based: d.bool()?,
                    scope: match d.u8()? {
                        0 => DedupScope::Queue,
                        1 => DedupScope::Group,
                        tag => {
                            return Err(DecodeError::Tag {
                                what: "dedup scope",
                                tag,
                            });
                        }
                    },
                })
            }
            VISIBILITY => c.visibility_timeout = ms(d)?,
            DELAY => c.delay = ms(d)?,
            MESSAGE_TTL => c.message_ttl = Some(ms(d)?),
            MAX_LENGTH => c.max_length = Some(d.var()?),
            MAX_BYTES => c.max_bytes = Some(d.var()?),
            OVERFLOW => {
                c.overflow = match d.u8()? {
                    0 => Overflow::DropHead,
                    1 => Overflow::RejectPublish,
                    2 => Overflow::RejectPublishDeadLetter,
                    tag => {
                        return Err(DecodeError::Tag {
                            what: "overflow",
                            tag,
                        });
                    }
                }
            }
            MAX_PRIORITY => c.max_priority = d.u8()?,
            DEAD_LETTER => {
                let target = match d.u8()? {
                    0 => DeadLetterTarget::Queue(d.str()?),
                    1 => DeadLetterTarget::Router {
                        router: d.str()?,
                        routing_key: d.opt_str()?,
                    },
                    2 => DeadLetterTarget::Discard,
                    tag => {
                        return Err(DecodeError::Tag {
                            what: "dead-letter target",
                            tag,
                        });
                    }
                };
                let max_deliveries = match d.u8()? {
                    0 => None,
                    _ => Some(d.var_u32()?),
                };
                let flags = d.u8()?;
                c.dead_letter = Some(DeadLetterPolicy {
                    target,
                    max_deliveries,
                    on_rejected: flags & 1 != 0,
                    on_expired: flags & 2 != 0,
                    on_overflow: flags & 4 != 0,
                });
            }
            AUTO_DELETE => c.auto_delete = d.bool()?,
            EXPIRES => c.expires = Some(ms(d)?),
            SINGLE_ACTIVE => c.single_active_consumer = d.bool()?,
            ENCRYPTION_KEY => c.encryption_key = Some(d.str()?),
            ATTRIBUTES => {
                let n = d.len()?;
                for _ in 0..n {
                    let k = d.str()?;
                    c.attributes.insert(k, d.str()?);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(c)
}

pub fn put_router_config(e: &mut Enc<'_>, c: &RouterConfig) {
    e.u8(match c.kind {
        RouterKind::Direct => 1,
        RouterKind::Fanout => 2,
        RouterKind::Topic => 3,
        RouterKind::Headers => 4,
    });
    e.u8(u8::from(c.durable) | u8::from(c.auto_delete) << 1 | u8::from(c.internal) << 2);
    e.opt_str(c.alternate.as_deref());
}

pub fn get_router_config(d: &mut Dec<'_>) -> DecodeResult<RouterConfig> {
    let kind = match d.u8()? {
        1 => RouterKind::Direct,
        2 => RouterKind::Fanout,
        3 => RouterKind::Topic,
        4 => RouterKind::Headers,
        tag => {
            return Err(DecodeError::Tag {
                what: "router kind",
                tag,
            });
        }
    };
    let flags = d.u8()?;
    Ok(RouterConfig {
        kind,
        durable: flags & 1 != 0,
        auto_delete: flags & 2 != 0,
        internal: flags & 4 != 0,
        alternate: d.opt_str()?,
    })
}

pub fn put_binding(e: &mut Enc<'_>, b: &Binding) {
    e.str(&b.source);
    match &b.destination {
        Destination::Queue(q) => {
            e.u8(0);
            e.str(q);
        }
        Destination::Router(r) => {
            e.u8(1);
            e.str(r);
        }
    }
    e.str(&b.key);
    put_headers(e, &b.args, 0);
}

pub fn get_binding(d: &mut Dec<'_>) -> DecodeResult<Binding> {
    let source = d.str()?;
    let destination = match d.u8()? {
        0 => Destination::queue(&d.str()?),
        1 => Destination::router(&d.str()?),
        tag => {
            return Err(DecodeError::Tag {
                what: "destination",
                tag,
            });
        }
    };
    Ok(Binding {
        source,
        destination,
        key: d.str()?,
        args: get_headers(d, 0)?,
    })
}
