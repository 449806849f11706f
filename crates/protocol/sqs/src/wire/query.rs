//! The query protocol: flattened form parameters in, XML out.
//!
//! Requests flatten lists and maps into numbered keys
//! (`Attribute.1.Name`, `MessageAttribute.2.Value.DataType`,
//! `SendMessageBatchRequestEntry.3.Id`); they are folded back into the
//! JSON protocol's shape here, so actions see one form. Responses go the
//! other way, by the names of the JSON members.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use quick_xml::escape::escape;
use serde_json::{Map, Value};

use crate::error::SqsError;

const NS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
const CONTENT_TYPE: &str = "text/xml";

/// Numbered keys that fold into a map of the JSON name, keyed by `Name`
/// (or `Key`), valued by `Value`.
const MAPS: &[(&str, &str, &str)] = &[
    ("Attribute", "Attributes", "Name"),
    ("Tag", "Tags", "Key"),
    ("MessageAttribute", "MessageAttributes", "Name"),
    ("MessageSystemAttribute", "MessageSystemAttributes", "Name"),
];

/// Numbered keys that fold into a list of strings.
const LISTS: &[(&str, &str)] = &[
    ("AttributeName", "AttributeNames"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("TagKey", "TagKeys"),
    ("AWSAccountId", "AWSAccountIds"),
    ("ActionName", "Actions"),
    ("StringListValue", "StringListValues"),
    ("BinaryListValue", "BinaryListValues"),
];

/// Actions whose answer is only the response metadata.
const NO_OUTPUT: &[&str] = &[
    "AddPermission",
    "ChangeMessageVisibility",
    "DeleteMessage",
    "DeleteQueue",
    "PurgeQueue",
    "RemovePermission",
    "SetQueueAttributes",
    "TagQueue",
    "UntagQueue",
];

/// The most dots a parameter name has in the API (a batch entry's message
/// attribute value: `SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringListValue.1`).
const MAX_KEY_SEGMENTS: usize = 8;
/// Far more parameters than any valid request has.
const MAX_PARAMETERS: usize = 10_000;

pub fn parse_input(form: &[u8]) -> Result<(String, Map<String, Value>), SqsError> {
    let mut pairs: Vec<Pair> = Vec::new();
    for (k, v) in form_urlencoded::parse(form) {
        // Bounded before anything recurses over it: a hostile name cannot
        // make folding deep or slow.
        let segments: Vec<String> = k.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_KEY_SEGMENTS || pairs.len() >= MAX_PARAMETERS {
            return Err(SqsError::invalid_parameter(
                "The request has too many parameters, or a parameter name with too many parts.",
            ));
        }
        pairs.push((segments, v.into_owned()));
    }
    let mut input = fold(&pairs)?;
    let action = match input.remove("Action") {
        Some(Value::String(a)) if !a.is_empty() => a,
        _ => return Err(SqsError::missing_action()),
    };
    input.remove("Version");
    Ok((action, input))
}

/// A parameter: its key split at the dots, and its value.
type Pair = (Vec<String>, String);

/// Folds flattened pairs (key split at dots) into the JSON shape.
fn fold(pairs: &[Pair]) -> Result<Map<String, Value>, SqsError> {
    let mut out = Map::new();
    // First key segment -> index -> the rest of each key under it.
    let mut groups: BTreeMap<&str, BTreeMap<u32, Vec<Pair>>> = BTreeMap::new();
    for (key, value) in pairs {
        match key.as_slice() {
            [single] => {
                out.insert(single.clone(), Value::String(value.clone()));
            }
            [first, index, rest @ ..] => {
                let n: u32 = index.parse().map_err(|_| {
                    SqsError::invalid_parameter(&format!("malformed parameter {}", key.join(".")))
                })?;
                groups
                    .entry(first.as_str())
                    .or_default()
                    .entry(n)
                    .or_default()
                    .push((rest.to_vec(), value.clone()));
            }
            _ => {}
        }
    }
    for (first, items) in groups {
        if let Some((_, json_name, key_name)) = MAPS.iter().find(|(q, _, _)| *q == first) {
            let mut map = Map::new();
            for (_, fields) in items {
                let name = fields
                    .iter()
                    .find(|(k, _)| k.as_slice() == [*key_name])
                    .map(|(_, v)| v.clone());
                let value: Vec<Pair> = fields
                    .iter()
                    .filter_map(|(k, v)| match k.split_first() {
                        Some((first, rest)) if first == "Value" => Some((rest.to_vec(), v.clone())),
                        _ => None,
                    })
                    .collect();
                let Some(name) = name else { continue };
                let folded = match value.as_slice() {
                    [(k, v)] if k.is_empty() => Value::String(v.clone()),
                    [] => Value::String(String::new()),
                    _ => Value::Object(fold(&value)?),
                };
                map.insert(name, folded);
            }
            out.insert((*json_name).to_owned(), Value::Object(map));
        } else if let Some((_, json_name)) = LISTS.iter().find(|(q, _)| *q == first) {
            let list = items
                .into_values()
                .filter_map(|fields| {
                    fields
                        .into_iter()
                        .find(|(k, _)| k.is_empty())
                        .map(|(_, v)| Value::String(v))
                })
                .collect();
            out.insert((*json_name).to_owned(), Value::Array(list));
        } else if first.ends_with("RequestEntry") {
            let list = items
                .into_values()
                .map(|fields| fold(&fields).map(Value::Object))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("Entries".to_owned(), Value::Array(list));
        }
    }
    Ok(out)
}

pub fn render_ok(action: &str, request_id: &str, v: &Value) -> Response {
    let mut xml = String::with_capacity(256);
    xml.push_str(&format!(
        "<?xml version=\"1.0\"?><{action}Response xmlns=\"{NS}\">"
    ));
    // Actions with an output always have their result element, even empty
    // (query clients look for it: a receive of nothing); the others have none.
    if !NO_OUTPUT.contains(&action) {
        xml.push_str(&format!("<{action}Result>"));
        if let Value::Object(fields) = v {
            write_fields(&mut xml, action, fields);
        }
        xml.push_str(&format!("</{action}Result>"));
    }
    xml.push_str(&format!(
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    ));
    super::respond(StatusCode::OK, CONTENT_TYPE, xml)
}

pub fn render_error(e: &SqsError, request_id: &str) -> Response {
    let kind = if e.sender_fault { "Sender" } else { "Receiver" };
    let xml = format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        esc(e.query_code),
        esc(&e.message)
    );
    super::respond(e.status, CONTENT_TYPE, xml)
}

