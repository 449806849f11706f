//! Consumer groups against a real `ferry serve` with librdkafka: members
//! sharing partitions under each assignor as they join and leave, static
//! membership, commits that survive a crash, group admin, and the group
//! coordinator's refusals in Kafka's error codes.

mod common;
mod kafka_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance,
};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

use common::Ferry;
use kafka_support::{call, config, create_topic, producer, start};

/// Groups here rebalance at once (Kafka waits 3 s for more members).
const NO_DELAY: &[&str] = &["--kafka-group-initial-rebalance-delay-ms", "0"];

fn member(ferry: &Ferry, group: &str, strategy: &str, instance: Option<&str>) -> BaseConsumer {
    member_with(ferry, group, strategy, instance, DefaultConsumerContext)
}

fn member_with<C: ConsumerContext>(
    ferry: &Ferry,
    group: &str,
    strategy: &str,
    instance: Option<&str>,
    context: C,
) -> BaseConsumer<C> {
    let mut c = config(ferry);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .set("partition.assignment.strategy", strategy)
        .set("fetch.wait.max.ms", "100");
    if let Some(i) = instance {
        c.set("group.instance.id", i);
    }
    c.create_with_context(context).expect("consumer")
}

/// Counts the rebalances that took partitions from a consumer.
#[derive(Clone, Default)]
struct Revokes(Arc<AtomicUsize>);

impl Revokes {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl ClientContext for Revokes {}

impl ConsumerContext for Revokes {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn assigned<C: ConsumerContext>(c: &BaseConsumer<C>) -> usize {
    c.assignment().map_or(0, |a| a.count())
}

/// Polls every consumer (which is what moves their rebalances along)
/// until `done` holds for their assignment sizes, or 30 s pass.
fn settle<C: ConsumerContext>(
    consumers: &[&BaseConsumer<C>],
    done: impl Fn(&[usize]) -> bool,
) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(20));
        }
        let sizes: Vec<usize> = consumers.iter().map(|c| assigned(c)).collect();
        if done(&sizes) || Instant::now() > deadline {
            return sizes;
        }
    }
}

/// Polls for `d`, letting any rebalance under way show.
fn poll_for<C: ConsumerContext>(consumers: &[&BaseConsumer<C>], d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(20));
        }
    }
}

