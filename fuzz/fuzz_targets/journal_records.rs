//! The journal's framing and record decoder on damaged segment bytes (what
//! recovery reads after a crash or a flipped bit).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match ferry_storage::frame::read(&data[at..]) {
            Ok(frame) => {
                let _ = ferry_storage::codec::decode(frame.kind, frame.payload);
                at += frame.size;
            }
            Err(_) => {
                // What a corrupt frame leaves: try the record decoder on the
                // rest directly, as a frame with a forged CRC would reach it.
                if let Some((&kind, payload)) = data[at..].split_first() {
                    let _ = ferry_storage::codec::decode(kind, payload);
                }
                break;
            }
        }
    }
});
