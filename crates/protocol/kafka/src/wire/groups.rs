//! The group coordinator's requests (classic consumer groups and their
//! committed offsets), with only what the broker reads from them and what
//! a DescribeGroups answer needs, and their decoders (field layouts as
//! Kafka's message specs give them).

use bytes::Bytes;

use super::{DecodeError, Reader};

type R<T> = Result<T, DecodeError>;

/// Bytes that may not be null.
fn bytes(r: &mut Reader) -> R<Bytes> {
    r.nullable_bytes()?
        .ok_or_else(|| DecodeError::Malformed("null where bytes are required".into()))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindCoordinatorRequest {
    /// 0: a group, 1: a transactional id, 2: a share group.
    pub key_type: i8,
    /// What the coordinators are asked for: one key before version 4.
    pub keys: Vec<String>,
}

pub fn find_coordinator(r: &mut Reader, v: i16) -> R<FindCoordinatorRequest> {
    let key = if v <= 3 { Some(r.string()?) } else { None };
    let key_type = if v >= 1 { r.i8()? } else { 0 };
    let keys = match key {
        Some(k) => vec![k],
        None => r.array(|r| r.string())?,
    };
    r.tagged()?;
    Ok(FindCoordinatorRequest { key_type, keys })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroupProtocol {
    pub name: String,
    /// The member's subscription, opaque to the broker.
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroupRequest {
    pub group_id: String,
    pub session_timeout_ms: i32,
    /// Version 0 has none: the session timeout stands in for it.
    pub rebalance_timeout_ms: i32,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<JoinGroupProtocol>,
    pub reason: Option<String>,
}

pub fn join_group(r: &mut Reader, v: i16) -> R<JoinGroupRequest> {
    let group_id = r.string()?;
    let session_timeout_ms = r.i32()?;
    let rebalance_timeout_ms = if v >= 1 { r.i32()? } else { session_timeout_ms };
    let member_id = r.string()?;
    let group_instance_id = if v >= 5 { r.nullable_string()? } else { None };
    let protocol_type = r.string()?;
    let protocols = r.array(|r| {
        let name = r.string()?;
        let metadata = bytes(r)?;
        r.tagged()?;
        Ok(JoinGroupProtocol { name, metadata })
    })?;
    let reason = if v >= 8 { r.nullable_string()? } else { None };
    r.tagged()?;
    Ok(JoinGroupRequest {
        group_id,
        session_timeout_ms,
        rebalance_timeout_ms,
        member_id,
        group_instance_id,
        protocol_type,
        protocols,
        reason,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroupAssignment {
    pub member_id: String,
    /// The member's assignment, opaque to the broker.
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Sent by the leader only.
    pub assignments: Vec<SyncGroupAssignment>,
}

pub fn sync_group(r: &mut Reader, v: i16) -> R<SyncGroupRequest> {
    let group_id = r.string()?;
    let generation_id = r.i32()?;
    let member_id = r.string()?;
    let group_instance_id = if v >= 3 { r.nullable_string()? } else { None };
    let (protocol_type, protocol_name) = if v >= 5 {
        (r.nullable_string()?, r.nullable_string()?)
    } else {
        (None, None)
    };
    let assignments = r.array(|r| {
        let member_id = r.string()?;
        let assignment = bytes(r)?;
        r.tagged()?;
        Ok(SyncGroupAssignment {
            member_id,
            assignment,
        })
    })?;
    r.tagged()?;
    Ok(SyncGroupRequest {
        group_id,
        generation_id,
        member_id,
        group_instance_id,
        protocol_type,
        protocol_name,
        assignments,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

pub fn heartbeat(r: &mut Reader, v: i16) -> R<HeartbeatRequest> {
    let group_id = r.string()?;
    let generation_id = r.i32()?;
    let member_id = r.string()?;
    let group_instance_id = if v >= 3 { r.nullable_string()? } else { None };
    r.tagged()?;
    Ok(HeartbeatRequest {
        group_id,
        generation_id,
        member_id,
        group_instance_id,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveGroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    /// Exactly one before version 3.
    pub members: Vec<LeaveGroupMember>,
}

pub fn leave_group(r: &mut Reader, v: i16) -> R<LeaveGroupRequest> {
    let group_id = r.string()?;
    let members = if v >= 3 {
        r.array(|r| {
            let member_id = r.string()?;
            let group_instance_id = r.nullable_string()?;
            let reason = if v >= 5 { r.nullable_string()? } else { None };
            r.tagged()?;
            Ok(LeaveGroupMember {
                member_id,
                group_instance_id,
                reason,
            })
        })?
    } else {
        vec![LeaveGroupMember {
            member_id: r.string()?,
            group_instance_id: None,
            reason: None,
        }]
    };
    r.tagged()?;
    Ok(LeaveGroupRequest { group_id, members })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition_index: i32,
    pub committed_offset: i64,
    /// -1 before version 6.
    pub committed_leader_epoch: i32,
    pub committed_metadata: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 (with an empty member id) for a commit from outside the group's
    /// membership.
    pub generation_id_or_member_epoch: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<OffsetCommitTopic>,
}

pub fn offset_commit(r: &mut Reader, v: i16) -> R<OffsetCommitRequest> {
    let group_id = r.string()?;
    let generation_id_or_member_epoch = r.i32()?;
    let member_id = r.string()?;
    let group_instance_id = if v >= 7 { r.nullable_string()? } else { None };
    if v <= 4 {
        r.i64()?; // retention time: the broker's own setting decides
    }
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let partition_index = r.i32()?;
            let committed_offset = r.i64()?;
            let committed_leader_epoch = if v >= 6 { r.i32()? } else { -1 };
            let committed_metadata = r.nullable_string()?;
            r.tagged()?;
            Ok(OffsetCommitPartition {
                partition_index,
                committed_offset,
                committed_leader_epoch,
                committed_metadata,
            })
        })?;
        r.tagged()?;
        Ok(OffsetCommitTopic { name, partitions })
    })?;
    r.tagged()?;
    Ok(OffsetCommitRequest {
        group_id,
        generation_id_or_member_epoch,
        member_id,
        group_instance_id,
        topics,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetFetchGroup {
    pub group_id: String,
    /// Version 9 on (None, -1 before).
    pub member_id: Option<String>,
    pub member_epoch: i32,
    /// (topic, partitions); `None`: every partition with a committed
    /// offset.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    /// Exactly one before version 8.
    pub groups: Vec<OffsetFetchGroup>,
    pub require_stable: bool,
}

fn offset_fetch_topic(r: &mut Reader) -> R<(String, Vec<i32>)> {
    let name = r.string()?;
    let partitions = r.array(|r| r.i32())?;
    r.tagged()?;
    Ok((name, partitions))
}

pub fn offset_fetch(r: &mut Reader, v: i16) -> R<OffsetFetchRequest> {
    let groups = if v >= 8 {
        r.array(|r| {
            let group_id = r.string()?;
            let (member_id, member_epoch) = if v >= 9 {
                (r.nullable_string()?, r.i32()?)
            } else {
                (None, -1)
            };
            let topics = r.nullable_array(offset_fetch_topic)?;
            r.tagged()?;
            Ok(OffsetFetchGroup {
                group_id,
                member_id,
                member_epoch,
                topics,
            })
        })?
    } else {
        let group_id = r.string()?;
        let topics = if v >= 2 {
            r.nullable_array(offset_fetch_topic)?
        } else {
            Some(r.array(offset_fetch_topic)?)
        };
        vec![OffsetFetchGroup {
            group_id,
            member_id: None,
            member_epoch: -1,
            topics,
        }]
    };
    let require_stable = if v >= 7 { r.bool()? } else { false };
    r.tagged()?;
    Ok(OffsetFetchRequest {
        groups,
        require_stable,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeGroupsRequest {
    pub groups: Vec<String>,
    pub include_authorized_operations: bool,
}

pub fn describe_groups(r: &mut Reader, v: i16) -> R<DescribeGroupsRequest> {
    let groups = r.array(|r| r.string())?;
    let include_authorized_operations = if v >= 3 { r.bool()? } else { false };
    r.tagged()?;
    Ok(DescribeGroupsRequest {
        groups,
        include_authorized_operations,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListGroupsRequest {
    /// Empty: every state (and before version 4).
    pub states_filter: Vec<String>,
    /// Empty: every type (and before version 5).
    pub types_filter: Vec<String>,
}

pub fn list_groups(r: &mut Reader, v: i16) -> R<ListGroupsRequest> {
    let states_filter = if v >= 4 {
        r.array(|r| r.string())?
    } else {
        Vec::new()
    };
    let types_filter = if v >= 5 {
        r.array(|r| r.string())?
    } else {
        Vec::new()
    };
    r.tagged()?;
    Ok(ListGroupsRequest {
        states_filter,
        types_filter,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteGroupsRequest {
    pub groups_names: Vec<String>,
}

pub fn delete_groups(r: &mut Reader, _v: i16) -> R<DeleteGroupsRequest> {
    let groups_names = r.array(|r| r.string())?;
    r.tagged()?;
    Ok(DeleteGroupsRequest { groups_names })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    /// (topic, partitions).
    pub topics: Vec<(String, Vec<i32>)>,
}

/// OffsetDelete has no flexible version: no tagged fields.
pub fn offset_delete(r: &mut Reader, _v: i16) -> R<OffsetDeleteRequest> {
    let group_id = r.string()?;
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| r.i32())?;
        Ok((name, partitions))
    })?;
    Ok(OffsetDeleteRequest { group_id, topics })
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::messages::{self as km, ApiKey};

    use crate::wire::flexible;
    use crate::wire::testing::{Decoder, TAG, check, g, s, strings, t};

    #[test]
    fn find_coordinator_every_version() {
        for v in 0..=6 {
            let mut m = km::FindCoordinatorRequest::default();
            if v <= 3 {
                m = m.with_key(s("g1"));
            }
            if v >= 1 {
                m = m.with_key_type(1);
            }
            if v >= 4 {
                m = m.with_coordinator_keys(vec![s("a"), s("b")]);
            }
            if flexible(ApiKey::FindCoordinator, v) {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::FindCoordinator, v, &m, find_coordinator);
            let keys = if v <= 3 { vec!["g1"] } else { vec!["a", "b"] };
            assert_eq!(
                d,
                FindCoordinatorRequest {
                    key_type: if v >= 1 { 1 } else { 0 },
                    keys: strings(&keys),
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn join_group_every_version() {
        for v in 0..=9 {
            let flex = flexible(ApiKey::JoinGroup, v);
            let protocol = |name, meta: &'static [u8]| {
                let p = km::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s(name))
                    .with_metadata(Bytes::from_static(meta));
                if flex {
                    p.with_unknown_tagged_field(TAG.0, TAG.1)
                } else {
                    p
                }
            };
            let mut m = km::JoinGroupRequest::default()
                .with_group_id(g("grp"))
                .with_session_timeout_ms(10_000)
                .with_member_id(s("m-1"))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![protocol("range", b"\x00\x01"), protocol("rr", b"")]);
            if v >= 1 {
                m = m.with_rebalance_timeout_ms(30_000);
            }
            if v >= 5 {
                m = m.with_group_instance_id(Some(s("inst")));
            }
            if v >= 8 {
                m = m.with_reason(Some(s("why")));
            }
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::JoinGroup, v, &m, join_group);
            assert_eq!(
                d,
                JoinGroupRequest {
                    group_id: "grp".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: if v >= 1 { 30_000 } else { 10_000 },
                    member_id: "m-1".into(),
                    group_instance_id: (v >= 5).then(|| "inst".into()),
                    protocol_type: "consumer".into(),
                    protocols: vec![
                        JoinGroupProtocol {
                            name: "range".into(),
                            metadata: Bytes::from_static(b"\x00\x01"),
                        },
                        JoinGroupProtocol {
                            name: "rr".into(),
                            metadata: Bytes::new(),
                        },
                    ],
                    reason: (v >= 8).then(|| "why".into()),
                },
                "v{v}"
            );
            // A null instance id and reason where they exist.
            if v >= 5 {
                let m = m.with_group_instance_id(None).with_reason(None);
                let d = check(ApiKey::JoinGroup, v, &m, join_group);
                assert_eq!((d.group_instance_id, d.reason), (None, None), "v{v}");
            }
        }
    }

    #[test]
    fn sync_group_every_version() {
        for v in 0..=5 {
            let flex = flexible(ApiKey::SyncGroup, v);
            let assignment = |member, a: &'static [u8]| {
                let x = km::sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s(member))
                    .with_assignment(Bytes::from_static(a));
                if flex {
                    x.with_unknown_tagged_field(TAG.0, TAG.1)
                } else {
                    x
                }
            };
            let mut m = km::SyncGroupRequest::default()
                .with_group_id(g("grp"))
                .with_generation_id(7)
                .with_member_id(s("m-1"))
                .with_assignments(vec![assignment("m-1", b"\x01\x02"), assignment("m-2", b"")]);
            if v >= 3 {
                m = m.with_group_instance_id(Some(s("inst")));
            }
            if v >= 5 {
                m = m
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::SyncGroup, v, &m, sync_group);
            assert_eq!(
                d,
                SyncGroupRequest {
                    group_id: "grp".into(),
                    generation_id: 7,
                    member_id: "m-1".into(),
                    group_instance_id: (v >= 3).then(|| "inst".into()),
                    protocol_type: (v >= 5).then(|| "consumer".into()),
                    protocol_name: (v >= 5).then(|| "range".into()),
                    assignments: vec![
                        SyncGroupAssignment {
                            member_id: "m-1".into(),
                            assignment: Bytes::from_static(b"\x01\x02"),
                        },
                        SyncGroupAssignment {
                            member_id: "m-2".into(),
                            assignment: Bytes::new(),
                        },
                    ],
                },
                "v{v}"
            );
            // A follower: no assignments, nulls where they may be.
            let m = m
                .with_assignments(Vec::new())
                .with_group_instance_id(None)
                .with_protocol_type(None)
                .with_protocol_name(None);
            let d = check(ApiKey::SyncGroup, v, &m, sync_group);
            assert!(d.assignments.is_empty(), "v{v}");
            assert_eq!(
                (d.group_instance_id, d.protocol_type, d.protocol_name),
                (None, None, None),
                "v{v}"
            );
        }
    }

    #[test]
    fn heartbeat_every_version() {
        for v in 0..=4 {
            let mut m = km::HeartbeatRequest::default()
                .with_group_id(g("grp"))
                .with_generation_id(3)
                .with_member_id(s("m-1"));
            if v >= 3 {
                m = m.with_group_instance_id(Some(s("inst")));
            }
            if flexible(ApiKey::Heartbeat, v) {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::Heartbeat, v, &m, heartbeat);
            assert_eq!(
                d,
                HeartbeatRequest {
                    group_id: "grp".into(),
                    generation_id: 3,
                    member_id: "m-1".into(),
                    group_instance_id: (v >= 3).then(|| "inst".into()),
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn leave_group_every_version() {
        for v in 0..=5 {
            let flex = flexible(ApiKey::LeaveGroup, v);
            let mut m = km::LeaveGroupRequest::default().with_group_id(g("grp"));
            let members = if v <= 2 {
                m = m.with_member_id(s("m-1"));
                vec![LeaveGroupMember {
                    member_id: "m-1".into(),
                    group_instance_id: None,
                    reason: None,
                }]
            } else {
                let member = |id, inst: Option<&'static str>, reason: Option<&'static str>| {
                    let mut x = km::leave_group_request::MemberIdentity::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(inst.map(s));
                    if v >= 5 {
                        x = x.with_reason(reason.map(s));
                    }
                    if flex {
                        x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                    }
                    x
                };
                m = m.with_members(vec![
                    member("m-1", Some("inst"), Some("bye")),
                    member("m-2", None, None),
                ]);
                vec![
                    LeaveGroupMember {
                        member_id: "m-1".into(),
                        group_instance_id: Some("inst".into()),
                        reason: (v >= 5).then(|| "bye".into()),
                    },
                    LeaveGroupMember {
                        member_id: "m-2".into(),
                        group_instance_id: None,
                        reason: None,
                    },
                ]
            };
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::LeaveGroup, v, &m, leave_group);
            assert_eq!(
                d,
                LeaveGroupRequest {
                    group_id: "grp".into(),
                    members,
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn offset_commit_every_version() {
        use km::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        for v in 2..=9 {
            let flex = flexible(ApiKey::OffsetCommit, v);
            let partition = |index, offset, epoch, meta: Option<&'static str>| {
                let mut p = OffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(offset)
                    .with_committed_metadata(meta.map(s));
                if v >= 6 {
                    p = p.with_committed_leader_epoch(epoch);
                }
                if flex {
                    p = p.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                p
            };
            let topic = |name, partitions| {
                let x = OffsetCommitRequestTopic::default()
                    .with_name(t(name))
                    .with_partitions(partitions);
                if flex {
                    x.with_unknown_tagged_field(TAG.0, TAG.1)
                } else {
                    x
                }
            };
            let mut m = km::OffsetCommitRequest::default()
                .with_group_id(g("grp"))
                .with_generation_id_or_member_epoch(4)
                .with_member_id(s("m-1"))
                .with_topics(vec![
                    topic(
                        "t1",
                        vec![partition(0, 100, 2, Some("meta")), partition(3, 0, 5, None)],
                    ),
                    topic("t2", Vec::new()),
                ]);
            if v >= 7 {
                m = m.with_group_instance_id(Some(s("inst")));
            }
            if v <= 4 {
                m = m.with_retention_time_ms(86_400_000);
            }
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::OffsetCommit, v, &m, offset_commit);
            let epoch = |e| if v >= 6 { e } else { -1 };
            assert_eq!(
                d,
                OffsetCommitRequest {
                    group_id: "grp".into(),
                    generation_id_or_member_epoch: 4,
                    member_id: "m-1".into(),
                    group_instance_id: (v >= 7).then(|| "inst".into()),
                    topics: vec![
                        OffsetCommitTopic {
                            name: "t1".into(),
                            partitions: vec![
                                OffsetCommitPartition {
                                    partition_index: 0,
                                    committed_offset: 100,
                                    committed_leader_epoch: epoch(2),
                                    committed_metadata: Some("meta".into()),
                                },
                                OffsetCommitPartition {
                                    partition_index: 3,
                                    committed_offset: 0,
                                    committed_leader_epoch: epoch(5),
                                    committed_metadata: None,
                                },
                            ],
                        },
                        OffsetCommitTopic {
                            name: "t2".into(),
                            partitions: Vec::new(),
                        },
                    ],
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn offset_fetch_every_version() {
        use km::offset_fetch_request::{
            OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
        };
        const TOPICS: [(&str, &[i32]); 2] = [("t1", &[0, 2]), ("t2", &[])];
        // `None`: every partition with a committed offset.
        let want_topics = |all: bool| {
            (!all).then(|| {
                TOPICS
                    .iter()
                    .map(|(n, p)| (n.to_string(), p.to_vec()))
                    .collect::<Vec<_>>()
            })
        };
        for v in 1..=9 {
            let flex = flexible(ApiKey::OffsetFetch, v);
            // Version 1 cannot ask for every partition.
            for all in [false, true].into_iter().filter(|all| !all || v >= 2) {
                let (m, want) = if v >= 8 {
                    let topics = |all: bool| {
                        (!all).then(|| {
                            TOPICS
                                .iter()
                                .map(|(n, p)| {
                                    OffsetFetchRequestTopics::default()
                                        .with_name(t(n))
                                        .with_partition_indexes(p.to_vec())
                                        .with_unknown_tagged_field(TAG.0, TAG.1)
                                })
                                .collect()
                        })
                    };
                    let mut g1 = OffsetFetchRequestGroup::default()
                        .with_group_id(g("g1"))
                        .with_topics(topics(all))
                        .with_unknown_tagged_field(TAG.0, TAG.1);
                    if v >= 9 {
                        g1 = g1.with_member_id(Some(s("m-1"))).with_member_epoch(6);
                    }
                    let g2 = OffsetFetchRequestGroup::default()
                        .with_group_id(g("g2"))
                        .with_topics(topics(!all))
                        .with_unknown_tagged_field(TAG.0, TAG.1);
                    let m = km::OffsetFetchRequest::default()
                        .with_groups(vec![g1, g2])
                        .with_require_stable(true)
                        .with_unknown_tagged_field(TAG.0, TAG.1);
                    let want = OffsetFetchRequest {
                        groups: vec![
                            OffsetFetchGroup {
                                group_id: "g1".into(),
                                member_id: (v >= 9).then(|| "m-1".into()),
                                member_epoch: if v >= 9 { 6 } else { -1 },
                                topics: want_topics(all),
                            },
                            OffsetFetchGroup {
                                group_id: "g2".into(),
                                member_id: None,
                                member_epoch: -1,
                                topics: want_topics(!all),
                            },
                        ],
                        require_stable: true,
                    };
                    (m, want)
                } else {
                    let topics = (!all).then(|| {
                        TOPICS
                            .iter()
                            .map(|(n, p)| {
                                let x = OffsetFetchRequestTopic::default()
                                    .with_name(t(n))
                                    .with_partition_indexes(p.to_vec());
                                if flex {
                                    x.with_unknown_tagged_field(TAG.0, TAG.1)
                                } else {
                                    x
                                }
                            })
                            .collect()
                    });
                    let mut m = km::OffsetFetchRequest::default()
                        .with_group_id(g("g1"))
                        .with_topics(topics);
                    if v >= 7 {
                        m = m.with_require_stable(true);
                    }
                    if flex {
                        m = m.with_unknown_tagged_field(TAG.0, TAG.1);
                    }
                    let want = OffsetFetchRequest {
                        groups: vec![OffsetFetchGroup {
                            group_id: "g1".into(),
                            member_id: None,
                            member_epoch: -1,
                            topics: want_topics(all),
                        }],
                        require_stable: v >= 7,
                    };
                    (m, want)
                };
                let d = check(ApiKey::OffsetFetch, v, &m, offset_fetch);
                assert_eq!(d, want, "v{v} all={all}");
            }
        }
    }

    #[test]
    fn describe_groups_every_version() {
        for v in 0..=6 {
            let mut m = km::DescribeGroupsRequest::default().with_groups(vec![g("a"), g("bb")]);
            if v >= 3 {
                m = m.with_include_authorized_operations(true);
            }
            if flexible(ApiKey::DescribeGroups, v) {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::DescribeGroups, v, &m, describe_groups);
            assert_eq!(
                d,
                DescribeGroupsRequest {
                    groups: strings(&["a", "bb"]),
                    include_authorized_operations: v >= 3,
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn list_groups_every_version() {
        for v in 0..=5 {
            let mut m = km::ListGroupsRequest::default();
            if v >= 4 {
                m = m.with_states_filter(vec![s("Stable"), s("Empty")]);
            }
            if v >= 5 {
                m = m.with_types_filter(vec![s("classic")]);
            }
            if flexible(ApiKey::ListGroups, v) {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::ListGroups, v, &m, list_groups);
            assert_eq!(
                d,
                ListGroupsRequest {
                    states_filter: if v >= 4 {
                        strings(&["Stable", "Empty"])
                    } else {
                        Vec::new()
                    },
                    types_filter: if v >= 5 {
                        strings(&["classic"])
                    } else {
                        Vec::new()
                    },
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn delete_groups_every_version() {
        for v in 0..=2 {
            let mut m = km::DeleteGroupsRequest::default().with_groups_names(vec![g("a"), g("b")]);
            if flexible(ApiKey::DeleteGroups, v) {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::DeleteGroups, v, &m, delete_groups);
            assert_eq!(
                d,
                DeleteGroupsRequest {
                    groups_names: strings(&["a", "b"]),
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn offset_delete_version_0() {
        use km::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
        assert!(!flexible(ApiKey::OffsetDelete, 0));
        let partition = |i| OffsetDeleteRequestPartition::default().with_partition_index(i);
        let m = km::OffsetDeleteRequest::default()
            .with_group_id(g("grp"))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(t("t1"))
                    .with_partitions(vec![partition(0), partition(4)]),
                OffsetDeleteRequestTopic::default().with_name(t("t2")),
            ]);
        let d = check(ApiKey::OffsetDelete, 0, &m, offset_delete);
        assert_eq!(
            d,
            OffsetDeleteRequest {
                group_id: "grp".into(),
                topics: vec![("t1".into(), vec![0, 4]), ("t2".into(), vec![])],
            }
        );
    }

    /// Hand-written bodies, for what the crate's encoders will not write.
    struct W {
        flex: bool,
        b: Vec<u8>,
    }

    impl W {
        fn new(key: ApiKey, v: i16) -> W {
            W {
                flex: flexible(key, v),
                b: Vec::new(),
            }
        }

        fn uvarint(mut self, mut n: u32) -> W {
            while n >= 0x80 {
                self.b.push((n as u8) | 0x80);
                n >>= 7;
            }
            self.b.push(n as u8);
            self
        }

        fn str(mut self, x: &str) -> W {
            if self.flex {
                self = self.uvarint(x.len() as u32 + 1);
            } else {
                self.b.extend_from_slice(&(x.len() as i16).to_be_bytes());
            }
            self.b.extend_from_slice(x.as_bytes());
            self
        }

        fn null(mut self) -> W {
            if self.flex {
                self.uvarint(0)
            } else {
                self.b.extend_from_slice(&(-1i16).to_be_bytes());
                self
            }
        }

        fn byte(mut self, x: i8) -> W {
            self.b.extend_from_slice(&x.to_be_bytes());
            self
        }

        fn int(mut self, x: i32) -> W {
            self.b.extend_from_slice(&x.to_be_bytes());
            self
        }

        fn long(mut self, x: i64) -> W {
            self.b.extend_from_slice(&x.to_be_bytes());
            self
        }

        fn count(mut self, n: u32) -> W {
            if self.flex {
                self.uvarint(n + 1)
            } else {
                self.b.extend_from_slice(&n.to_be_bytes());
                self
            }
        }

        /// An array count far larger than the body.
        fn huge(mut self) -> W {
            if self.flex {
                self.uvarint(u32::MAX)
            } else {
                self.b.extend_from_slice(&i32::MAX.to_be_bytes());
                self
            }
        }

        /// Decodes the body, with some bytes after it (so a huge count is
        /// not caught by an empty tail alone), and checks it is refused
        /// with an error saying `why`.
        fn refused_for<T: std::fmt::Debug>(self, why: &str, key: ApiKey, v: i16, f: Decoder<T>) {
            let mut b = self.b;
            b.extend_from_slice(&[0; 16]);
            let mut r = Reader::new(Bytes::from(b), 0, self.flex);
            let out = f(&mut r, v);
            assert!(
                matches!(&out, Err(DecodeError::Malformed(m)) if m.contains(why)),
                "{key:?} v{v}: {out:?}"
            );
        }

        /// Refused for a length or count past the end of the body.
        fn refused<T: std::fmt::Debug>(self, key: ApiKey, v: i16, f: Decoder<T>) {
            self.refused_for("bytes left", key, v, f);
        }
    }

    #[test]
    fn huge_counts_are_refused() {
        use ApiKey::*;
        for v in [4, 6] {
            W::new(FindCoordinator, v)
                .byte(0)
                .huge()
                .refused(FindCoordinator, v, find_coordinator);
        }
        for v in [0, 5, 9] {
            let mut w = W::new(JoinGroup, v).str("g").int(1000);
            if v >= 1 {
                w = w.int(1000);
            }
            w = w.str("");
            if v >= 5 {
                w = w.null();
            }
            w.str("consumer").huge().refused(JoinGroup, v, join_group);
            // A protocol whose metadata claims more bytes than there are.
            let mut w = W::new(JoinGroup, v).str("g").int(1000);
            if v >= 1 {
                w = w.int(1000);
            }
            w = w.str("");
            if v >= 5 {
                w = w.null();
            }
            w = w.str("consumer").count(1).str("range");
            w = if w.flex {
                w.uvarint(u32::MAX)
            } else {
                w.int(i32::MAX)
            };
            w.refused(JoinGroup, v, join_group);
        }
        for v in [0, 5] {
            let mut w = W::new(SyncGroup, v).str("g").int(1).str("m");
            if v >= 3 {
                w = w.null();
            }
            if v >= 5 {
                w = w.null().null();
            }
            w.huge().refused(SyncGroup, v, sync_group);
        }
        // A group id longer than the body.
        for v in [0, 4] {
            let w = W::new(Heartbeat, v);
            let w = if w.flex {
                w.uvarint(u32::MAX)
            } else {
                w.int(0x7fff_0000)
            };
            w.refused(Heartbeat, v, heartbeat);
        }
        for v in [3, 5] {
            W::new(LeaveGroup, v)
                .str("g")
                .huge()
                .refused(LeaveGroup, v, leave_group);
        }
        for v in [2, 7, 9] {
            let mut w = W::new(OffsetCommit, v).str("g").int(-1).str("");
            if v >= 7 {
                w = w.null();
            }
            if v <= 4 {
                w = w.long(-1);
            }
            w.huge().refused(OffsetCommit, v, offset_commit);
            // One topic, whose partition count is huge.
            let mut w = W::new(OffsetCommit, v).str("g").int(-1).str("");
            if v >= 7 {
                w = w.null();
            }
            if v <= 4 {
                w = w.long(-1);
            }
            w.count(1)
                .str("t")
                .huge()
                .refused(OffsetCommit, v, offset_commit);
        }
        for v in [1, 2, 6, 7] {
            W::new(OffsetFetch, v)
                .str("g")
                .huge()
                .refused(OffsetFetch, v, offset_fetch);
        }
        for v in [8, 9] {
            W::new(OffsetFetch, v)
                .huge()
                .refused(OffsetFetch, v, offset_fetch);
            let mut w = W::new(OffsetFetch, v).count(1).str("g");
            if v >= 9 {
                w = w.null().int(-1);
            }
            w.count(1)
                .str("t")
                .huge()
                .refused(OffsetFetch, v, offset_fetch);
        }
        for v in [0, 5] {
            W::new(DescribeGroups, v)
                .huge()
                .refused(DescribeGroups, v, describe_groups);
        }
        W::new(ListGroups, 4)
            .huge()
            .refused(ListGroups, 4, list_groups);
        W::new(ListGroups, 5)
            .count(0)
            .huge()
            .refused(ListGroups, 5, list_groups);
        for v in [0, 2] {
            W::new(DeleteGroups, v)
                .huge()
                .refused(DeleteGroups, v, delete_groups);
        }
        W::new(OffsetDelete, 0)
            .str("g")
            .huge()
            .refused(OffsetDelete, 0, offset_delete);
        W::new(OffsetDelete, 0)
            .str("g")
            .count(1)
            .str("t")
            .huge()
            .refused(OffsetDelete, 0, offset_delete);
    }

    #[test]
    fn nulls_where_values_are_required_are_refused() {
        // A null group id.
        let w = W::new(ApiKey::Heartbeat, 0).null().int(1).str("m");
        w.refused_for("null", ApiKey::Heartbeat, 0, heartbeat);
        // Null protocol metadata.
        let w = W::new(ApiKey::JoinGroup, 6)
            .str("g")
            .int(1)
            .int(1)
            .str("")
            .null()
            .str("consumer")
            .count(1)
            .str("range")
            .uvarint(0);
        w.refused_for("null", ApiKey::JoinGroup, 6, join_group);
    }

    #[test]
    fn empty_bodies_decode_where_every_field_is_optional() {
        for v in 0..=2 {
            let mut r = Reader::new(Bytes::new(), 0, flexible(ApiKey::ListGroups, v));
            assert_eq!(
                list_groups(&mut r, v).unwrap(),
                ListGroupsRequest {
                    states_filter: Vec::new(),
                    types_filter: Vec::new(),
                }
            );
        }
        // Flexible from 3: the tagged fields' count is required.
        let mut r = Reader::new(Bytes::new(), 0, flexible(ApiKey::ListGroups, 3));
        assert!(list_groups(&mut r, 3).is_err());
    }
}