fn partitions<C: ConsumerContext>(c: &BaseConsumer<C>) -> Vec<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_under_every_assignor_as_they_join_and_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), NO_DELAY);
    create_topic(&ferry, "shared", 4, &[]).await;
    for strategy in ["range", "roundrobin", "cooperative-sticky"] {
        let group = format!("g-{strategy}");
        let a = member(&ferry, &group, strategy, None);
        a.subscribe(&["shared"]).expect("subscribe");
        assert_eq!(settle(&[&a], |s| s == [4]), [4], "{strategy}: a alone");
        let b = member(&ferry, &group, strategy, None);
        b.subscribe(&["shared"]).expect("subscribe");
        assert_eq!(
            settle(&[&a, &b], |s| s == [2, 2]),
            [2, 2],
            "{strategy}: a and b share"
        );
        let mut all: Vec<i32> = [&a, &b]
            .iter()
            .flat_map(|c| {
                let a = c.assignment().expect("assignment");
                a.elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3], "{strategy}: each partition once");

        let groups = a
            .fetch_group_list(Some(group.as_str()), Duration::from_secs(5))
            .expect("describe");
        let g = &groups.groups()[0];
        assert_eq!((g.state(), g.protocol_type()), ("Stable", "consumer"));
        assert_eq!(g.protocol(), strategy);
        assert_eq!(g.members().len(), 2);

        // b leaves (a clean close sends LeaveGroup): a has it all again.
        drop(b);
        assert_eq!(settle(&[&a], |s| s == [4]), [4], "{strategy}: b left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_comes_back_to_its_partitions_without_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), NO_DELAY);
    create_topic(&ferry, "statics", 2, &[]).await;
    let (ra, rb) = (Revokes::default(), Revokes::default());
    let a = member_with(&ferry, "gs", "range", Some("host-a"), ra.clone());
    a.subscribe(&["statics"]).expect("subscribe");
    // a joins first, so it leads the group.
    assert_eq!(settle(&[&a], |s| s == [2]), [2]);
    let b = member_with(&ferry, "gs", "range", Some("host-b"), rb.clone());
    b.subscribe(&["statics"]).expect("subscribe");
    assert_eq!(settle(&[&a, &b], |s| s == [1, 1]), [1, 1]);
    let (a_parts, b_parts) = (partitions(&a), partitions(&b));
    let a_revokes = ra.count();

    // A static member's close does not leave the group (it is expected
    // back), so its replacement takes its place and its partition, and
    // the other member sees no rebalance: its partitions are not revoked.
    drop(b);
    let rb = Revokes::default();
    let b = member_with(&ferry, "gs", "range", Some("host-b"), rb.clone());
    b.subscribe(&["statics"]).expect("subscribe");
    assert_eq!(settle(&[&a, &b], |s| s == [1, 1]), [1, 1]);
    poll_for(&[&a, &b], Duration::from_millis(1500));
    assert_eq!(partitions(&b), b_parts);
    assert_eq!(ra.count(), a_revokes, "a kept its partition throughout");

    // The leader comes back too (librdkafka's JoinGroup is below v9, so it
    // is told it is a follower and only syncs): b sees no rebalance.
    drop(a);
    let ra = Revokes::default();
    let a = member_with(&ferry, "gs", "range", Some("host-a"), ra.clone());
    a.subscribe(&["statics"]).expect("subscribe");
    assert_eq!(settle(&[&a, &b], |s| s == [1, 1]), [1, 1]);
    poll_for(&[&a, &b], Duration::from_millis(1500));
    assert_eq!(partitions(&a), a_parts);
    assert_eq!(rb.count(), 0, "b kept its partition throughout");
    let groups = a
        .fetch_group_list(Some("gs"), Duration::from_secs(5))
        .expect("describe");
    assert_eq!(groups.groups()[0].members().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_crash_and_groups_can_be_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), NO_DELAY);
    create_topic(&ferry, "jobs", 2, &[]).await;
    let p = producer(&ferry, "all", true);
    for i in 0..20 {
        let v = format!("job {i}");
        p.send(
            FutureRecord::to("jobs")
                .partition(i % 2)
                .key("k")
                .payload(&v),
            Duration::from_secs(10),
        )
        .await
        .expect("acked");
    }
    drop(p);

    let c = member(&ferry, "workers", "range", None);
    c.subscribe(&["jobs"]).expect("subscribe");
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < 12 && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            m.expect("message");
            seen += 1;
        }
    }
    assert_eq!(seen, 12);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    let committed: HashMap<i32, i64> = c
        .committed(Duration::from_secs(5))
        .expect("committed")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().expect("an offset")))
        .collect();
    assert_eq!(committed.values().sum::<i64>(), 12, "{committed:?}");

    let admin: AdminClient<DefaultClientContext> = config(&ferry).create().expect("admin");
    let res = admin
        .delete_groups(&["workers"], &AdminOptions::new())
        .await
        .expect("delete groups");
    assert_eq!(
        res[0].as_ref().err().map(|e| e.1),
        Some(RDKafkaErrorCode::NonEmptyGroup)
    );
    drop(admin);
    drop(c);

    // SIGKILL: the commit was answered, so it was written (its fsync is the
    // offsets log's own tests' business; a kill keeps the page cache).
    ferry.kill();
    let ferry = start(dir.path(), NO_DELAY);
    // One more record each, so a partition read to its end shows where
    // the group resumes too.
    let p = producer(&ferry, "all", true);
    for i in 0..2 {
        p.send(
            FutureRecord::to("jobs")
                .partition(i)
                .key("k")
                .payload("after"),
            Duration::from_secs(10),
        )
        .await
        .expect("acked");
    }
    drop(p);
    let c = member(&ferry, "workers", "range", None);
    c.subscribe(&["jobs"]).expect("subscribe");
    let mut first: HashMap<i32, i64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < 2 && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    assert_eq!(first, committed, "consumption resumes at the commits");
    drop(c);

    let admin: AdminClient<DefaultClientContext> = config(&ferry).create().expect("admin");
    let res = admin
        .delete_groups(&["workers", "nobody"], &AdminOptions::new())
        .await
        .expect("delete groups");
    assert_eq!(res[0], Ok("workers".to_owned()));
    assert_eq!(
        res[1].as_ref().err().map(|e| e.1),
        Some(RDKafkaErrorCode::GroupIdNotFound)
    );
    let c = member(&ferry, "workers", "range", None);
    let left = c
        .fetch_group_list(Some("workers"), Duration::from_secs(5))
        .expect("describe");
    assert!(
        left.groups().iter().all(|g| g.state() == "Dead"),
        "the group is gone"
    );
}

