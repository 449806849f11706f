//! What a stream queue's declare and consume arguments mean, with
//! RabbitMQ's refusals.

use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable};
use ferry_core::stream::StreamConfig;

use crate::arguments::{QueueFlags, quorum_property};
use crate::error::{Failure, Outcome, ReplyCode};
use crate::values::{as_int, as_text};

/// Arguments a stream queue takes; of the other `x-` arguments RabbitMQ
/// refuses each as not of this queue type.
const STREAM_ARGUMENTS: &[&str] = &[
    "x-queue-type",
    "x-max-age",
    "x-max-length-bytes",
    "x-stream-max-segment-size-bytes",
    // Cluster placement and chunk filters: accepted, with nothing to do
    // on one node.
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-stream-filter-size-bytes",
];

/// RabbitMQ's default segment size for streams.
const DEFAULT_SEGMENT_BYTES: u64 = 500_000_000;
/// The smallest segment a stream takes (Kafka's floor, which the stored
/// config is checked against when it is read back): smaller asks get it.
const MIN_SEGMENT_BYTES: u64 = ferry_core::stream::MIN_SEGMENT_BYTES;
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Room for a record's own framing and headers beside the body, when a
/// stream queue's largest batch is set from AMQP's largest message.
const RECORD_OVERHEAD: u64 = 64 * 1024;

/// Whether a declare asks for a stream queue.
pub fn wants_stream(args: &FieldTable) -> Option<Outcome<bool>> {
    let v = args.inner().get("x-queue-type")?;
    Some(match as_text(v) {
        Some(t) => Ok(t == "stream"),
        None => Err(invalid("x-queue-type", "", "", "must be a string")),
    })
}

fn invalid(arg: &str, name: &str, vhost: &str, why: &str) -> Failure {
    Failure::channel(
        ReplyCode::PreconditionFailed,
        format!("invalid arg '{arg}' for queue '{name}' in vhost '{vhost}': {why}"),
    )
}

/// A stream queue's settings from its declare. Streams are durable,
/// shared and kept: RabbitMQ refuses the other flags.
pub fn stream_config(
    name: &str,
    vhost: &str,
    flags: &QueueFlags,
    args: &FieldTable,
    max_message_size: u64,
) -> Outcome<StreamConfig> {
    if !flags.durable {
        return Err(quorum_property(name, vhost, "non-durable"));
    }
    if flags.exclusive_owner.is_some() {
        return Err(quorum_property(name, vhost, "exclusive"));
    }
    if flags.auto_delete {
        return Err(quorum_property(name, vhost, "auto-delete"));
    }
    for k in args.inner().keys() {
        let k = k.as_str();
        if k.starts_with("x-") && !STREAM_ARGUMENTS.contains(&k) {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!(
                    "invalid arg '{k}' for queue '{name}' in vhost '{vhost}' of queue type rabbit_stream_queue"
                ),
            ));
        }
    }
    // A RabbitMQ stream keeps everything unless told otherwise, and takes
    // every message AMQP takes (each is one record in a batch of its own).
    let mut c = StreamConfig {
        retention_ms: None,
        retention_bytes: None,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
        max_message_bytes: u32::try_from(max_message_size.saturating_add(RECORD_OVERHEAD))
            .unwrap_or(i32::MAX as u32)
            .min(i32::MAX as u32),
        ..StreamConfig::default()
    };
    let get = |k: &str| args.inner().get(k);
    if let Some(v) = get("x-max-age") {
        let age = as_text(v).and_then(|t| parse_age(&t)).ok_or_else(|| {
            invalid(
                "x-max-age",
                name,
                vhost,
                "expected a duration such as 7D, 12h or 30m",
            )
        })?;
        let ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        c.retention_ms = Some(ms);
        // A segment must be able to age out while it is the newest.
        c.segment_ms = c.segment_ms.min(ms.max(1));
    }
    if let Some(v) = get("x-max-length-bytes") {
        let n = as_int(v).filter(|n| *n >= 0).ok_or_else(|| {
            invalid(
                "x-max-length-bytes",
                name,
                vhost,
                "must be a non-negative integer",
            )
        })?;
        c.retention_bytes = Some(n as u64);
    }
    if let Some(v) = get("x-stream-max-segment-size-bytes") {
        let n = as_int(v)
            .filter(|n| *n > 0 && *n <= 3_000_000_000)
            .ok_or_else(|| {
                invalid(
                    "x-stream-max-segment-size-bytes",
                    name,
                    vhost,
                    "must be a positive integer of at most 3000000000",
                )
            })?;
        // RabbitMQ takes up to 3 GB; a stream's segments go to 2 GiB
        // (Kafka's segment.bytes is an int), which is what larger asks get.
        c.segment_bytes = (n as u64).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
    }
    Ok(c)
}

/// RabbitMQ's `x-max-age` (and offset interval) form: a positive integer
/// and a unit, Y, M, D, h, m or s.
pub fn parse_age(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let n: u64 = s.get(..s.len() - unit.len_utf8())?.parse().ok()?;
    let secs: u64 = match unit {
        'Y' => 365 * 24 * 3600,
        'M' => 30 * 24 * 3600,
        'D' => 24 * 3600,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    (n > 0).then(|| Duration::from_secs(n.saturating_mul(secs)))
}

/// Where a consumer starts reading, from `x-stream-offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first record the stream still holds.
    First,
    /// The last chunk written (the newest batch, whole).
    Last,
    /// Only what is appended from now on (the default).
    Next,
    /// An offset (clamped to what the log holds).
    Offset(u64),
    /// The first record at or after this time, in ms.
    Time(i64),
}

