//! A guard in front of the codec against deeply nested field tables.
//!
//! The codec parses tables and arrays recursively, with no bound on depth:
//! a frame of a few kilobytes nesting arrays thousands of levels deep
//! would overflow the stack and abort the process. This walks each table
//! a frame carries without recursion (the methods' layouts say where the
//! tables are) and refuses nesting deeper than [`MAX_DEPTH`].

use crate::codec::{FRAME_HEADER, FRAME_METHOD};
use crate::error::{Failure, ReplyCode};

/// Tables and arrays nested deeper than this are refused.
pub const MAX_DEPTH: usize = 32;

/// Checks the tables of a method or content-header frame's payload.
pub fn check(kind: u8, payload: &[u8]) -> Result<(), Failure> {
    let table = match kind {
        FRAME_METHOD => method_table(payload),
        FRAME_HEADER => header_table(payload),
        _ => None,
    };
    match table {
        Some(at) => check_table(payload, at),
        None => Ok(()),
    }
}

/// Checks a field table (length-prefixed) that starts at `at`.
pub fn check_table(buf: &[u8], at: usize) -> Result<(), Failure> {
    scan(buf, at).map_err(|e| match e {
        Scan::TooDeep => Failure::connection(
            ReplyCode::SyntaxError,
            format!("field tables nested deeper than {MAX_DEPTH} levels"),
        ),
        Scan::Malformed => Failure::connection(ReplyCode::SyntaxError, "malformed field table"),
    })
}

enum Scan {
    TooDeep,
    Malformed,
}

/// Where the one table of a client method's arguments starts, if it has one.
fn method_table(p: &[u8]) -> Option<usize> {
    let class = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
    let method = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
    // The fields before the table: u16 (reserved), short strings, a bits octet.
    let (strings, bits) = match (class, method) {
        // connection.start is the server's, but the codec parses whatever
        // arrives: its server properties must be guarded too.
        (10, 10) => return Some(6),
        (10, 11) => return Some(4), // connection.start-ok: client properties
        (40, 10) => (2, true),      // exchange.declare: exchange, type
        (40, 30) | (40, 40) => (3, true), // exchange.bind/unbind
        (50, 10) => (1, true),      // queue.declare
        (50, 20) => (3, true),      // queue.bind
        (50, 50) => (3, false),     // queue.unbind
        (60, 20) => (2, true),      // basic.consume
        _ => return None,
    };
    let mut at = 4 + 2;
    for _ in 0..strings {
        at += 1 + usize::from(*p.get(at)?);
    }
    Some(at + usize::from(bits))
}

/// Where a content header's `headers` property starts, if present.
fn header_table(p: &[u8]) -> Option<usize> {
    // class, weight, body size, then property flags (continued while bit 0 is set).
    let mut at = 2 + 2 + 8;
    let flags = u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]);
    at += 2;
    let mut more = flags & 1 == 1;
    while more {
        more = u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]) & 1 == 1;
        at += 2;
    }
    if flags & (1 << 13) == 0 {
        return None;
    }
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            at += 1 + usize::from(*p.get(at)?);
        }
    }
    Some(at)
}

fn u32_at(buf: &[u8], at: usize) -> Result<usize, Scan> {
    let b = buf.get(at..at + 4).ok_or(Scan::Malformed)?;
    let b: [u8; 4] = b.try_into().map_err(|_| Scan::Malformed)?;
    Ok(u32::from_be_bytes(b) as usize)
}

/// Walks a table and everything nested in it with an explicit stack of
/// (end offset, whether entries have names).
fn scan(buf: &[u8], at: usize) -> Result<(), Scan> {
    let len = u32_at(buf, at)?;
    let mut pos = at + 4;
    let mut stack = vec![(pos.checked_add(len).ok_or(Scan::Malformed)?, true)];
    while let Some(&(end, named)) = stack.last() {
        if end > buf.len() || pos > end {
            return Err(Scan::Malformed);
        }
        if pos == end {
            stack.pop();
            continue;
        }
        if named {
            pos += 1 + usize::from(*buf.get(pos).ok_or(Scan::Malformed)?);
        }
        let kind = *buf.get(pos).ok_or(Scan::Malformed)?;
        pos += 1;
        pos += match kind {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'S' | b'x' => 4 + u32_at(buf, pos)?,
            b'A' | b'F' => {
                let len = u32_at(buf, pos)?;
                pos += 4;
                if stack.len() >= MAX_DEPTH {
                    return Err(Scan::TooDeep);
                }
                stack.push((pos.checked_add(len).ok_or(Scan::Malformed)?, kind == b'F'));
                0
            }
            _ => return Err(Scan::Malformed),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{AMQPClass, queue};
    use amq_protocol::types::{AMQPValue, FieldArray, FieldTable};

    fn nested(depth: usize) -> FieldTable {
        let mut v = AMQPValue::LongString("leaf".into());
        for _ in 0..depth {
            v = AMQPValue::FieldArray(FieldArray::from(vec![v]));
        }
        let mut t = FieldTable::default();
        t.insert("x-deep".into(), v);
        t.insert("n".into(), AMQPValue::LongLongInt(1));
        t
    }

    fn declare_payload(args: FieldTable) -> Vec<u8> {
        let mut out = crate::codec::Output::default();
        out.method(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "q".into(),
                arguments: args,
                ..Default::default()
            })),
        );
        let frame = out.pending();
        frame[7..frame.len() - 1].to_vec()
    }

    #[test]
    fn ordinary_tables_pass_and_deep_ones_are_refused() {
        assert!(check(FRAME_METHOD, &declare_payload(nested(5))).is_ok());
        let e = check(FRAME_METHOD, &declare_payload(nested(MAX_DEPTH + 1))).unwrap_err();
        assert_eq!(e.code, ReplyCode::SyntaxError);
    }

    #[test]
    fn a_hostile_frame_nesting_thousands_deep_is_refused_without_recursion() {
        // 'A' + length, 20,000 times: each array holds the next.
        let depth = 20_000;
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..depth {
            let mut outer = vec![b'A'];
            outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        let mut table = vec![1, b'k'];
        table.extend_from_slice(&inner);
        let mut payload = vec![0, 10, 0, 11]; // connection.start-ok
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        assert!(check(FRAME_METHOD, &payload).is_err());
    }

    #[test]
    fn a_server_method_from_a_client_is_guarded_too() {
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..(MAX_DEPTH + 5) {
            let mut outer = vec![b'A'];
            outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        let mut table = vec![1, b'k'];
        table.extend_from_slice(&inner);
        let mut payload = vec![0, 10, 0, 10, 0, 9]; // connection.start, version 0-9
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        assert!(check(FRAME_METHOD, &payload).is_err());
    }

    #[test]
    fn truncated_tables_are_malformed() {
        let mut p = declare_payload(nested(2));
        p.truncate(p.len() - 3);
        assert!(check(FRAME_METHOD, &p).is_err());
    }
}