fn join(conn: &mut TcpStream, member: &str, session_ms: i32) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("raw")))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0")),
        ]);
    call(conn, ApiKey::JoinGroup, 7, &req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_refuses_in_kafkas_error_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path(), NO_DELAY);
    let mut conn = TcpStream::connect(ferry.addr("kafka")).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");

    assert_eq!(
        join(&mut conn, "", 10).error_code,
        26,
        "INVALID_SESSION_TIMEOUT"
    );
    let first = join(&mut conn, "", 6000);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let id = first.member_id.to_string();
    assert!(id.starts_with("raw-"), "{id}");
    let joined = join(&mut conn, &id, 6000);
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    assert_eq!(joined.leader.to_string(), id);
    assert_eq!(joined.members.len(), 1);
    let synced: SyncGroupResponse = call(
        &mut conn,
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("raw")))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_string(id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range"))),
    );
    assert_eq!(synced.error_code, 0);

    let heartbeat = |conn: &mut TcpStream, member: &str, generation: i32| -> i16 {
        let res: HeartbeatResponse = call(
            conn,
            ApiKey::Heartbeat,
            4,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("raw")))
                .with_generation_id(generation)
                .with_member_id(StrBytes::from_string(member.to_owned())),
        );
        res.error_code
    };
    assert_eq!(heartbeat(&mut conn, &id, 1), 0);
    assert_eq!(heartbeat(&mut conn, &id, 0), 22, "ILLEGAL_GENERATION");
    assert_eq!(heartbeat(&mut conn, "ghost", 1), 25, "UNKNOWN_MEMBER_ID");

    let commit = |conn: &mut TcpStream, generation: i32, topic: &str| -> i16 {
        let res: OffsetCommitResponse = call(
            conn,
            ApiKey::OffsetCommit,
            8,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("raw")))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(StrBytes::from_string(id.clone()))
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(3),
                        ]),
                ]),
        );
        res.topics[0].partitions[0].error_code
    };
    assert_eq!(
        commit(&mut conn, 1, "missing"),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    create_topic(&ferry, "present", 1, &[]).await;
    assert_eq!(commit(&mut conn, 0, "present"), 22, "a stale generation");
    assert_eq!(commit(&mut conn, 1, "present"), 0);

    // The broker serves on after a malformed request on another connection.
    let mut bad = TcpStream::connect(ferry.addr("kafka")).expect("connect");
    bad.write_all(&[0, 0, 0, 6, 0, 11, 0, 7, 0, 0])
        .expect("send");
    let mut rest = Vec::new();
    bad.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(
        bad.read_to_end(&mut rest).map(|_| rest.len()).ok(),
        Some(0),
        "closed"
    );
    assert_eq!(heartbeat(&mut conn, &id, 1), 0);
}