/// `x-stream-offset` read as RabbitMQ reads it: first, last, next, an
/// offset, a timestamp (seconds), or an interval back from now ("1h").
pub fn start_of(v: Option<&AMQPValue>, now_ms: i64) -> Outcome<Start> {
    let Some(v) = v else {
        return Ok(Start::Next);
    };
    let bad = || {
        Failure::channel(
            ReplyCode::PreconditionFailed,
            "invalid arg 'x-stream-offset': expected first, last, next, an offset, a timestamp or an interval such as 1h",
        )
    };
    if let AMQPValue::Timestamp(t) = v {
        return Ok(Start::Time(
            i64::try_from(*t)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        ));
    }
    if let Some(n) = as_int(v) {
        return u64::try_from(n).map(Start::Offset).map_err(|_| bad());
    }
    let t = as_text(v).ok_or_else(bad)?;
    Ok(match t.as_str() {
        "first" => Start::First,
        "last" => Start::Last,
        "next" => Start::Next,
        other => {
            let back = parse_age(other).ok_or_else(bad)?;
            let back = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
            Start::Time(now_ms.saturating_sub(back))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    fn config(flags: &QueueFlags, a: &FieldTable) -> Outcome<StreamConfig> {
        stream_config("s", "/", flags, a, 16 << 20)
    }

    #[test]
    fn a_stream_queue_takes_every_message_amqp_takes_and_segments_fit_the_stored_config() {
        let big = args(&[(
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongLongInt(2_500_000_000),
        )]);
        let c = config(&DURABLE, &big).expect("config");
        assert!(c.max_message_bytes as u64 > 16 << 20);
        // What is stored must read back (Kafka's limits) after a restart.
        let mut stored = StreamConfig::default();
        for (k, v, _) in c.entries() {
            assert!(stored.set(k, &v).is_ok(), "{k}={v}");
        }
        assert_eq!(stored, c);
    }

    const DURABLE: QueueFlags = QueueFlags {
        durable: true,
        exclusive_owner: None,
        auto_delete: false,
    };

    #[test]
    fn declare_arguments_become_the_streams_config() {
        let c = config(
            &DURABLE,
            &args(&[
                ("x-queue-type", text("stream")),
                ("x-max-age", text("2D")),
                ("x-max-length-bytes", AMQPValue::LongLongInt(10_000_000)),
                (
                    "x-stream-max-segment-size-bytes",
                    AMQPValue::LongInt(100_000),
                ),
            ]),
        )
        .expect("config");
        assert_eq!(c.retention_ms, Some(2 * 24 * 3600 * 1000));
        assert_eq!(c.retention_bytes, Some(10_000_000));
        // Below the floor a stream's stored config may hold.
        assert_eq!(c.segment_bytes, MIN_SEGMENT_BYTES);
        let mut stored = StreamConfig::default();
        assert!(
            stored
                .set("segment.bytes", &c.segment_bytes.to_string())
                .is_ok()
        );
        let plain = config(&DURABLE, &FieldTable::default()).expect("config");
        assert_eq!((plain.retention_ms, plain.retention_bytes), (None, None));
    }

    #[test]
    fn refusals_are_rabbitmqs() {
        let transient = QueueFlags {
            durable: false,
            ..DURABLE
        };
        let e = config(&transient, &FieldTable::default()).unwrap_err();
        assert_eq!(e.code, ReplyCode::PreconditionFailed);
        assert!(e.detail.contains("'non-durable'"), "{}", e.detail);
        let e = config(&DURABLE, &args(&[("x-message-ttl", AMQPValue::LongInt(5))])).unwrap_err();
        assert!(e.detail.contains("rabbit_stream_queue"), "{}", e.detail);
        for bad in ["7", "D", "0D", "7d", "-1h", "1.5h"] {
            assert!(
                config(&DURABLE, &args(&[("x-max-age", text(bad))])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn offsets_are_read_as_rabbitmq_reads_them() {
        let now = 10_000_000;
        assert_eq!(start_of(None, now).ok(), Some(Start::Next));
        assert_eq!(start_of(Some(&text("first")), now).ok(), Some(Start::First));
        assert_eq!(start_of(Some(&text("last")), now).ok(), Some(Start::Last));
        assert_eq!(
            start_of(Some(&AMQPValue::LongLongInt(42)), now).ok(),
            Some(Start::Offset(42))
        );
        assert_eq!(
            start_of(Some(&AMQPValue::Timestamp(1000)), now).ok(),
            Some(Start::Time(1_000_000))
        );
        assert_eq!(
            start_of(Some(&text("10s")), now).ok(),
            Some(Start::Time(now - 10_000))
        );
        assert!(start_of(Some(&AMQPValue::LongLongInt(-1)), now).is_err());
        assert!(start_of(Some(&text("soon")), now).is_err());
        assert!(start_of(Some(&AMQPValue::Boolean(true)), now).is_err());
    }
}
