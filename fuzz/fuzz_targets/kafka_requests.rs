//! Kafka request frames on whatever a client might send: the header, then
//! the body decoder of every served API at every served version.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

use ferry_kafka::wire;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    // As it came: the header names the API and version.
    if let Ok((h, Some(key), mut r)) = wire::header(frame.clone()) {
        let _ = wire::decode_any(key, h.version, &mut r);
    }
    // The same bytes as the body of each served API and version, so every
    // decoder sees every input (the header above rarely names a served one).
    for &(key, lo, hi) in wire::SUPPORTED {
        for v in lo..=hi {
            let mut r = wire::Reader::new(frame.clone(), 0, wire::flexible(key, v));
            let _ = wire::decode_any(key, v, &mut r);
        }
    }
});
