use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::clock::Timestamp;
use ferry_core::message::{DeathReason, Headers, Message, MessageId, Value};
use ferry_core::queue::{DeadLetterPolicy, DeadLetterTarget, DedupConfig, QueueConfig};
use ferry_core::router::{Binding, Destination, RouterConfig, RouterKind};
use ferry_core::store::{Location, QueueId, Record};
use proptest::prelude::*;

use super::*;

fn round_trip(r: &Record) -> Record {
    let mut buf = Vec::new();
    let kind = encode(r, &mut buf);
    decode(kind, &buf).expect("decodes")
}

fn rich_message() -> Message {
    let mut m = Message::new(Bytes::from_static(b"body \x00\xff"))
        .with_routing_key("a.b")
        .with_group("g")
        .with_dedup_id("d")
        .with_priority(7)
        .with_ttl(Duration::from_millis(1500))
        .with_delay(Duration::from_secs(2))
        .persistent();
    m.id = MessageId(0x1234_5678_9abc_def0_1122_3344_5566_7788);
    m.published_at = Timestamp(1_700_000_000_123);
    m.router = Some("x".into());
    m.properties.content_type = Some("text/plain".into());
    m.properties.correlation_id = Some("c-1".into());
    m.properties.reply_to = Some("amq.rabbitmq.reply-to".into());
    m.properties.timestamp = Some(42);
    m.properties.trace_context = Some("Root=1-abc".into());
    let nested: Headers = [("inner", "v")].into_iter().collect();
    m.headers.insert("str", "s");
    m.headers.insert("int", -5i64);
    m.headers.insert("bool", true);
    m.headers.insert("float", Value::Float(1.5));
    m.headers.insert(
        "dec",
        Value::Decimal {
            scale: 2,
            value: -314,
        },
    );
    m.headers
        .insert("bytes", Value::Bytes(Bytes::from_static(b"\x01\x02")));
    m.headers.insert("ts", Value::Timestamp(99));
    m.headers.insert("null", Value::Null);
    m.headers.insert(
        "list",
        Value::List(vec![Value::Int(1), Value::Str("two".into())]),
    );
    m.headers.insert("table", Value::Table(nested));
    m.headers.insert("num", Value::Number("1.50".into()));
    m.headers.insert(
        "custom",
        Value::Labeled {
            label: "String.json".into(),
            value: Box::new(Value::Str("{}".into())),
        },
    );
    // Two deaths: the first keeps the TTL it had (format 3), the second
    // has none left.
    m.dead_lettered("src", DeathReason::Expired, Timestamp(5))
        .dead_lettered("next", DeathReason::Rejected, Timestamp(6))
}

#[test]
fn every_record_kind_round_trips() {
    let config = QueueConfig {
        dedup: Some(DedupConfig {
            content_based: true,
            ..DedupConfig::default()
        }),
        message_ttl: Some(Duration::from_secs(60)),
        max_length: Some(10),
        max_bytes: Some(1 << 20),
        max_priority: 9,
        expires: Some(Duration::from_secs(3600)),
        single_active_consumer: true,
        encryption_key: Some("orders".into()),
        attributes: [
            ("Policy".to_owned(), "{}".to_owned()),
            ("tag:env".into(), "prod".into()),
        ]
        .into_iter()
        .collect(),
        dead_letter: Some(DeadLetterPolicy {
            max_deliveries: Some(5),
            ..DeadLetterPolicy::all_reasons(DeadLetterTarget::Router {
                router: "dlx".into(),
                routing_key: Some("dead".into()),
            })
        }),
        ..QueueConfig::fifo()
    };
    let mut router = RouterConfig::new(RouterKind::Headers);
    router.alternate = Some("ae".into());
    router.internal = true;
    let args: Headers = [("x-match", "any"), ("k", "v")].into_iter().collect();
    let binding = Binding::new("x", Destination::router("y"), "k.#").with_args(args);
    let records = vec![
        Record::NamespaceCreated { name: "/".into() },
        Record::NamespaceDeleted {
            name: "acct".into(),
        },
        Record::QueueDeclared {
            id: QueueId(7),
            namespace: "/".into(),
            name: "q".into(),
            config,
        },
        Record::QueueDeleted { id: QueueId(7) },
        Record::QueueDeclared {
            id: QueueId(8),
            namespace: "/".into(),
            name: "quorum".into(),
            config: QueueConfig {
                dead_letter: Some(DeadLetterPolicy::after_deliveries(
                    DeadLetterTarget::Discard,
                    21,
                )),
                ..QueueConfig::default()
            },
        },
        Record::Enqueued {
            queue: QueueId(7),
            seq: 1 << 40,
            at: Timestamp(123),
            deliveries: 3,
            message: Arc::new(rich_message()),
            replaces: Some(Location(77)),
            forwarded: true,
        },
        Record::Delivered {
            queue: QueueId(7),
            seq: 9,
            count: 2,
        },
        Record::Removed {
            queue: QueueId(7),
            seq: 9,
            loc: Some(Location(u64::MAX)),
        },
        Record::DedupKept {
            queue: QueueId(7),
            seq: 11,
            at: Timestamp(1_700_000_000_123),
            message: Arc::new({
                let mut m = Message::new(Bytes::new());
                m.id = MessageId(u128::MAX - 5);
                m.published_at = Timestamp(1_700_000_000_100);
                m.group_id = Some("g".into());
                m.dedup_id = Some("order-1".into());
                m
            }),
        },
        Record::Removed {
            queue: QueueId(7),
            seq: 10,
            loc: None,
        },
        Record::Purged {
            queue: QueueId(7),
            removed: vec![(1, Some(Location(5))), (2, None)],
        },
        Record::RouterDeclared {
            namespace: "/".into(),
            name: "x".into(),
            config: router,
        },
        Record::RouterDeleted {
            namespace: "/".into(),
            name: "x".into(),
        },
        Record::Bound {
            namespace: "/".into(),
            binding: binding.clone(),
        },
        Record::Unbound {
            namespace: "/".into(),
            binding,
        },
    ];
    for r in &records {
        assert_eq!(&round_trip(r), r);
    }
}

