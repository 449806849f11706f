//! The group coordinator's membership APIs, as Kafka's protocol guide
//! groups them: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, and the admin calls DescribeGroups, ListGroups and
//! DeleteGroups. This broker is every group's coordinator.

use std::sync::Arc;

use ferry_core::group::{GroupError, JoinRequest, Phase};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsResponse, DescribeGroupsResponse, FindCoordinatorResponse,
    GroupId, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse,
    SyncGroupResponse,
};

use super::{frame, text};
use crate::Kafka;
use crate::error::{group_code, group_error};
use crate::session::{Answer, Client};
use crate::wire::{self, DecodeError, Header, Reader};

/// FindCoordinator's key types.
const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

/// Kafka's "not told" value for authorized operations.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

pub fn find_coordinator(kafka: &Kafka, h: &Header, r: &mut Reader) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::find_coordinator(r, v)?;
    let (code, message) = match req.key_type {
        GROUP_KEY => (0, None),
        TRANSACTION_KEY => (
            ResponseError::InvalidRequest.code(),
            Some("transactions are not supported by this broker yet"),
        ),
        t => (
            ResponseError::InvalidRequest.code(),
            Some(if t < 0 {
                "negative key type"
            } else {
                "unknown key type"
            }),
        ),
    };
    let c = &kafka.config;
    let (node, host, port) = if code == 0 {
        (
            c.node_id,
            c.advertised_host.as_str(),
            i32::from(c.advertised_port),
        )
    } else {
        (-1, "", -1)
    };
    let mut res = FindCoordinatorResponse::default();
    if v >= 4 {
        res.coordinators = req
            .keys
            .iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(text(k.clone()))
                    .with_node_id(BrokerId(node))
                    .with_host(text(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(message.map(text))
            })
            .collect();
    } else {
        res.error_code = code;
        if v >= 1 {
            res.error_message = message.map(text);
        }
        res.node_id = BrokerId(node);
        res.host = text(host);
        res.port = port;
    }
    Ok(Answer::Now(frame(h, ApiKey::FindCoordinator, v, &res)))
}

pub fn join_group(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::join_group(r, v)?;
    let join = JoinRequest {
        group: req.group_id,
        member_id: req.member_id,
        instance_id: req.group_instance_id,
        client_id: h.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", client.entry.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocol_type: req.protocol_type,
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name, p.metadata))
            .collect(),
        require_known_member: v >= 4,
        can_skip_assignment: v >= 9,
    };
    let rx = kafka.groups.join(&client.namespace, join);
    let h = h.clone();
    Ok(Answer::Later(tokio::spawn(async move {
        // A dropped reply is a join overtaken by a newer one of the same
        // member: that one is answered; this one is told to try again.
        let outcome = rx.await.unwrap_or(Err(GroupError::RebalanceInProgress));
        let mut res = JoinGroupResponse::default();
        match outcome {
            Ok(j) => {
                res.generation_id = j.generation;
                if v >= 7 {
                    res.protocol_type = Some(text(j.protocol_type));
                }
                res.protocol_name = Some(text(j.protocol));
                res.leader = text(j.leader);
                if v >= 9 {
                    res.skip_assignment = j.skip_assignment;
                }
                res.member_id = text(j.member_id);
                res.members = j
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut jm = JoinGroupResponseMember::default()
                            .with_member_id(text(m.member_id))
                            .with_metadata(m.metadata);
                        if v >= 5 {
                            jm.group_instance_id = m.instance_id.map(text);
                        }
                        jm
                    })
                    .collect();
            }
            Err(e) => {
                res.error_code = group_error(&e).code();
                res.generation_id = -1;
                if let GroupError::MemberIdRequired(id) = &e {
                    res.member_id = text(id.clone());
                }
                if v < 7 {
                    res.protocol_name = Some(text(""));
                }
            }
        }
        frame(&h, ApiKey::JoinGroup, v, &res)
    })))
}

pub fn sync_group(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::sync_group(r, v)?;
    let rx = kafka.groups.sync(
        &client.namespace,
        &req.group_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
        req.protocol_type.as_deref(),
        req.protocol_name.as_deref(),
        req.assignments
            .into_iter()
            .map(|a| (a.member_id, a.assignment))
            .collect(),
    );
    let h = h.clone();
    Ok(Answer::Later(tokio::spawn(async move {
        let outcome = rx.await.unwrap_or(Err(GroupError::RebalanceInProgress));
        let mut res = SyncGroupResponse::default();
        match outcome {
            Ok(s) => {
                if v >= 5 {
                    res.protocol_type = Some(text(s.protocol_type));
                    res.protocol_name = Some(text(s.protocol));
                }
                res.assignment = s.assignment;
            }
            Err(e) => res.error_code = group_error(&e).code(),
        }
        frame(&h, ApiKey::SyncGroup, v, &res)
    })))
}

