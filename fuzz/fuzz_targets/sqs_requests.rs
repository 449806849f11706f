//! SQS request parsing, both wire protocols: the first byte picks the
//! protocol and action, the rest is the body (or the query string).
#![no_main]

use axum::http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const TARGETS: &[&str] = &[
    "AmazonSQS.SendMessage",
    "AmazonSQS.SendMessageBatch",
    "AmazonSQS.ReceiveMessage",
    "AmazonSQS.CreateQueue",
    "AmazonSQS.SetQueueAttributes",
    "AmazonSQS.StartMessageMoveTask",
    "AmazonSQS.DeleteMessageBatch",
    "AmazonSQS.Other",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost"));
    match pick % 3 {
        0 => {
            h.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
            let target = TARGETS[usize::from(pick / 3) % TARGETS.len()];
            h.insert("x-amz-target", HeaderValue::from_static(target));
            let _ = ferry_sqs::wire::parse(&Method::POST, &h, "/", None, rest);
        }
        1 => {
            h.insert(
                "content-type",
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            let _ = ferry_sqs::wire::parse(&Method::POST, &h, "/000000000000/q", None, rest);
        }
        _ => {
            let query = String::from_utf8_lossy(rest);
            let _ = ferry_sqs::wire::parse(&Method::GET, &h, "/", Some(&query), b"");
        }
    }
});
