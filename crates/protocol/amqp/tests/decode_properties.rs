//! Whatever bytes a client sends, the frame decoder answers (a frame, a
//! need for more bytes, or a protocol error) and never panics or loops.
//! The same decoder is fuzzed by `fuzz/fuzz_targets/amqp_frames.rs`.

use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;
use ferry_amqp::codec::{Output, decode};
use proptest::prelude::*;

const FRAME_MAX: u32 = 131_072;

/// Decodes frames until the buffer needs more bytes or a frame is refused.
fn drain(bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    // Each Ok(Some) consumes at least a frame header: bounded by the input.
    for _ in 0..=bytes.len() {
        match decode(&mut buf, FRAME_MAX) {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
    panic!("the decoder did not stop");
}

/// A real basic.publish frame, as a client would send it.
fn publish_frame() -> Vec<u8> {
    let mut out = Output::default();
    out.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "amq.topic".into(),
            routing_key: "a.b".into(),
            mandatory: true,
            immediate: false,
        })),
    );
    out.pending().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        drain(&bytes);
    }

    /// Well-formed frame envelopes (type, channel, size, end octet) around
    /// random payloads: what reaches the method and table decoders.
    #[test]
    fn random_payloads_in_real_frames(
        kind in prop::sample::select(vec![1u8, 2, 3, 8]),
        channel in 0u16..4,
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut f = vec![kind];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(&payload);
        f.push(0xCE);
        drain(&f);
    }

    /// A real method frame with one byte changed.
    #[test]
    fn mutated_methods(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut f = publish_frame();
        let i = at.index(f.len());
        f[i] = byte;
        drain(&f);
    }
}

#[test]
fn field_tables_nested_past_the_limit_are_refused_not_recursed() {
    // A connection.start-ok whose client properties nest tables 10,000 deep
    // would overflow the stack of a recursive decoder.
    let mut table = FieldTable::default();
    for _ in 0..40 {
        let mut outer = FieldTable::default();
        outer.insert(
            "t".into(),
            amq_protocol::types::AMQPValue::FieldTable(table),
        );
        table = outer;
    }
    let mut out = Output::default();
    out.method(
        0,
        AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::StartOk(
            amq_protocol::protocol::connection::StartOk {
                client_properties: table,
                mechanism: "PLAIN".into(),
                response: "\0guest\0guest".into(),
                locale: "en_US".into(),
            },
        )),
    );
    let mut buf = BytesMut::from(out.pending());
    assert!(
        decode(&mut buf, FRAME_MAX).is_err(),
        "nested 40 deep: refused"
    );
}
