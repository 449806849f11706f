//! The AMQP 0-9-1 frame decoder on whatever a client might send.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Each frame consumes bytes: bounded by the input.
    for _ in 0..=data.len() {
        match ferry_amqp::codec::decode(&mut buf, 131_072) {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        }
    }
});
