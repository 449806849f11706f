//! AWS JSON 1.0.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::SqsError;

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

pub fn parse_input(body: &[u8]) -> Result<Map<String, Value>, SqsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SqsError::serialization(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(SqsError::serialization(&format!("malformed JSON: {e}"))),
    }
}

pub fn render_ok(v: &Value) -> Response {
    super::respond(StatusCode::OK, CONTENT_TYPE, v.to_string())
}

pub fn render_error(e: &SqsError) -> Response {
    let json_type = if e.json_type.contains('#') {
        e.json_type.to_owned()
    } else {
        format!("com.amazonaws.sqs#{}", e.json_type)
    };
    let body = json!({
        "__type": json_type,
        "message": e.message,
    });
    let fault = if e.sender_fault { "Sender" } else { "Receiver" };
    (
        e.status,
        [
            ("content-type", CONTENT_TYPE.to_owned()),
            ("x-amzn-query-error", format!("{};{fault}", e.query_code)),
        ],
        body.to_string(),
    )
        .into_response()
}
