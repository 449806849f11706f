//! SQS message attributes and the core's typed headers, both ways.
//!
//! | SQS DataType | core value |
//! |---|---|
//! | `String` | `Value::Str` |
//! | `Number` | `Value::Number` (the text as sent) |
//! | `Binary` | `Value::Bytes` |
//! | `String.x`, `Number.x`, `Binary.x` | `Value::Labeled { label, .. }` around the above |
//!
//! Headers set by other protocols map back as: integers, floats, decimals
//! and timestamps to `Number`; booleans to `String` (`true`/`false`);
//! lists and tables to `String` holding JSON; nulls are left out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ferry_core::message::{Headers, Value};
use serde_json::{Map, Value as Json, json};

use crate::error::SqsError;
use crate::md5::{Attr, AttrValue};

pub const MAX_ATTRIBUTES: usize = 10;
const MAX_NAME: usize = 256;

fn check_name(name: &str) -> Result<(), SqsError> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err(SqsError::invalid_parameter(&format!(
            "Message attribute name '{name}' is invalid: up to 256 letters, digits, '_', '-' and '.', \
             not starting or ending with '.', no '..', and not starting with 'AWS.' or 'Amazon.'."
        )))
    }
}

/// Whether every character is one SQS accepts in message text.
pub fn valid_text(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    })
}

fn valid_number(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (t, None),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let one_dot = mantissa.matches('.').count() <= 1;
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    one_dot
        && !digits.is_empty()
        && digits.len() <= 38
        && digits.bytes().all(|b| b.is_ascii_digit())
        && exp_ok
}

/// Parses the `MessageAttributes` of a send into headers; returns them with
/// the bytes they count against the message size limit.
pub fn parse(attrs: Option<&Map<String, Json>>) -> Result<(Headers, usize), SqsError> {
    let Some(attrs) = attrs else {
        return Ok((Headers::new(), 0));
    };
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(SqsError::invalid_parameter(&format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            attrs.len()
        )));
    }
    let mut headers = Headers::new();
    let mut size = 0;
    for (name, spec) in attrs {
        check_name(name)?;
        let (value, n) = parse_one(name, spec)?;
        size += name.len() + n;
        headers.0.push((name.clone(), value));
    }
    Ok((headers, size))
}

fn parse_one(name: &str, spec: &Json) -> Result<(Value, usize), SqsError> {
    let bad = |why: &str| {
        SqsError::invalid_parameter(&format!("Message attribute '{name}' is invalid: {why}"))
    };
    let spec = spec
        .as_object()
        .ok_or_else(|| bad("it must be a structure"))?;
    let data_type = spec
        .get("DataType")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("DataType is missing"))?;
    if data_type.len() > MAX_NAME {
        return Err(bad("the DataType is longer than 256 characters"));
    }
    let (base, custom) = match data_type.split_once('.') {
        Some((b, c)) if !c.is_empty() => (b, true),
        Some(_) => return Err(bad("the DataType has an empty custom type")),
        None => (data_type, false),
    };
    let string = spec.get("StringValue").and_then(Json::as_str);
    let binary = spec.get("BinaryValue").and_then(Json::as_str);
    let value = match base {
        "String" | "Number" => {
            let s = string.ok_or_else(|| bad("StringValue is required for this DataType"))?;
            if s.is_empty() {
                return Err(bad("the StringValue is empty"));
            }
            if !valid_text(s) {
                return Err(SqsError::invalid_parameter_value_chars(name));
            }
            if base == "Number" {
                if !valid_number(s) {
                    return Err(bad("the value is not a valid number"));
                }
                Value::Number(s.to_owned())
            } else {
                Value::Str(s.to_owned())
            }
        }
        "Binary" => {
            let b = binary.ok_or_else(|| bad("BinaryValue is required for this DataType"))?;
            let bytes = STANDARD
                .decode(b)
                .map_err(|_| bad("the BinaryValue is not base64"))?;
            if bytes.is_empty() {
                return Err(bad("the BinaryValue is empty"));
            }
            Value::Bytes(Bytes::from(bytes))
        }
        _ => {
            return Err(crate::wording::invalid_parameter_value::attribute_type(
                name,
            ));
        }
    };
    let n = data_type.len()
        + match &value {
            Value::Bytes(b) => b.len(),
            Value::Str(s) | Value::Number(s) => s.len(),
            _ => 0,
        };
    let value = if custom {
        Value::Labeled {
            label: data_type.to_owned(),
            value: Box::new(value),
        }
    } else {
        value
    };
    Ok((value, n))
}

impl SqsError {
    fn invalid_parameter_value_chars(name: &str) -> SqsError {
        SqsError::invalid_parameter(&format!(
            "Message attribute '{name}' contains characters outside the allowed set."
        ))
    }
}