#[test]
fn unknown_types_and_trailing_bytes_are_errors() {
    assert!(matches!(decode(200, &[]), Err(DecodeError::Tag { .. })));
    let mut buf = Vec::new();
    let kind = encode(&Record::QueueDeleted { id: QueueId(1) }, &mut buf);
    buf.push(0);
    assert!(matches!(decode(kind, &buf), Err(DecodeError::Trailing(1))));
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut v = Value::Null;
    for _ in 0..100 {
        v = Value::List(vec![v]);
    }
    let m = Message::new("x").with_header("deep", v);
    let mut buf = Vec::new();
    let kind = encode(
        &Record::Enqueued {
            queue: QueueId(1),
            seq: 1,
            at: Timestamp(0),
            deliveries: 0,
            message: Arc::new(m),
            replaces: None,
            forwarded: false,
        },
        &mut buf,
    );
    assert!(matches!(decode(kind, &buf), Err(DecodeError::TooDeep(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the bytes, decoding returns (never panics, never hangs).
    #[test]
    fn random_bytes_never_panic(kind in 0u8..16, bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(kind, &bytes);
    }

    /// A valid record with one byte changed decodes to something or fails cleanly.
    #[test]
    fn mutated_records_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let r = Record::Enqueued {
            queue: QueueId(1),
            seq: 2,
            at: Timestamp(3),
            deliveries: 0,
            message: Arc::new(rich_message()),
            replaces: None,
            forwarded: false,
        };
        let mut buf = Vec::new();
        let kind = encode(&r, &mut buf);
        let i = at.index(buf.len());
        buf[i] = byte;
        let _ = decode(kind, &buf);
    }
}

/// Journals written before the forwarded flag read the same: the byte
/// after the counts was 0 or 1 (a location follows), and still means that.
#[test]
fn an_enqueued_record_keeps_the_version_1_layout_unless_forwarded() {
    let record = |replaces, forwarded| Record::Enqueued {
        queue: QueueId(7),
        seq: 9,
        at: Timestamp(5),
        deliveries: 0,
        message: Arc::new(Message::new("m")),
        replaces,
        forwarded,
    };
    let bytes = |r: &Record| {
        let mut out = Vec::new();
        encode(r, &mut out);
        out
    };
    // queue, seq, at, deliveries: one byte each; then the flags byte.
    assert_eq!(bytes(&record(None, false))[4], 0);
    assert_eq!(bytes(&record(Some(Location(77)), false))[4..6], [1, 77]);
    assert_eq!(bytes(&record(None, true))[4], 2);
    // A version-1 record, byte for byte, decodes as not forwarded.
    let old = bytes(&record(Some(Location(77)), false));
    match decode(ENQUEUED, &old) {
        Ok(Record::Enqueued {
            replaces,
            forwarded,
            ..
        }) => assert_eq!((replaces, forwarded), (Some(Location(77)), false)),
        other => panic!("{other:?}"),
    }
    let mut unknown = bytes(&record(None, false));
    unknown[4] = 4;
    assert!(decode(ENQUEUED, &unknown).is_err(), "unknown flags");
}
