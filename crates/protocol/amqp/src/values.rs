//! AMQP field values and tables to and from the core's typed headers.
//!
//! Integers of every width become the core's `Int` and go back out as
//! 64-bit signed (`l`), as RabbitMQ's own headers are; strings that are not
//! UTF-8 stay bytes.

use amq_protocol::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use bytes::Bytes;
use ferry_core::{Headers, Value};

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A short string (at most 255 bytes): longer text from another protocol
/// is cut rather than failing the delivery.
pub fn short(s: &str) -> ShortString {
    ShortString::try_new(truncate(s, 255)).unwrap_or_default()
}

pub fn long(s: &str) -> LongString {
    LongString::from(s.as_bytes().to_vec())
}

pub fn headers_from_table(t: &FieldTable) -> Headers {
    Headers(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), value_from_amqp(v)))
            .collect(),
    )
}

pub fn value_from_amqp(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => Value::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => Value::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => Value::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => Value::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => Value::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => Value::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => Value::Int(*i),
        AMQPValue::Float(f) => Value::Float(f64::from(*f)),
        AMQPValue::Double(f) => Value::Float(*f),
        AMQPValue::DecimalValue(d) => Value::Decimal {
            scale: d.scale,
            value: d.value as i32,
        },
        AMQPValue::ShortString(s) => Value::Str(s.as_str().to_owned()),
        AMQPValue::LongString(s) => bytes_or_text(s.as_bytes()),
        AMQPValue::FieldArray(a) => Value::List(a.as_slice().iter().map(value_from_amqp).collect()),
        AMQPValue::Timestamp(t) => Value::Timestamp(*t),
        AMQPValue::FieldTable(t) => Value::Table(headers_from_table(t)),
        AMQPValue::ByteArray(b) => Value::Bytes(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

fn bytes_or_text(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Str(s.to_owned()),
        Err(_) => Value::Bytes(Bytes::copy_from_slice(b)),
    }
}

pub fn table_from_headers(h: &Headers) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in h.iter() {
        t.insert(short(k), value_to_amqp(v));
    }
    t
}

pub fn value_to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Int(i) => AMQPValue::LongLongInt(*i),
        Value::Float(f) => AMQPValue::Double(*f),
        Value::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value as u32,
        }),
        Value::Str(s) => AMQPValue::LongString(long(s)),
        Value::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.as_ref())),
        Value::Timestamp(t) => AMQPValue::Timestamp(*t),
        Value::List(l) => AMQPValue::FieldArray(FieldArray::from(
            l.iter().map(value_to_amqp).collect::<Vec<_>>(),
        )),
        Value::Table(t) => AMQPValue::FieldTable(table_from_headers(t)),
        Value::Number(n) => AMQPValue::LongString(long(n)),
        Value::Labeled { value, .. } => value_to_amqp(value),
    }
}

/// An integer argument of any AMQP integer type.
pub fn as_int(v: &AMQPValue) -> Option<i64> {
    match value_from_amqp(v) {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

/// A string argument (short or long string).
pub fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_through_headers() {
        let mut t = FieldTable::default();
        t.insert("n".into(), AMQPValue::LongLongInt(-5));
        t.insert("s".into(), AMQPValue::LongString("text".into()));
        t.insert("b".into(), AMQPValue::Boolean(true));
        t.insert(
            "a".into(),
            AMQPValue::FieldArray(vec![AMQPValue::LongString("x".into())].into()),
        );
        let mut inner = FieldTable::default();
        inner.insert("t".into(), AMQPValue::Timestamp(7));
        t.insert("tbl".into(), AMQPValue::FieldTable(inner));
        assert_eq!(table_from_headers(&headers_from_table(&t)), t);
    }

    #[test]
    fn narrow_integers_widen_and_non_utf8_stays_bytes() {
        assert_eq!(value_from_amqp(&AMQPValue::ShortInt(-3)), Value::Int(-3));
        assert_eq!(
            value_from_amqp(&AMQPValue::LongString(vec![0xff, 0xfe].into())),
            Value::Bytes(Bytes::from_static(&[0xff, 0xfe]))
        );
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let s = "é".repeat(200);
        let cut = truncate(&s, 255);
        assert_eq!(cut.len(), 254);
        assert_eq!(short(&s).as_str().len(), 254);
    }
}
