//! What the decoders' tests share: messages encoded by the
//! `kafka-protocol` crate, decoded here, checked whole, cut and corrupted.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use super::{DecodeError, Reader, flexible};

pub type Decoder<T> = fn(&mut Reader, i16) -> Result<T, DecodeError>;

pub fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}

pub fn g(x: &'static str) -> GroupId {
    GroupId(s(x))
}

pub fn t(x: &'static str) -> TopicName {
    TopicName(s(x))
}

pub fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// An unknown tagged field, for the flexible versions: the decoders
/// must skip it wherever the spec has tagged fields.
pub const TAG: (i32, Bytes) = (9, Bytes::from_static(b"tagged"));

/// Encodes `m` at `v`, decodes it with `f` and checks that the whole
/// body was read, that every shorter prefix of it is refused, and that
/// corrupting any byte of it does not panic.
pub fn check<T>(key: ApiKey, v: i16, m: &impl Encodable, f: Decoder<T>) -> T {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, v).unwrap();
    let body = buf.freeze();
    let flex = flexible(key, v);
    for cut in 0..body.len() {
        let mut r = Reader::new(body.slice(..cut), 0, flex);
        assert!(f(&mut r, v).is_err(), "{key:?} v{v} cut at {cut} decoded");
    }
    for at in 0..body.len() {
        for b in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bad = body.to_vec();
            bad[at] = b;
            let _ = f(&mut Reader::new(Bytes::from(bad), 0, flex), v);
        }
    }
    let mut r = Reader::new(body, 0, flex);
    let out = f(&mut r, v).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
    assert_eq!(r.remaining(), 0, "{key:?} v{v} left bytes unread");
    out
}

/// Arbitrary request bodies, rich in small numbers (counts, lengths).
pub fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![any::<u8>(), 0u8..4], 0..256)
}
