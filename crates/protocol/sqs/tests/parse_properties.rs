//! Whatever a client sends the AWS listener, request parsing and signature
//! checking answer with a request or an SQS error, never a panic. The same
//! code is fuzzed by `fuzz/fuzz_targets/sqs_requests.rs`.

use axum::http::{HeaderMap, HeaderValue, Method};
use ferry_sqs::{sigv4, wire};
use proptest::prelude::*;

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    h
}

const TARGETS: &[&str] = &[
    "AmazonSQS.SendMessage",
    "AmazonSQS.SendMessageBatch",
    "AmazonSQS.ReceiveMessage",
    "AmazonSQS.CreateQueue",
    "AmazonSQS.StartMessageMoveTask",
    "AmazonSQS.Nope",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    /// JSON protocol: a known target, a random body (JSON-ish or not).
    #[test]
    fn json_requests(target in prop::sample::select(TARGETS), body in "[{}\\[\\]\":,a-zA-Z0-9 .\\\\-]{0,200}") {
        let h = headers(&[
            ("content-type", "application/x-amz-json-1.0".into()),
            ("x-amz-target", target.into()),
            ("host", "localhost".into()),
        ]);
        let _ = wire::parse(&Method::POST, &h, "/", None, body.as_bytes());
    }

    #[test]
    fn json_bytes(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let h = headers(&[
            ("content-type", "application/x-amz-json-1.0".into()),
            ("x-amz-target", "AmazonSQS.SendMessage".into()),
        ]);
        let _ = wire::parse(&Method::POST, &h, "/", None, &body);
    }

    /// Query protocol: form bodies and query strings with indexed members.
    #[test]
    fn query_requests(
        body in "(Action=[A-Za-z]{0,20}|[A-Za-z]{1,12}(\\.[0-9]{1,3}){0,2}(\\.[A-Za-z]{1,6})?=[^&]{0,20}|&|%[0-9A-Fa-f]{0,2}){0,30}",
        path in "/[0-9a-z/]{0,30}",
    ) {
        let h = headers(&[("content-type", "application/x-www-form-urlencoded".into())]);
        let _ = wire::parse(&Method::POST, &h, &path, None, body.as_bytes());
        let _ = wire::parse(&Method::GET, &HeaderMap::new(), &path, Some(&body), b"");
    }

    /// Signature checking with made-up authorization headers and query
    /// strings (presigned URLs).
    #[test]
    fn signatures(
        auth in "AWS4-HMAC-SHA256 (Credential=[A-Z]{0,8}(/[0-9a-z_-]{0,10}){0,6})?,? ?(SignedHeaders=[a-z;-]{0,30})?,? ?(Signature=[0-9a-f]{0,70})?",
        query in "(X-Amz-[A-Za-z]{1,12}=[A-Za-z0-9%/_-]{0,30}&?){0,6}",
        date in "[0-9TZ]{0,20}",
    ) {
        let secret_of = |id: &str| (id == "AKID").then(|| "secret".to_owned());
        let h = headers(&[
            ("authorization", auth),
            ("x-amz-date", date),
            ("host", "localhost".into()),
        ]);
        let _ = sigv4::verify(&secret_of, &Method::POST, "/", None, &h, b"", 1_700_000_000);
        let _ = sigv4::verify(&secret_of, &Method::GET, "/", Some(&query), &HeaderMap::new(), b"", 1_700_000_000);
    }
}
