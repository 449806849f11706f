//! Frames in and out, on the `amq-protocol` codec.
//!
//! Reading checks a frame's type, size and end octet before the codec sees
//! it (so an announced 4 GiB frame is refused, never awaited), and takes a
//! body frame's payload out of the read buffer without the codec (a large
//! body is sliced, never copied). Writing batches every frame of a turn
//! into one buffer that the connection writes with one call.

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{AMQPClass, basic};
use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Failure, ReplyCode};
use crate::fastpath;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Type, channel and size come before a frame's payload; the end octet after it.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame_max a peer may ask for (spec: 4096).
pub const FRAME_MIN_SIZE: u32 = 4096;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// The basic class, the only one with content.
pub const CLASS_BASIC: u16 = 60;

/// Written bytes are dropped from the output buffer past this much.
const SHRINK_ABOVE: usize = 256 * 1024;

/// Bodies shorter than this are copied out of the read buffer, so that a
/// long-lived small message does not keep a whole read buffer alive;
/// longer ones are sliced from it.
const COPY_BELOW: usize = 16 * 1024;

/// One frame from the client.
#[derive(Debug)]
pub enum Incoming {
    Method(u16, Box<AMQPClass>),
    Header(u16, Box<AMQPContentHeader>),
    Body(u16, Bytes),
    Heartbeat,
}

/// Takes the next whole frame from `buf`, if there is one. A frame larger
/// than `frame_max`, of an unknown type, without its end octet, or that
/// the codec cannot parse is a connection error (the spec's 501/502/540).
// Proven: every slice below ends at or before `total`, and `buf` holds at
// least `total` bytes once past the length check.
#[allow(clippy::indexing_slicing)]
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Incoming>, Failure> {
    let Some(&[kind, c0, c1, s0, s1, s2, s3]) = buf.first_chunk::<7>() else {
        return Ok(None);
    };
    let channel = u16::from_be_bytes([c0, c1]);
    let size = u32::from_be_bytes([s0, s1, s2, s3]) as usize;
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(Failure::connection(
            ReplyCode::FrameError,
            format!("unknown frame type {kind}"),
        ));
    }
    if size + FRAME_OVERHEAD > frame_max as usize {
        return Err(Failure::connection(
            ReplyCode::FrameError,
            format!(
                "frame of {} bytes is larger than the negotiated frame_max of {frame_max}",
                size + FRAME_OVERHEAD
            ),
        ));
    }
    let total = size + FRAME_OVERHEAD;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if buf.get(total - 1) != Some(&FRAME_END) {
        return Err(Failure::connection(
            ReplyCode::FrameError,
            "frame does not end with the frame-end octet",
        ));
    }
    let frame = match kind {
        FRAME_BODY => {
            let body = if size < COPY_BELOW {
                let b = Bytes::copy_from_slice(&buf[7..7 + size]);
                buf.advance(total);
                b
            } else {
                buf.split_to(total).freeze().slice(7..7 + size)
            };
            Incoming::Body(channel, body)
        }
        FRAME_HEARTBEAT => {
            buf.advance(total);
            if channel != 0 {
                return Err(Failure::connection(
                    ReplyCode::CommandInvalid,
                    "heartbeat frame on a channel other than 0",
                ));
            }
            Incoming::Heartbeat
        }
        _ => {
            let payload = &buf[7..total - 1];
            // The frames every message brings, read by hand (see fastpath).
            let fast = match kind {
                FRAME_METHOD => fastpath::parse_publish(payload).map(|p| {
                    Incoming::Method(
                        channel,
                        Box::new(AMQPClass::Basic(basic::AMQPMethod::Publish(p))),
                    )
                }),
                _ => fastpath::parse_plain_header(payload)
                    .map(|h| Incoming::Header(channel, Box::new(h))),
            };
            if let Some(f) = fast {
                buf.advance(total);
                return Ok(Some(f));
            }
            // The codec recurses into nested tables: bound their depth first.
            crate::depth::check(kind, payload)?;
            let parsed = parse_frame(&buf[..total]).map(|(_, f)| f);
            let ids = (buf.len() >= 11).then(|| {
                (
                    u16::from_be_bytes([buf[7], buf[8]]),
                    u16::from_be_bytes([buf[9], buf[10]]),
                )
            });
            buf.advance(total);
            match parsed {
                Ok(AMQPFrame::Method(ch, class)) => Incoming::Method(ch, Box::new(class)),
                Ok(AMQPFrame::Header(ch, header)) => Incoming::Header(ch, Box::new(header)),
                Ok(other) => {
                    return Err(Failure::connection(
                        ReplyCode::FrameError,
                        format!("unexpected frame {other}"),
                    ));
                }
                Err(_) if kind == FRAME_METHOD && ids.is_some_and(|(c, m)| !known_method(c, m)) => {
                    let (c, m) = ids.unwrap_or_default();
                    return Err(Failure::connection(
                        ReplyCode::NotImplemented,
                        format!("unknown method {c}.{m}"),
                    ));
                }
                Err(_) => {
                    return Err(Failure::connection(
                        ReplyCode::SyntaxError,
                        "malformed frame: its payload does not parse",
                    ));
                }
            }
        }
    };
    Ok(Some(frame))
}

