//! Hand-written encoding and decoding of the frames every message passes
//! through — basic.publish, basic.deliver and content headers without a
//! headers table — because the codec's general parser and generator move
//! large values around and allocate per field (a profile of a publish /
//! deliver run put a fifth of the broker's time there). Anything else, or
//! anything these do not recognise, goes to the codec; tests check both
//! agree byte for byte.

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::ShortString;

use crate::codec::{CLASS_BASIC, FRAME_END, FRAME_HEADER, FRAME_METHOD};

const METHOD_PUBLISH: u16 = 40;
const METHOD_DELIVER: u16 = 60;
/// Property flag bits, highest first, as the spec orders the properties.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;

/// Reads a method frame's payload if it is a basic.publish.
pub fn parse_publish(p: &[u8]) -> Option<basic::Publish> {
    let mut r = Reader { p, at: 0 };
    if r.u16()? != CLASS_BASIC || r.u16()? != METHOD_PUBLISH {
        return None;
    }
    let _reserved = r.u16()?;
    let exchange = r.short()?;
    let routing_key = r.short()?;
    let bits = r.u8()?;
    r.done()?;
    Some(basic::Publish {
        exchange,
        routing_key,
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    })
}

/// Reads a content header's payload if it has no headers table (and no
/// continued property flags); the codec reads the others.
pub fn parse_plain_header(p: &[u8]) -> Option<AMQPContentHeader> {
    let mut r = Reader { p, at: 0 };
    let class_id = r.u16()?;
    let _weight = r.u16()?;
    let body_size = r.u64()?;
    let flags = r.u16()?;
    if flags & (HEADERS | 1) != 0 {
        return None;
    }
    let mut props = AMQPProperties::default();
    if flags & CONTENT_TYPE != 0 {
        props = props.with_content_type(r.short()?);
    }
    if flags & CONTENT_ENCODING != 0 {
        props = props.with_content_encoding(r.short()?);
    }
    if flags & DELIVERY_MODE != 0 {
        props = props.with_delivery_mode(r.u8()?);
    }
    if flags & PRIORITY != 0 {
        props = props.with_priority(r.u8()?);
    }
    if flags & CORRELATION_ID != 0 {
        props = props.with_correlation_id(r.short()?);
    }
    if flags & REPLY_TO != 0 {
        props = props.with_reply_to(r.short()?);
    }
    if flags & EXPIRATION != 0 {
        props = props.with_expiration(r.short()?);
    }
    if flags & MESSAGE_ID != 0 {
        props = props.with_message_id(r.short()?);
    }
    if flags & TIMESTAMP != 0 {
        props = props.with_timestamp(r.u64()?);
    }
    if flags & TYPE != 0 {
        props = props.with_type(r.short()?);
    }
    if flags & USER_ID != 0 {
        props = props.with_user_id(r.short()?);
    }
    if flags & APP_ID != 0 {
        props = props.with_app_id(r.short()?);
    }
    if flags & CLUSTER_ID != 0 {
        props = props.with_cluster_id(r.short()?);
    }
    r.done()?;
    Some(AMQPContentHeader {
        class_id,
        body_size,
        properties: props,
    })
}

struct Reader<'a> {
    p: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.p.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn short(&mut self) -> Option<ShortString> {
        let n = usize::from(self.u8()?);
        let s = std::str::from_utf8(self.take(n)?).ok()?;
        ShortString::try_new(s).ok()
    }

    /// The payload must end here.
    fn done(&self) -> Option<()> {
        (self.at == self.p.len()).then_some(())
    }
}

/// Appends a basic.deliver method frame. Strings longer than a short
/// string's 255 bytes are cut (they never are: they came in as short strings).
pub fn write_deliver(
    buf: &mut Vec<u8>,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let start = begin(buf, FRAME_METHOD, channel);
    buf.extend_from_slice(&CLASS_BASIC.to_be_bytes());
    buf.extend_from_slice(&METHOD_DELIVER.to_be_bytes());
    short(buf, consumer_tag);
    buf.extend_from_slice(&delivery_tag.to_be_bytes());
    buf.push(u8::from(redelivered));
    short(buf, exchange);
    short(buf, routing_key);
    end(buf, start);
}

/// Appends a content header frame if `props` has no headers table;
/// returns false (and appends nothing) otherwise.
pub fn write_plain_header(
    buf: &mut Vec<u8>,
    channel: u16,
    body_size: u64,
    props: &AMQPProperties,
) -> bool {
    if props.headers().is_some() {
        return false;
    }
    let start = begin(buf, FRAME_HEADER, channel);
    buf.extend_from_slice(&CLASS_BASIC.to_be_bytes());
    buf.extend_from_slice(&0u16.to_be_bytes());
    buf.extend_from_slice(&body_size.to_be_bytes());
    let flags_at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    let mut flags = 0u16;
    let mut text = |buf: &mut Vec<u8>, bit: u16, v: &Option<ShortString>| {
        if let Some(v) = v {
            flags |= bit;
            short(buf, v.as_str());
        }
    };
    text(buf, CONTENT_TYPE, props.content_type());
    text(buf, CONTENT_ENCODING, props.content_encoding());
    if let Some(m) = props.delivery_mode() {
        flags |= DELIVERY_MODE;
        buf.push(*m);
    }
    if let Some(p) = props.priority() {
        flags |= PRIORITY;
        buf.push(*p);
    }
    let mut text = |buf: &mut Vec<u8>, bit: u16, v: &Option<ShortString>| {
        if let Some(v) = v {
            flags |= bit;
            short(buf, v.as_str());
        }
    };
    text(buf, CORRELATION_ID, props.correlation_id());
    text(buf, REPLY_TO, props.reply_to());
    text(buf, EXPIRATION, props.expiration());
    text(buf, MESSAGE_ID, props.message_id());
    if let Some(t) = props.timestamp() {
        flags |= TIMESTAMP;
        buf.extend_from_slice(&t.to_be_bytes());
    }
    let mut text = |buf: &mut Vec<u8>, bit: u16, v: &Option<ShortString>| {
        if let Some(v) = v {
            flags |= bit;
            short(buf, v.as_str());
        }
    };
    text(buf, TYPE, props.kind());
    text(buf, USER_ID, props.user_id());
    text(buf, APP_ID, props.app_id());
    text(buf, CLUSTER_ID, props.cluster_id());
    patch(buf, flags_at, flags.to_be_bytes());
    end(buf, start);
    true
}

