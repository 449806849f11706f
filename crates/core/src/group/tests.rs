use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::*;
use crate::clock::FakeClock;

/// Offsets kept as the list of changes recorded, replayed on load (what a
/// durable store must give back).
#[derive(Default)]
struct Recorded(Mutex<Vec<OffsetChange>>);

impl OffsetStore for Recorded {
    fn load(&self) -> Result<Vec<(OffsetKey, Committed)>, StoreError> {
        let mut live = std::collections::BTreeMap::new();
        for c in self.0.lock().unwrap().iter() {
            match c {
                OffsetChange::Commit(k, v) => {
                    live.insert(k.clone(), v.clone());
                }
                OffsetChange::Delete(k) => {
                    live.remove(k);
                }
                OffsetChange::DeleteGroup { namespace, group } => {
                    live.retain(|k, _| !(&k.namespace == namespace && &k.group == group));
                }
            }
        }
        Ok(live.into_iter().collect())
    }

    fn record(&self, changes: Vec<OffsetChange>) -> Commit {
        self.0.lock().unwrap().extend(changes);
        Commit::done()
    }
}

struct Fixture {
    clock: FakeClock,
    store: Arc<Recorded>,
    groups: Arc<Groups>,
}

fn fixture(initial_delay_ms: i64) -> Fixture {
    let clock = FakeClock::default();
    let store = Arc::new(Recorded::default());
    let config = GroupConfig {
        initial_rebalance_delay_ms: initial_delay_ms,
        ..GroupConfig::default()
    };
    let groups = Groups::open(Arc::new(clock.clone()), store.clone(), config).unwrap();
    Fixture {
        clock,
        store,
        groups,
    }
}

fn request(member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group: "g".into(),
        member_id: member.into(),
        instance_id: instance.map(Into::into),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(b"r")),
            ("roundrobin".into(), Bytes::from_static(b"rr")),
        ],
        require_known_member: true,
        can_skip_assignment: false,
    }
}

fn answered<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    rx.try_recv().ok()
}

/// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id
/// and the pending second join.
fn join_new(f: &Fixture) -> (String, oneshot::Receiver<Result<Joined, GroupError>>) {
    let mut rx = f.groups.join("/", request("", None));
    let Some(Err(GroupError::MemberIdRequired(id))) = answered(&mut rx) else {
        panic!("a new member is asked to rejoin with an id");
    };
    let rx = f.groups.join("/", request(&id, None));
    (id, rx)
}