/// Whether (class, method) names a method of AMQP 0-9-1 (with RabbitMQ's
/// extensions), so a parse failure can say "unknown" rather than "malformed".
fn known_method(class: u16, method: u16) -> bool {
    let methods: &[u16] = match class {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method)
}

/// Frames waiting to be written, in order.
#[derive(Default)]
pub struct Output {
    buf: Vec<u8>,
    /// How much of `buf` has been written already.
    written: usize,
    /// Whether anything was queued since the last call to `take_activity`
    /// (a connection that sends nothing sends heartbeats).
    active: bool,
}

impl Output {
    pub fn pending(&self) -> &[u8] {
        // `written` never passes the end (consume bounds it).
        self.buf.get(self.written..).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.written == self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.written
    }

    pub fn consume(&mut self, n: usize) {
        self.written += n;
        if self.written >= self.buf.len() {
            self.buf.clear();
            self.written = 0;
            // A burst may have grown the buffer far past what a turn needs.
            if self.buf.capacity() > 4 * SHRINK_ABOVE {
                self.buf.shrink_to(SHRINK_ABOVE);
            }
        } else if self.written > SHRINK_ABOVE && self.written * 2 > self.buf.len() {
            // A socket that never drains fully must not keep what it wrote.
            self.buf.drain(..self.written);
            self.written = 0;
        }
    }