pub fn heartbeat(
    kafka: &Kafka,
    client: &Client,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::heartbeat(r, v)?;
    let outcome = kafka.groups.heartbeat(
        &client.namespace,
        &req.group_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
    );
    let res = HeartbeatResponse::default().with_error_code(group_code(&outcome));
    Ok(Answer::Now(frame(h, ApiKey::Heartbeat, v, &res)))
}

pub fn leave_group(
    kafka: &Kafka,
    client: &Client,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::leave_group(r, v)?;
    let members: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
        .collect();
    let mut res = LeaveGroupResponse::default();
    match kafka
        .groups
        .leave(&client.namespace, &req.group_id, &members)
    {
        Err(e) => res.error_code = group_error(&e).code(),
        Ok(outcomes) if v < 3 => {
            // One member, answered at the top.
            res.error_code = outcomes.first().map_or(0, group_code);
        }
        Ok(outcomes) => {
            res.members = members
                .into_iter()
                .zip(outcomes)
                .map(|((id, inst), o)| {
                    MemberResponse::default()
                        .with_member_id(text(id))
                        .with_group_instance_id(inst.map(text))
                        .with_error_code(group_code(&o))
                })
                .collect();
        }
    }
    Ok(Answer::Now(frame(h, ApiKey::LeaveGroup, v, &res)))
}

pub fn describe_groups(
    kafka: &Kafka,
    client: &Client,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::describe_groups(r, v)?;
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let view = kafka.groups.describe(&client.namespace, &g);
            let mut d = DescribedGroup::default()
                .with_group_id(GroupId(text(g)))
                .with_group_state(text(view.phase.name()))
                .with_protocol_type(text(view.protocol_type))
                .with_protocol_data(text(view.protocol));
            if v >= 3 {
                d.authorized_operations = OPERATIONS_NOT_ASKED;
            }
            if v >= 6 && view.phase == Phase::Dead {
                // Version 6 on says so of a group that does not exist
                // (older versions describe it as Dead).
                d.error_code = ResponseError::GroupIdNotFound.code();
                d.error_message = Some(text("the group does not exist"));
            }
            d.members = view
                .members
                .into_iter()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default()
                        .with_member_id(text(m.member_id))
                        .with_client_id(text(m.client_id))
                        .with_client_host(text(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if v >= 4 {
                        dm.group_instance_id = m.instance_id.map(text);
                    }
                    dm
                })
                .collect();
            d
        })
        .collect();
    let res = DescribeGroupsResponse::default().with_groups(groups);
    Ok(Answer::Now(frame(h, ApiKey::DescribeGroups, v, &res)))
}

pub fn list_groups(
    kafka: &Kafka,
    client: &Client,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::list_groups(r, v)?;
    // Every group here is a classic one; a filter for other types finds
    // none.
    let type_ok = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let groups = kafka
        .groups
        .list(&client.namespace)
        .into_iter()
        .filter(|g| type_ok && state_matches(&req.states_filter, g.phase))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(text(g.group)))
                .with_protocol_type(text(g.protocol_type));
            if v >= 4 {
                l.group_state = text(g.phase.name());
            }
            if v >= 5 {
                l.group_type = text("classic");
            }
            l
        })
        .collect();
    let res = ListGroupsResponse::default().with_groups(groups);
    Ok(Answer::Now(frame(h, ApiKey::ListGroups, v, &res)))
}

fn state_matches(filter: &[String], phase: Phase) -> bool {
    filter.is_empty() || filter.iter().any(|s| s.eq_ignore_ascii_case(phase.name()))
}

pub fn delete_groups(
    kafka: &Arc<Kafka>,
    client: &Arc<Client>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let v = h.version;
    let req = wire::delete_groups(r, v)?;
    let kafka = Arc::clone(kafka);
    let client = Arc::clone(client);
    let h = h.clone();
    Ok(Answer::Later(tokio::spawn(async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for g in req.groups_names {
            let outcome = match kafka.groups.delete(&client.namespace, &g) {
                Ok(commit) => commit.wait().await.map_err(GroupError::Store),
                Err(e) => Err(e),
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(GroupId(text(g)))
                    .with_error_code(group_code(&outcome)),
            );
        }
        let res = DeleteGroupsResponse::default().with_results(results);
        frame(&h, ApiKey::DeleteGroups, v, &res)
    })))
}