fn sync(
    f: &Fixture,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> oneshot::Receiver<Result<Synced, GroupError>> {
    f.groups.sync(
        "/",
        "g",
        member,
        None,
        generation,
        Some("consumer"),
        Some("range"),
        assignments,
    )
}

#[test]
fn members_join_sync_and_rebalance_when_another_joins() {
    let f = fixture(0);
    let (a, mut ja) = join_new(&f);
    let joined = answered(&mut ja).unwrap().unwrap();
    assert_eq!(joined.generation, 1);
    assert_eq!(joined.leader, a);
    assert_eq!(joined.protocol, "range");
    assert_eq!(joined.members.len(), 1);
    let mut sa = sync(&f, &a, 1, vec![(a.clone(), Bytes::from_static(b"all"))]);
    assert_eq!(
        answered(&mut sa).unwrap().unwrap().assignment,
        Bytes::from_static(b"all")
    );
    assert_eq!(f.groups.describe("/", "g").phase, Phase::Stable);

    // A second member: the group waits for the first to rejoin.
    let (b, mut jb) = join_new(&f);
    assert!(answered(&mut jb).is_none());
    assert_eq!(
        f.groups.heartbeat("/", "g", &a, None, 1),
        Err(GroupError::RebalanceInProgress)
    );
    let mut ja = f.groups.join("/", request(&a, None));
    let ja = answered(&mut ja).unwrap().unwrap();
    let jb = answered(&mut jb).unwrap().unwrap();
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays the leader");
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "only the leader sees the members");

    // The follower's sync waits for the leader's.
    let mut sb = sync(&f, &b, 2, vec![]);
    assert!(answered(&mut sb).is_none());
    assert_eq!(
        f.groups.heartbeat("/", "g", &b, None, 2),
        Ok(()),
        "heartbeats are fine while the assignment is made"
    );
    let mut sa = sync(
        &f,
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"p0")),
            (b.clone(), Bytes::from_static(b"p1")),
        ],
    );
    assert_eq!(
        answered(&mut sa).unwrap().unwrap().assignment,
        Bytes::from_static(b"p0")
    );
    assert_eq!(
        answered(&mut sb).unwrap().unwrap().assignment,
        Bytes::from_static(b"p1")
    );
    assert_eq!(
        f.groups.heartbeat("/", "g", &b, None, 1),
        Err(GroupError::IllegalGeneration {
            given: 1,
            current: 2
        })
    );
    let view = f.groups.describe("/", "g");
    assert_eq!((view.phase, view.members.len()), (Phase::Stable, 2));
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance() {
    let f = fixture(0);
    let (a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let (b, mut jb) = join_new(&f);
    let mut ja = f.groups.join("/", request(&a, None));
    answered(&mut ja).unwrap().unwrap();
    answered(&mut jb).unwrap().unwrap();
    let _sb = sync(&f, &b, 2, vec![]);
    let _sa = sync(&f, &a, 2, vec![]);
    // `a` keeps heartbeating, `b` goes quiet.
    for _ in 0..4 {
        f.clock.advance(Duration::from_secs(3));
        f.groups.tick();
        let hb = f.groups.heartbeat("/", "g", &a, None, 2);
        if hb.is_err() {
            assert_eq!(hb, Err(GroupError::RebalanceInProgress));
            break;
        }
    }
    assert_eq!(f.groups.describe("/", "g").phase, Phase::PreparingRebalance);
    let mut ja = f.groups.join("/", request(&a, None));
    let j = answered(&mut ja).unwrap().unwrap();
    assert_eq!((j.generation, j.members.len()), (3, 1));
    assert_eq!(
        f.groups.heartbeat("/", "g", &b, None, 2),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn members_that_do_not_rejoin_in_the_rebalance_timeout_are_dropped() {
    let f = fixture(0);
    let (a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let _sa = sync(&f, &a, 1, vec![]);
    let (_b, mut jb) = join_new(&f);
    // `a` keeps heartbeating (told to rejoin) but never rejoins.
    for _ in 0..11 {
        f.clock.advance(Duration::from_secs(3));
        let _ = f.groups.heartbeat("/", "g", &a, None, 1);
        f.groups.tick();
    }
    let j = answered(&mut jb).unwrap().unwrap();
    assert_eq!(j.generation, 2);
    assert_eq!(j.members.len(), 1, "b leads alone");
}

#[test]
fn the_first_rebalance_of_an_empty_group_waits_the_initial_delay() {
    let f = fixture(3_000);
    let (_a, mut ja) = join_new(&f);
    assert!(answered(&mut ja).is_none());
    f.clock.advance(Duration::from_secs(2));
    let (_b, mut jb) = join_new(&f);
    f.clock.advance(Duration::from_secs(2));
    f.groups.tick();
    assert!(answered(&mut ja).is_none(), "b's join extended the delay");
    f.clock.advance(Duration::from_secs(2));
    f.groups.tick();
    let (ja, jb) = (
        answered(&mut ja).unwrap().unwrap(),
        answered(&mut jb).unwrap().unwrap(),
    );
    assert_eq!((ja.generation, jb.generation), (1, 1));
}

#[test]
fn leaving_members_rebalance_and_the_last_leaves_the_group_empty() {
    let f = fixture(0);
    let (a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let _sa = sync(&f, &a, 1, vec![]);
    assert_eq!(
        f.groups
            .leave("/", "g", &[("nobody".into(), None)])
            .unwrap(),
        vec![Err(GroupError::UnknownMemberId)]
    );
    assert_eq!(
        f.groups.leave("/", "g", &[(a.clone(), None)]).unwrap(),
        vec![Ok(())]
    );
    let view = f.groups.describe("/", "g");
    assert_eq!((view.phase, view.generation), (Phase::Empty, 2));
    assert_eq!(
        f.groups.leave("/", "nope", &[]),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn static_members_rejoin_without_a_rebalance_and_fence_their_old_id() {
    let f = fixture(0);
    let mut j1 = f.groups.join("/", request("", Some("i1")));
    let j1 = answered(&mut j1).unwrap().unwrap();
    let mut j2 = f.groups.join("/", request("", Some("i2")));
    assert!(answered(&mut j2).is_none());
    let mut again = f.groups.join("/", request(&j1.member_id, Some("i1")));
    let leader = answered(&mut again).unwrap().unwrap();
    let j2 = answered(&mut j2).unwrap().unwrap();
    assert_eq!(leader.generation, 2);
    let _s2 = sync(&f, &j2.member_id, 2, vec![]);
    let mut s1 = sync(
        &f,
        &leader.member_id,
        2,
        vec![(j2.member_id.clone(), Bytes::from_static(b"x"))],
    );
    answered(&mut s1).unwrap().unwrap();

    // i2 restarts: a new id, the same generation and assignment.
    let mut back = f.groups.join("/", request("", Some("i2")));
    let back = answered(&mut back).unwrap().unwrap();
    assert_eq!(back.generation, 2);
    assert_ne!(back.member_id, j2.member_id);
    let mut s = f
        .groups
        .sync("/", "g", &back.member_id, Some("i2"), 2, None, None, vec![]);
    assert_eq!(
        answered(&mut s).unwrap().unwrap().assignment,
        Bytes::from_static(b"x")
    );
    assert_eq!(
        f.groups.heartbeat("/", "g", &j2.member_id, Some("i2"), 2),
        Err(GroupError::FencedInstanceId("i2".into()))
    );
    assert_eq!(f.groups.describe("/", "g").phase, Phase::Stable);

    // The leader restarts, its subscription bytes changed (it no longer
    // lists owned partitions), with a JoinGroup below v9: no rebalance; it
    // is told the old leader id and no members, so it only syncs.
    let mut req = request("", Some("i1"));
    req.protocols[0].1 = Bytes::from_static(b"r2");
    let mut lb = f.groups.join("/", req);
    let lb = answered(&mut lb).unwrap().unwrap();
    assert_eq!(lb.generation, 2);
    assert_eq!(lb.leader, leader.member_id);
    assert_ne!(lb.member_id, leader.member_id);
    assert!(lb.members.is_empty());
    assert_eq!(f.groups.describe("/", "g").phase, Phase::Stable);

    // A restart that changes the protocol the group would choose does
    // rebalance.
    let mut req = request("", Some("i2"));
    req.protocols.remove(0);
    let mut changed = f.groups.join("/", req);
    assert!(answered(&mut changed).is_none());
    assert_eq!(f.groups.describe("/", "g").phase, Phase::PreparingRebalance);
}

#[test]
fn commits_during_a_rebalance_check_the_member_first() {
    let f = fixture(0);
    let (a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let _sa = sync(&f, &a, 1, vec![]);
    let (_b, mut jb) = join_new(&f);
    let mut ja2 = f.groups.join("/", request(&a, None));
    answered(&mut ja2).unwrap().unwrap();
    answered(&mut jb).unwrap().unwrap();
    assert_eq!(
        f.groups.describe("/", "g").phase,
        Phase::CompletingRebalance
    );
    let member = |generation| Committer {
        generation,
        member_id: a.clone(),
        instance_id: None,
    };
    assert!(matches!(
        f.groups
            .commit("/", "g", &member(1), vec![offset("t", 0, 1)]),
        Err(GroupError::IllegalGeneration { .. })
    ));
    assert_eq!(
        f.groups
            .commit("/", "g", &member(2), vec![offset("t", 0, 1)])
            .err(),
        Some(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        f.groups
            .commit("/", "missing", &member(2), vec![offset("t", 0, 1)])
            .err(),
        Some(GroupError::GroupIdNotFound("missing".into()))
    );
}

#[test]
fn inconsistent_protocols_and_bad_timeouts_are_refused() {
    let f = fixture(0);
    let (_a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let mut other = request("", None);
    other.protocols = vec![("sticky".into(), Bytes::new())];
    let mut rx = f.groups.join("/", other);
    assert_eq!(
        answered(&mut rx).unwrap(),
        Err(GroupError::InconsistentGroupProtocol)
    );
    let mut short = request("", None);
    short.session_timeout_ms = 10;
    let mut rx = f.groups.join("/", short);
    assert!(matches!(
        answered(&mut rx).unwrap(),
        Err(GroupError::InvalidSessionTimeout { .. })
    ));
    let mut rx = f.groups.join("/", request("ghost", None));
    assert_eq!(answered(&mut rx).unwrap(), Err(GroupError::UnknownMemberId));
    let mut many = request("", None);
    many.protocols = (0..=MAX_PROTOCOLS)
        .map(|i| (format!("p{i}"), Bytes::new()))
        .chain([("range".to_owned(), Bytes::new())])
        .collect();
    let mut rx = f.groups.join("/", many);
    assert_eq!(
        answered(&mut rx).unwrap(),
        Err(GroupError::InconsistentGroupProtocol)
    );
}

fn offset(topic: &str, partition: u32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: Some("m".into()),
    }
}

fn simple() -> Committer {
    Committer {
        generation: -1,
        member_id: String::new(),
        instance_id: None,
    }
}

#[test]
fn commits_are_checked_against_the_generation_and_survive_reopening() {
    let f = fixture(0);
    let (a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let _sa = sync(&f, &a, 1, vec![]);
    let member = Committer {
        generation: 1,
        member_id: a.clone(),
        instance_id: None,
    };
    let stale = Committer {
        generation: 0,
        ..member.clone()
    };
    assert!(matches!(
        f.groups.commit("/", "g", &stale, vec![offset("t", 0, 5)]),
        Err(GroupError::IllegalGeneration { .. })
    ));
    assert_eq!(
        f.groups
            .commit("/", "g", &simple(), vec![offset("t", 0, 5)])
            .err(),
        Some(GroupError::UnknownMemberId),
        "a group with members takes commits from members only"
    );
    let (answers, commit) = f
        .groups
        .commit(
            "/",
            "g",
            &member,
            vec![offset("t", 0, 7), offset("t", 1, 9)],
        )
        .unwrap();
    assert!(commit.is_done());
    assert_eq!(answers, vec![Ok(()), Ok(())]);
    let mut huge = offset("t", 2, 1);
    huge.metadata = Some("x".repeat(5000));
    let (answers, _) = f.groups.commit("/", "g", &member, vec![huge]).unwrap();
    assert!(matches!(
        answers[0],
        Err(GroupError::OffsetMetadataTooLarge { .. })
    ));
    // Offsets-only group: any client may commit.
    let _ = f
        .groups
        .commit("/", "solo", &simple(), vec![offset("t", 0, 3)])
        .unwrap();

    let reopened = Groups::open(
        Arc::new(f.clock.clone()),
        f.store.clone(),
        GroupConfig::default(),
    )
    .unwrap();
    let got = reopened.fetch("/", "g", Some(&[("t".into(), vec![0, 1, 2])]));
    let offsets: Vec<Option<i64>> = got
        .iter()
        .map(|(_, _, c)| c.as_ref().map(|c| c.offset))
        .collect();
    assert_eq!(offsets, vec![Some(7), Some(9), None]);
    assert_eq!(reopened.fetch("/", "solo", None).len(), 1);
    assert_eq!(reopened.describe("/", "g").phase, Phase::Empty);
    let names: Vec<String> = reopened.list("/").into_iter().map(|s| s.group).collect();
    assert_eq!(names, vec!["g", "solo"]);
}

#[test]
fn deleting_groups_and_offsets() {
    let f = fixture(0);
    let _ = f
        .groups
        .commit(
            "/",
            "g",
            &simple(),
            vec![offset("t", 0, 1), offset("u", 0, 2)],
        )
        .unwrap();
    let (a, mut ja) = join_new(&f);
    answered(&mut ja).unwrap().unwrap();
    let _sa = sync(&f, &a, 1, vec![]);
    assert_eq!(
        f.groups.delete("/", "g").err(),
        Some(GroupError::NonEmptyGroup)
    );
    // The member's metadata says it reads "t".
    let subscribed = |_: &[u8]| Some(vec!["t".to_owned()]);
    let (answers, _) = f
        .groups
        .delete_offsets(
            "/",
            "g",
            &[("t".into(), vec![0]), ("u".into(), vec![0])],
            &subscribed,
        )
        .unwrap();
    assert_eq!(answers[0].2, Err(GroupError::GroupSubscribedToTopic));
    assert_eq!(answers[1].2, Ok(()));
    // Metadata that cannot be read counts as a subscription to everything.
    let unreadable = |_: &[u8]| None;
    let (answers, _) = f
        .groups
        .delete_offsets("/", "g", &[("u".into(), vec![0])], &unreadable)
        .unwrap();
    assert_eq!(answers[0].2, Err(GroupError::GroupSubscribedToTopic));
    f.groups.leave("/", "g", &[(a, None)]).unwrap();
    let _ = f.groups.delete("/", "g").unwrap();
    assert_eq!(
        f.groups.delete("/", "g").err(),
        Some(GroupError::GroupIdNotFound("g".into()))
    );
    assert!(f.groups.store.load().unwrap().is_empty());
    assert!(f.groups.list("/").is_empty());
}

#[test]
fn a_deleted_topic_leaves_every_group() {
    let f = fixture(0);
    for g in ["g1", "g2"] {
        let _ = f
            .groups
            .commit(
                "/",
                g,
                &simple(),
                vec![offset("t", 0, 1), offset("u", 0, 2)],
            )
            .unwrap();
    }
    let _ = f.groups.forget_topic("/", "t");
    let left: Vec<String> = f
        .store
        .load()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k.topic)
        .collect();
    assert_eq!(left, vec!["u", "u"]);
}

#[test]
fn empty_groups_offsets_expire_after_retention() {
    let f = fixture(0);
    let _ = f
        .groups
        .commit("/", "old", &simple(), vec![offset("t", 0, 1)])
        .unwrap();
    f.clock.advance(Duration::from_secs(6 * 24 * 3600));
    let _ = f
        .groups
        .commit("/", "new", &simple(), vec![offset("t", 0, 1)])
        .unwrap();
    f.clock.advance(Duration::from_secs(2 * 24 * 3600));
    f.groups.tick();
    let names: Vec<String> = f.groups.list("/").into_iter().map(|s| s.group).collect();
    assert_eq!(names, vec!["new"]);
    assert_eq!(f.store.load().unwrap().len(), 1);

    // After a restart the retention still counts from the commit.
    f.clock.advance(Duration::from_secs(6 * 24 * 3600));
    let reopened = Groups::open(
        Arc::new(f.clock.clone()),
        f.store.clone(),
        GroupConfig::default(),
    )
    .unwrap();
    assert_eq!(reopened.list("/").len(), 1);
    f.clock.advance(Duration::from_secs(61));
    reopened.tick();
    assert!(reopened.list("/").is_empty());
}