/// Frame type, channel, and room for the size; returns where the frame starts.
fn begin(buf: &mut Vec<u8>, kind: u8, channel: u16) -> usize {
    let start = buf.len();
    buf.push(kind);
    buf.extend_from_slice(&channel.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    start
}

/// Fills in the size and closes the frame.
fn end(buf: &mut Vec<u8>, start: usize) {
    let size = (buf.len() - start - 7) as u32;
    patch(buf, start + 3, size.to_be_bytes());
    buf.push(FRAME_END);
}

/// Overwrites bytes this encoder wrote earlier (a size or flags it learns
/// only later); `at` is always inside what it wrote.
fn patch<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    if let Some(place) = buf.get_mut(at..at + N) {
        place.copy_from_slice(&bytes);
    }
}

fn short(buf: &mut Vec<u8>, s: &str) {
    let s = crate::values::truncate(s, 255);
    buf.push(s.len() as u8);
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Output;
    use amq_protocol::frame::{AMQPFrame, parse_frame};
    use amq_protocol::protocol::AMQPClass;
    use amq_protocol::types::{AMQPValue, FieldTable};

    fn full_props() -> AMQPProperties {
        AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_content_encoding("gzip".into())
            .with_delivery_mode(2)
            .with_priority(7)
            .with_correlation_id("c".into())
            .with_reply_to("r".into())
            .with_expiration("60000".into())
            .with_message_id("m".into())
            .with_timestamp(1_700_000_000)
            .with_type("t".into())
            .with_user_id("guest".into())
            .with_app_id("a".into())
            .with_cluster_id("k".into())
    }

    /// A content header frame as the codec writes it.
    fn codec_header(props: &AMQPProperties, body_size: u64) -> Vec<u8> {
        let frame = AMQPFrame::Header(
            1,
            AMQPContentHeader {
                class_id: CLASS_BASIC,
                body_size,
                properties: props.clone(),
            },
        );
        let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
        match amq_protocol::frame::gen_frame(&frame)(ctx) {
            Ok(ctx) => ctx.write,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn deliver_frames_match_the_codec() {
        let mut mine = Vec::new();
        write_deliver(&mut mine, 3, "ctag", 42, true, "ex", "rk");
        let mut theirs = Output::default();
        theirs.method(
            3,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "ctag".into(),
                delivery_tag: 42,
                redelivered: true,
                exchange: "ex".into(),
                routing_key: "rk".into(),
            })),
        );
        assert_eq!(mine, theirs.pending());
    }

    #[test]
    fn plain_headers_match_the_codec_both_ways() {
        for props in [
            AMQPProperties::default(),
            AMQPProperties::default().with_delivery_mode(2),
            full_props(),
        ] {
            let mut mine = Vec::new();
            assert!(write_plain_header(&mut mine, 1, 99, &props));
            assert_eq!(mine, codec_header(&props, 99), "{props:?}");
            let parsed = parse_plain_header(&mine[7..mine.len() - 1]).expect("plain");
            assert_eq!(parsed.properties, props);
            assert_eq!(parsed.body_size, 99);
        }
        let mut t = FieldTable::default();
        t.insert("k".into(), AMQPValue::Boolean(true));
        let with_table = AMQPProperties::default().with_headers(t);
        assert!(!write_plain_header(&mut Vec::new(), 1, 1, &with_table));
        let frame = codec_header(&with_table, 1);
        assert!(parse_plain_header(&frame[7..frame.len() - 1]).is_none());
    }

    #[test]
    fn publish_frames_parse_as_the_codec_parses_them() {
        let p = basic::Publish {
            exchange: "amq.topic".into(),
            routing_key: "a.b".into(),
            mandatory: true,
            immediate: false,
        };
        let mut out = Output::default();
        out.method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(p.clone())));
        let frame = out.pending();
        assert_eq!(parse_publish(&frame[7..frame.len() - 1]), Some(p.clone()));
        match parse_frame(frame) {
            Ok((_, AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(q))))) => {
                assert_eq!(q, p)
            }
            other => panic!("{other:?}"),
        }
        // Truncated or padded payloads are not recognised (the codec decides).
        let payload = &frame[7..frame.len() - 1];
        assert!(parse_publish(&payload[..payload.len() - 1]).is_none());
        let mut padded = payload.to_vec();
        padded.push(0);
        assert!(parse_publish(&padded).is_none());
    }
}