/// A header as SQS shows it: (data type, text or bytes). `None`: not shown.
fn as_sqs(v: &Value) -> Option<(String, AttrText)> {
    Some(match v {
        Value::Str(s) => ("String".into(), AttrText::Text(s.clone())),
        Value::Number(n) => ("Number".into(), AttrText::Text(n.clone())),
        Value::Bytes(b) => ("Binary".into(), AttrText::Binary(b.clone())),
        Value::Int(i) => ("Number".into(), AttrText::Text(i.to_string())),
        Value::Float(f) => ("Number".into(), AttrText::Text(f.to_string())),
        Value::Timestamp(t) => ("Number".into(), AttrText::Text(t.to_string())),
        Value::Decimal { scale, value } => {
            let mut s = value.unsigned_abs().to_string();
            let scale = usize::from(*scale);
            if scale > 0 {
                while s.len() <= scale {
                    s.insert(0, '0');
                }
                s.insert(s.len() - scale, '.');
            }
            if *value < 0 {
                s.insert(0, '-');
            }
            ("Number".into(), AttrText::Text(s))
        }
        Value::Bool(b) => ("String".into(), AttrText::Text(b.to_string())),
        Value::Null => return None,
        Value::List(_) | Value::Table(_) => {
            ("String".into(), AttrText::Text(to_json(v).to_string()))
        }
        Value::Labeled { label, value } => {
            let (_, inner) = as_sqs(value)?;
            (label.clone(), inner)
        }
    })
}

enum AttrText {
    Text(String),
    Binary(Bytes),
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Str(s) | Value::Number(s) => json!(s),
        Value::Bytes(b) => json!(STANDARD.encode(b)),
        Value::Timestamp(t) => json!(t),
        Value::Decimal { .. } => json!(as_sqs(v).map(|(_, t)| match t {
            AttrText::Text(s) => s,
            AttrText::Binary(_) => String::new(),
        })),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Table(h) => {
            Json::Object(h.iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
        }
        Value::Labeled { value, .. } => to_json(value),
    }
}

/// The attributes of a received message that `wanted` selects (names,
/// `All` or `.*`, or prefixes ending in `.*`), in the response shape, with
/// their MD5 (over the selected ones, as SQS computes it).
pub fn render(headers: &Headers, wanted: &[&str]) -> (Map<String, Json>, Option<String>) {
    let selected = |name: &str| {
        wanted.iter().any(|w| {
            *w == "All"
                || *w == ".*"
                || *w == name
                // `Hel.*` is a plain prefix: it selects `Hello` and `Help.Me`.
                || w.strip_suffix(".*").is_some_and(|p| name.starts_with(p))
        })
    };
    let mut out = Map::new();
    let mut parts: Vec<(String, String, AttrText)> = Vec::new();
    for (name, v) in headers.iter() {
        if !selected(name) {
            continue;
        }
        if let Some((data_type, value)) = as_sqs(v) {
            let entry = match &value {
                AttrText::Text(s) => json!({"DataType": data_type, "StringValue": s}),
                AttrText::Binary(b) => {
                    json!({"DataType": data_type, "BinaryValue": STANDARD.encode(b)})
                }
            };
            out.insert(name.to_owned(), entry);
            parts.push((name.to_owned(), data_type, value));
        }
    }
    let md5 = crate::md5::attributes(
        parts
            .iter()
            .map(|(n, t, v)| Attr {
                name: n,
                data_type: t,
                value: match v {
                    AttrText::Text(s) => AttrValue::Text(s),
                    AttrText::Binary(b) => AttrValue::Binary(b),
                },
            })
            .collect(),
    );
    (out, md5)
}

/// The MD5 of the attributes as sent (what SendMessage returns).
pub fn digest(headers: &Headers) -> Option<String> {
    render(headers, &["All"]).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Json) -> Map<String, Json> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn attributes_round_trip_with_their_types() {
        let m = spec(json!({
            "s": {"DataType": "String", "StringValue": "hello"},
            "n": {"DataType": "Number", "StringValue": "1.50"},
            "b": {"DataType": "Binary", "BinaryValue": "AQI="},
            "c": {"DataType": "String.json", "StringValue": "{}"}
        }));
        let (h, size) = parse(Some(&m)).expect("valid");
        assert!(size > 0);
        let (out, md5) = render(&h, &["All"]);
        assert_eq!(Json::Object(out), Json::Object(m));
        assert!(md5.is_some());
        let (only, _) = render(&h, &["s", "c"]);
        assert_eq!(only.len(), 2);
        // `x.*` is a plain prefix, as in SQS.
        let hs: Headers = [("Hello", "1"), ("Help.Me", "2"), ("Other", "3")]
            .into_iter()
            .collect();
        let (picked, _) = render(&hs, &["Hel.*"]);
        assert_eq!(picked.len(), 2);
    }

    #[test]
    fn bad_attributes_are_refused() {
        for bad in [
            json!({"AWS.x": {"DataType": "String", "StringValue": "v"}}),
            json!({"a..b": {"DataType": "String", "StringValue": "v"}}),
            json!({"a": {"DataType": "Text", "StringValue": "v"}}),
            json!({"a": {"DataType": "Number", "StringValue": "1x"}}),
            json!({"a": {"DataType": "String", "StringValue": ""}}),
            json!({"a": {"DataType": "Binary", "BinaryValue": "!!"}}),
            json!({"a": {"DataType": "String"}}),
        ] {
            assert!(parse(Some(&spec(bad.clone()))).is_err(), "{bad}");
        }
        let many: Map<String, Json> = (0..11)
            .map(|i| {
                (
                    format!("a{i}"),
                    json!({"DataType": "String", "StringValue": "v"}),
                )
            })
            .collect();
        assert!(parse(Some(&many)).is_err());
    }

    #[test]
    fn text_rules() {
        assert!(valid_text("tab\there\r\n é 😀"));
        assert!(!valid_text("nul\u{0}"));
        assert!(!valid_text("\u{FFFE}"));
        assert!(valid_number("-12.5e3") && valid_number("0") && !valid_number("1.2.3"));
    }
}