    pub fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.active)
    }

    pub fn protocol_header(&mut self) {
        self.buf.extend_from_slice(PROTOCOL_HEADER);
        self.active = true;
    }

    /// Frames encoded elsewhere (a load generator's pre-encoded publishes).
    pub fn raw(&mut self, frames: &[u8]) {
        self.buf.extend_from_slice(frames);
        self.active = true;
    }

    pub fn heartbeat(&mut self) {
        self.buf
            .extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
        self.active = true;
    }

    pub fn method(&mut self, channel: u16, class: AMQPClass) {
        self.frame(&AMQPFrame::Method(channel, class));
    }

    /// A basic.deliver method frame (the hot one, written by hand).
    pub fn deliver(
        &mut self,
        channel: u16,
        consumer_tag: &str,
        delivery_tag: u64,
        redelivered: bool,
        exchange: &str,
        routing_key: &str,
    ) {
        fastpath::write_deliver(
            &mut self.buf,
            channel,
            consumer_tag,
            delivery_tag,
            redelivered,
            exchange,
            routing_key,
        );
        self.active = true;
    }

    /// A content header and its body, split into frames of at most `frame_max`.
    pub fn content(
        &mut self,
        channel: u16,
        properties: AMQPProperties,
        body: &[u8],
        frame_max: u32,
    ) {
        if !fastpath::write_plain_header(&mut self.buf, channel, body.len() as u64, &properties) {
            self.frame(&AMQPFrame::Header(
                channel,
                AMQPContentHeader {
                    class_id: CLASS_BASIC,
                    body_size: body.len() as u64,
                    properties,
                },
            ));
        }
        let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
        for part in body.chunks(chunk) {
            self.buf.push(FRAME_BODY);
            self.buf.extend_from_slice(&channel.to_be_bytes());
            self.buf
                .extend_from_slice(&(part.len() as u32).to_be_bytes());
            self.buf.extend_from_slice(part);
            self.buf.push(FRAME_END);
        }
    }

    fn frame(&mut self, frame: &AMQPFrame) {
        let start = self.buf.len();
        let ctx = WriteContext::from(std::mem::take(&mut self.buf));
        match gen_frame(frame)(ctx) {
            Ok(ctx) => self.buf = ctx.write,
            Err(e) => {
                // Only values we built go out, each checked for its limits,
                // so this is a bug: drop the frame rather than send garbage.
                tracing::error!(error = ?e, frame = %frame, "could not encode a frame");
                self.buf.truncate(start);
            }
        }
        self.active = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{basic, queue};

    fn encoded(class: AMQPClass) -> BytesMut {
        let mut out = Output::default();
        out.method(1, class);
        BytesMut::from(out.pending())
    }

    #[test]
    fn a_method_round_trips_and_a_partial_frame_waits() {
        let class = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            durable: true,
            ..Default::default()
        }));
        let whole = encoded(class.clone());
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert!(
                decode(&mut partial, 131_072).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let mut buf = whole.clone();
        match decode(&mut buf, 131_072).unwrap() {
            Some(Incoming::Method(1, c)) => assert_eq!(*c, class),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_unknown_and_unterminated_frames_are_connection_errors() {
        let mut big = BytesMut::from(&[1u8, 0, 1, 0xff, 0xff, 0xff, 0xff][..]);
        let e = decode(&mut big, 131_072).unwrap_err();
        assert_eq!(e.code, ReplyCode::FrameError);

        let mut bad_type = BytesMut::from(&[9u8, 0, 1, 0, 0, 0, 0, FRAME_END][..]);
        assert_eq!(
            decode(&mut bad_type, 131_072).unwrap_err().code,
            ReplyCode::FrameError
        );

        let mut whole = encoded(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            ..Default::default()
        })));
        let last = whole.len() - 1;
        whole[last] = 0;
        assert_eq!(
            decode(&mut whole, 131_072).unwrap_err().code,
            ReplyCode::FrameError
        );
    }

    #[test]
    fn unknown_methods_and_garbage_payloads_are_told_apart() {
        // class 60, method 99: no such method.
        let mut unknown = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 4, 0, 60, 0, 99, FRAME_END][..]);
        assert_eq!(
            decode(&mut unknown, 131_072).unwrap_err().code,
            ReplyCode::NotImplemented
        );
        // basic.qos with a truncated payload.
        let mut short = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 5, 0, 60, 0, 10, 0, FRAME_END][..]);
        assert_eq!(
            decode(&mut short, 131_072).unwrap_err().code,
            ReplyCode::SyntaxError
        );
    }

    #[test]
    fn bodies_are_split_at_frame_max() {
        let mut out = Output::default();
        let body = vec![7u8; 10_000];
        out.content(3, AMQPProperties::default(), &body, 4096);
        let mut buf = BytesMut::from(out.pending());
        let mut got = Vec::new();
        let mut bodies = 0;
        while let Some(f) = decode(&mut buf, 4096).unwrap() {
            match f {
                Incoming::Header(3, h) => assert_eq!(h.body_size, 10_000),
                Incoming::Body(3, b) => {
                    bodies += 1;
                    got.extend_from_slice(&b);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(bodies, 3);
        assert_eq!(got, body);
    }
}