/// XML text, escaped. quick-xml writes carriage returns as character
/// references, which matters: an XML parser would turn a literal CR LF into
/// LF, changing a body and breaking its MD5 (tested below).
fn esc(s: &str) -> String {
    escape(s).into_owned()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn element(xml: &mut String, name: &str, body: &str) {
    xml.push('<');
    xml.push_str(name);
    xml.push('>');
    xml.push_str(body);
    xml.push_str("</");
    xml.push_str(name);
    xml.push('>');
}

fn write_fields(xml: &mut String, action: &str, fields: &Map<String, Value>) {
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("Attributes", Value::Object(m)) => {
                for (k, val) in m {
                    let inner =
                        format!("<Name>{}</Name><Value>{}</Value>", esc(k), esc(&text(val)));
                    element(xml, "Attribute", &inner);
                }
            }
            ("Tags", Value::Object(m)) => {
                for (k, val) in m {
                    let inner = format!("<Key>{}</Key><Value>{}</Value>", esc(k), esc(&text(val)));
                    element(xml, "Tag", &inner);
                }
            }
            ("MessageAttributes", Value::Object(m)) => {
                for (k, val) in m {
                    let mut inner = format!("<Name>{}</Name><Value>", esc(k));
                    if let Value::Object(parts) = val {
                        write_fields(&mut inner, action, parts);
                    }
                    inner.push_str("</Value>");
                    element(xml, "MessageAttribute", &inner);
                }
            }
            ("QueueUrls" | "queueUrls", Value::Array(items)) => {
                for item in items {
                    element(xml, "QueueUrl", &esc(&text(item)));
                }
            }
            (list, Value::Array(items)) => {
                let item_name = match list {
                    "Messages" => "Message".to_owned(),
                    "Successful" => format!("{action}ResultEntry"),
                    "Failed" => "BatchResultErrorEntry".to_owned(),
                    "Results" => format!("{action}ResultEntry"),
                    other => other.trim_end_matches('s').to_owned(),
                };
                for item in items {
                    let mut inner = String::new();
                    match item {
                        Value::Object(m) => write_fields(&mut inner, action, m),
                        other => inner.push_str(&esc(&text(other))),
                    }
                    element(xml, &item_name, &inner);
                }
            }
            (_, Value::Object(m)) => {
                let mut inner = String::new();
                write_fields(&mut inner, action, m);
                element(xml, name, &inner);
            }
            (_, Value::Null) => {}
            (_, other) => element(xml, name, &esc(&text(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattened_parameters_fold_into_the_json_shape() {
        let form = "Action=SendMessageBatch&Version=2012-11-05&QueueUrl=http%3A%2F%2Fh%2F1%2Fq\
            &SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=hi\
            &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k\
            &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
            &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v\
            &SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=yo\
            &Attribute.1.Name=DelaySeconds&Attribute.1.Value=5&AttributeName.1=All&AttributeName.2=QueueArn\
            &Tag.1.Key=env&Tag.1.Value=prod";
        let (action, input) = parse_input(form.as_bytes()).expect("parse");
        assert_eq!(action, "SendMessageBatch");
        assert_eq!(
            Value::Object(input),
            json!({
                "QueueUrl": "http://h/1/q",
                "Entries": [
                    {"Id": "a", "MessageBody": "hi",
                     "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
                    {"Id": "b", "MessageBody": "yo"}
                ],
                "Attributes": {"DelaySeconds": "5"},
                "AttributeNames": ["All", "QueueArn"],
                "Tags": {"env": "prod"}
            })
        );
    }

    #[test]
    fn hostile_parameter_names_are_refused_not_folded() {
        let deep = format!("Action=X&{}=1", "ARequestEntry.1.".repeat(5000) + "Id");
        assert!(parse_input(deep.as_bytes()).is_err());
        let many: String = (0..10_001).map(|i| format!("k{i}=v&")).collect();
        assert!(parse_input(format!("Action=X&{many}").as_bytes()).is_err());
    }

    #[test]
    fn carriage_returns_survive_xml() {
        assert_eq!(esc("a\r\nb<"), "a&#13;\nb&lt;");
    }

    #[test]
    fn a_missing_action_is_an_error() {
        assert!(parse_input(b"QueueUrl=x").is_err());
        assert!(parse_input(b"Action=X&Attribute.x.Name=a").is_err());
    }
}
