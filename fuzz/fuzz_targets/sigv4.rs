//! The SigV4 verifier on made-up Authorization headers, dates and
//! presigned query strings: the input is split at NUL bytes into them.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let auth = parts.next().unwrap_or_default();
    let date = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost"));
    for (name, value) in [("authorization", auth), ("x-amz-date", date)] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    let secret_of = |id: &str| (id == "AKID").then(|| "secret".to_owned());
    let now = 1_700_000_000;
    let _ = ferry_sqs::sigv4::verify(&secret_of, &Method::POST, "/", None, &h, body.as_bytes(), now);
    let _ = ferry_sqs::sigv4::verify(&secret_of, &Method::GET, "/", Some(query), &h, b"", now);
});
