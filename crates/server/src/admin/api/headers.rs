//! Message headers as JSON and back (the admin API shows them and takes
//! them for test messages and binding arguments).

use base64::Engine;
use ferry_core::message::{Headers, Value as HeaderValue};
use serde_json::{Map, Number, Value};

pub(super) fn headers_json(h: &Headers) -> Value {
    Value::Object(
        h.0.iter()
            .map(|(k, v)| (k.clone(), header_json(v)))
            .collect::<Map<String, Value>>(),
    )
}

/// A header as JSON: numbers and text as themselves, bytes as base64,
/// decimals and SQS numbers as their exact text, timestamps as seconds.
pub(super) fn header_json(v: &HeaderValue) -> Value {
    match v {
        HeaderValue::Null => Value::Null,
        HeaderValue::Bool(b) => Value::Bool(*b),
        HeaderValue::Int(i) => Value::from(*i),
        HeaderValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        HeaderValue::Decimal { scale, value } => {
            let digits = format!(
                "{:0>width$}",
                value.unsigned_abs(),
                width = *scale as usize + 1
            );
            let (whole, frac) = digits.split_at(digits.len() - *scale as usize);
            let sign = if *value < 0 { "-" } else { "" };
            let text = if frac.is_empty() {
                format!("{sign}{whole}")
            } else {
                format!("{sign}{whole}.{frac}")
            };
            Value::String(text)
        }
        HeaderValue::Str(s) => Value::String(s.clone()),
        HeaderValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        HeaderValue::Timestamp(t) => Value::from(*t),
        HeaderValue::List(l) => Value::Array(l.iter().map(header_json).collect()),
        HeaderValue::Table(t) => headers_json(t),
        // Exact spelling kept: text, not a float that may round.
        HeaderValue::Number(text) => Value::String(text.clone()),
        HeaderValue::Labeled { value, .. } => header_json(value),
    }
}

/// A JSON value as a header. Text, numbers, booleans, null, lists and
/// tables come back as what `header_json` made of them; bytes, decimals and
/// timestamps were written as text or numbers and come back as those.
pub(super) fn json_header(v: Value) -> HeaderValue {
    match v {
        Value::Null => HeaderValue::Null,
        Value::Bool(b) => HeaderValue::Bool(b),
        Value::String(s) => HeaderValue::Str(s),
        Value::Number(n) => match n.as_i64() {
            Some(i) => HeaderValue::Int(i),
            None => HeaderValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(items) => HeaderValue::List(items.into_iter().map(json_header).collect()),
        Value::Object(map) => HeaderValue::Table(json_headers(map)),
    }
}

/// JSON object members as headers.
pub(super) fn json_headers(map: Map<String, Value>) -> Headers {
    Headers(map.into_iter().map(|(k, v)| (k, json_header(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_keep_their_exact_digits() {
        let d = |scale, value| header_json(&HeaderValue::Decimal { scale, value });
        assert_eq!(d(2, 12345), json!("123.45"));
        assert_eq!(d(3, -5), json!("-0.005"));
        assert_eq!(d(0, 7), json!("7"));
    }

    #[test]
    fn lists_and_tables_round_trip() {
        let v = json!({ "l": [1, "two"], "t": { "x": true } });
        let Value::Object(map) = v.clone() else {
            unreachable!()
        };
        let h = json_headers(map);
        assert_eq!(headers_json(&h), v);
    }
}
