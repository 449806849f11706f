//! One group's membership under Kafka's classic group protocol: members
//! join, the broker picks a leader and a protocol and hands out a
//! generation, the leader's assignment goes to everyone through SyncGroup,
//! and heartbeats keep members alive.
//!
//! Phases, as Kafka names them:
//!
//! ```text
//! Empty --join--> PreparingRebalance --all joined / rebalance timeout-->
//!   CompletingRebalance --leader syncs--> Stable
//! any phase with members --join of a new member / leave / expiry-->
//!   PreparingRebalance; a rebalance that ends with no members --> Empty
//! ```
//!
//! Invariants, kept by the methods here (all called under the group's lock,
//! with the caller's `now`):
//! - the generation only grows; a rebalance that completes makes the next
//!   one, even if it ends with no members;
//! - every join or sync waiting for an answer is answered exactly once
//!   (its sender is taken out when answered, or dropped with its member);
//! - a member waiting in a join or a sync is never expired by its session
//!   timeout: the rebalance timeout governs it instead;
//! - a static member (`group.instance.id`) has exactly one member id; a
//!   newer join with the same instance id fences the older id.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::GroupError;

/// What a join gets back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// The leader is told the group's membership is unchanged and should
    /// not compute an assignment (a static leader rejoining, v9+).
    pub skip_assignment: bool,
    /// For the leader only: every member with its metadata for `protocol`.
    pub members: Vec<JoinedMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

pub type JoinReply = oneshot::Sender<Result<Joined, GroupError>>;
pub type SyncReply = oneshot::Sender<Result<Synced, GroupError>>;

/// What a sync gets back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub protocol_type: String,
    pub protocol: String,
    pub assignment: Bytes,
}

/// A JoinGroup, as the coordinator needs it.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// A new dynamic member must come back with the id it is given
    /// (JoinGroup v4+).
    pub require_known_member: bool,
    /// The client understands `skip_assignment` (JoinGroup v9+).
    pub can_skip_assignment: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Deleted; kept only while a caller still holds it.
    Dead,
}

impl Phase {
    /// The state's name as Kafka's DescribeGroups and ListGroups give it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
            Phase::Dead => "Dead",
        }
    }
}

pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<JoinReply>,
    pub can_skip_assignment: bool,
    pub awaiting_sync: Option<SyncReply>,
    /// When the member expires unless it is heard from.
    pub session_deadline: i64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }

    /// Kept alive by a join or sync in progress, whatever its session says.
    fn waiting(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }
}

/// The timeouts and limits groups run under (Kafka's `group.*` broker
/// settings).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more
    /// members, extended by each joiner, up to the rebalance timeout.
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
    /// How long an empty group's offsets are kept after its last commit.
    pub offsets_retention_ms: i64,
    pub max_metadata_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            max_metadata_bytes: 4096,
        }
    }
}

/// One group's membership.
pub(super) struct Membership {
    pub phase: Phase,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In the order they joined (the first is the leader when one is
    /// needed).
    pub members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending: HashMap<String, i64>,
    /// Static members' ids by instance id.
    statics: HashMap<String, String>,
    /// When a rebalance in progress gives up on members not yet joined
    /// (PreparingRebalance) or not yet synced (CompletingRebalance).
    rebalance_deadline: Option<i64>,
    /// The initial delay of the first rebalance of an empty group.
    initial_delay_until: Option<i64>,
    /// When the phase last changed.
    pub phase_since: i64,
}

/// The most protocols (assignors) one member may offer.
pub const MAX_PROTOCOLS: usize = 64;

impl Membership {
    pub fn new(now: i64) -> Self {
        Membership {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            phase_since: now,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn set_phase(&mut self, phase: Phase, now: i64) {
        if self.phase != phase {
            self.phase = phase;
            self.phase_since = now;
        }
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// The earliest time something here can time out (`i64::MAX`: nothing).
    pub fn next_deadline(&self) -> i64 {
        let members = self
            .members
            .iter()
            .filter(|m| !m.waiting())
            .map(|m| m.session_deadline);
        members
            .chain(self.pending.values().copied())
            .chain(self.rebalance_deadline)
            .chain(self.initial_delay_until)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Checks a static member's instance id against the id it gives.
    fn check_fenced(&self, instance_id: Option<&str>, member_id: &str) -> Result<(), GroupError> {
        if let Some(inst) = instance_id
            && let Some(current) = self.statics.get(inst)
            && current != member_id
        {
            return Err(GroupError::FencedInstanceId(inst.to_owned()));
        }
        Ok(())
    }

    /// The protocols every member (and `joining`, if given) supports, in
    /// the first member's order.
    fn candidates<'a>(&'a self, joining: Option<&'a [(String, Bytes)]>) -> Vec<&'a str> {
        let first: &[(String, Bytes)] = match (self.members.first(), joining) {
            (Some(m), _) => &m.protocols,
            (None, Some(j)) => j,
            (None, None) => return Vec::new(),
        };
        first
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.iter().all(|m| m.supports(n)))
            .filter(|n| joining.is_none_or(|j| j.iter().any(|(jn, _)| jn == n)))
            .collect()
    }

    /// The protocol the most members like best among those all support.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates(None);
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let votes = self
                .members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .find(|n| candidates.contains(n))
                        == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(c, _)| c.to_owned())
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        new_id: impl FnOnce() -> String,
        config: &GroupConfig,
        now: i64,
        reply: JoinReply,
    ) {
        if let Err(e) = self.check_join(&req, config) {
            let _ = reply.send(Err(e));
            return;
        }
        let session = i64::from(req.session_timeout_ms);
        if req.member_id.is_empty() {
            if let Some(inst) = req.instance_id.clone() {
                let id = new_id();
                match self.statics.get(&inst).cloned() {
                    Some(old) => self.replace_static(&old, id, req, now, reply, config),
                    None => {
                        if self.members.len() + self.pending.len() >= config.max_size {
                            let _ =
                                reply.send(Err(GroupError::GroupMaxSizeReached(config.max_size)));
                            return;
                        }
                        self.statics.insert(inst, id.clone());
                        self.add_member(id, req, now, reply, config);
                    }
                }
                return;
            }
            if self.members.len() + self.pending.len() >= config.max_size {
                let _ = reply.send(Err(GroupError::GroupMaxSizeReached(config.max_size)));
                return;
            }
            let id = new_id();
            if req.require_known_member {
                self.pending.insert(id.clone(), now + session);
                let _ = reply.send(Err(GroupError::MemberIdRequired(id)));
            } else {
                self.add_member(id, req, now, reply, config);
            }
            return;
        }
        if let Err(e) = self.check_fenced(req.instance_id.as_deref(), &req.member_id) {
            let _ = reply.send(Err(e));
            return;
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            // check_fenced passed: the instance id, if any, is not taken.
            if let Some(inst) = req.instance_id.clone() {
                self.statics.insert(inst, id.clone());
            }
            self.add_member(id, req, now, reply, config);
            return;
        }
        let Some(i) = self.index_of(&req.member_id) else {
            let _ = reply.send(Err(GroupError::UnknownMemberId));
            return;
        };
        // An instance id the member did not join with is unknown here
        // (Kafka: UNKNOWN_MEMBER_ID; FENCED_INSTANCE_ID is for an instance
        // id now held by another member, which check_fenced refused).
        if req.instance_id.is_some() && self.members[i].instance_id != req.instance_id {
            let _ = reply.send(Err(GroupError::UnknownMemberId));
            return;
        }
        self.rejoin(i, req, now, reply, config);
    }

    fn check_join(&self, req: &JoinRequest, config: &GroupConfig) -> Result<(), GroupError> {
        if req.group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let t = req.session_timeout_ms;
        if t < config.min_session_timeout_ms || t > config.max_session_timeout_ms {
            return Err(GroupError::InvalidSessionTimeout {
                given: t,
                min: config.min_session_timeout_ms,
                max: config.max_session_timeout_ms,
            });
        }
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        // Clients offer a handful of assignors; the cap keeps protocol
        // matching (quadratic in protocols, under the group's lock) cheap
        // whatever a request carries.
        if req.protocol_type.is_empty()
            || req.protocols.is_empty()
            || req.protocols.len() > MAX_PROTOCOLS
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if !self.members.is_empty() {
            let same_type = self.protocol_type.as_deref() == Some(req.protocol_type.as_str())
                || self
                    .members
                    .first()
                    .is_some_and(|m| m.protocol_type == req.protocol_type);
            // A member rejoining is compared with the others only.
            let others_ok = {
                let others: Vec<&Member> = self
                    .members
                    .iter()
                    .filter(|m| m.id != req.member_id)
                    .collect();
                others.is_empty()
                    || req
                        .protocols
                        .iter()
                        .any(|(n, _)| others.iter().all(|m| m.supports(n)))
            };
            if !same_type || !others_ok {
                return Err(GroupError::InconsistentGroupProtocol);
            }
        }
        Ok(())
    }

    fn new_member(id: String, req: JoinRequest, now: i64, reply: Option<JoinReply>) -> Member {
        Member {
            id,
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: i64::from(req.session_timeout_ms),
            rebalance_timeout_ms: i64::from(req.rebalance_timeout_ms.max(0)),
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: reply,
            can_skip_assignment: req.can_skip_assignment,
            awaiting_sync: None,
            session_deadline: now + i64::from(req.session_timeout_ms),
        }
    }

    fn add_member(
        &mut self,
        id: String,
        req: JoinRequest,
        now: i64,
        reply: JoinReply,
        config: &GroupConfig,
    ) {
        let m = Self::new_member(id, req, now, Some(reply));
        self.members.push(m);
        if self.phase == Phase::PreparingRebalance {
            // A new member joining during the initial delay extends it.
            if let (Some(until), Some(deadline)) =
                (self.initial_delay_until, self.rebalance_deadline)
                && until > now
            {
                self.initial_delay_until =
                    Some((now + config.initial_rebalance_delay_ms).min(deadline));
            }
            self.try_complete_join(now);
        } else {
            self.prepare_rebalance(now, config);
        }
    }

    /// A static member came back without its member id: it takes a new id
    /// and fences the old one.
    fn replace_static(
        &mut self,
        old: &str,
        new_id: String,
        req: JoinRequest,
        now: i64,
        reply: JoinReply,
        config: &GroupConfig,
    ) {
        let Some(i) = self.index_of(old) else {
            // The map and the members disagree: treat it as a new member.
            if let Some(inst) = req.instance_id.clone() {
                self.statics.insert(inst, new_id.clone());
            }
            self.add_member(new_id, req, now, reply, config);
            return;
        };
        let m = &mut self.members[i];
        if let Some(r) = m.awaiting_join.take() {
            let _ = r.send(Err(GroupError::FencedInstanceId(
                req.instance_id.clone().unwrap_or_default(),
            )));
        }
        if let Some(r) = m.awaiting_sync.take() {
            let _ = r.send(Err(GroupError::FencedInstanceId(
                req.instance_id.clone().unwrap_or_default(),
            )));
        }
        let assignment = std::mem::take(&mut m.assignment);
        let mut fresh = Self::new_member(new_id.clone(), req, now, None);
        fresh.assignment = assignment;
        if let Some(inst) = fresh.instance_id.clone() {
            self.statics.insert(inst, new_id.clone());
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.clone());
        }
        let is_leader = self.leader.as_deref() == Some(new_id.as_str());
        let skip = fresh.can_skip_assignment;
        self.members[i] = fresh;
        // A restarted member's subscription bytes differ from its last ones
        // (they no longer list owned partitions), so what decides, as in
        // Kafka, is whether the group would pick another protocol.
        if self.phase == Phase::Stable && self.select_protocol() == self.protocol {
            // The member carries on in the current generation with its old
            // assignment. A leader that cannot skip the assignment (JoinGroup
            // below v9) is told the old leader id and no members, so it acts
            // as a follower and just syncs.
            let mut joined = self.joined_for(i, is_leader && skip);
            if is_leader && !skip {
                joined.leader = old.to_owned();
                joined.members.clear();
            }
            let _ = reply.send(Ok(joined));
            return;
        }
        self.members[i].awaiting_join = Some(reply);
        if self.phase == Phase::PreparingRebalance {
            self.try_complete_join(now);
        } else {
            self.rebalance_with(now, config);
        }
    }

    fn rejoin(
        &mut self,
        i: usize,
        req: JoinRequest,
        now: i64,
        reply: JoinReply,
        config: &GroupConfig,
    ) {
        let unchanged = self.members[i].protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        {
            let m = &mut self.members[i];
            m.session_timeout_ms = i64::from(req.session_timeout_ms);
            m.rebalance_timeout_ms = i64::from(req.rebalance_timeout_ms.max(0));
            m.protocols = req.protocols;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.can_skip_assignment = req.can_skip_assignment;
            m.session_deadline = now + m.session_timeout_ms;
        }
        match self.phase {
            Phase::PreparingRebalance => {
                // A second join while the first waits: the newer one is
                // answered (the older connection is likely gone).
                self.members[i].awaiting_join = Some(reply);
                self.try_complete_join(now);
            }
            Phase::CompletingRebalance if unchanged => {
                let joined = self.joined_for(i, false);
                let _ = reply.send(Ok(joined));
            }
            Phase::Stable if unchanged && !is_leader => {
                let joined = self.joined_for(i, false);
                let _ = reply.send(Ok(joined));
            }
            _ => {
                self.members[i].awaiting_join = Some(reply);
                self.prepare_rebalance(now, config);
            }
        }
    }

    /// The current generation's join answer for member `i`.
    fn joined_for(&self, i: usize, with_members: bool) -> Joined {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members || self.leader.as_deref() == Some(self.members[i].id.as_str())
        {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        Joined {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: self.members[i].id.clone(),
            skip_assignment: with_members,
            members,
        }
    }

    /// The group's rebalance timeout: the longest of its members'.
    fn rebalance_timeout(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Starts a rebalance (if one is not already under way).
    fn prepare_rebalance(&mut self, now: i64, config: &GroupConfig) {
        if self.phase == Phase::PreparingRebalance {
            self.try_complete_join(now);
            return;
        }
        self.rebalance_with(now, config);
    }

    fn rebalance_with(&mut self, now: i64, config: &GroupConfig) {
        // Syncs waiting on a generation that will not be completed.
        for m in &mut self.members {
            if let Some(r) = m.awaiting_sync.take() {
                let _ = r.send(Err(GroupError::RebalanceInProgress));
            }
        }
        let timeout = self.rebalance_timeout();
        let deadline = now + timeout;
        self.rebalance_deadline = Some(deadline);
        self.initial_delay_until =
            if self.phase == Phase::Empty && config.initial_rebalance_delay_ms > 0 {
                Some((now + config.initial_rebalance_delay_ms).min(deadline))
            } else {
                None
            };
        self.set_phase(Phase::PreparingRebalance, now);
        self.try_complete_join(now);
    }

    /// Ends the join phase if every member has joined (and any initial
    /// delay is over), or if the rebalance timeout has passed, dropping
    /// the members that did not join.
    fn try_complete_join(&mut self, now: i64) {
        if self.phase != Phase::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        self.initial_delay_until = None;
        let all_joined =
            self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some());
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !all_joined && !timed_out {
            return;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.pending.clear();
        self.generation = self.generation.saturating_add(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            self.rebalance_deadline = None;
            self.set_phase(Phase::Empty, now);
            return;
        }
        self.protocol = self.select_protocol();
        self.protocol_type = self.members.first().map(|m| m.protocol_type.clone());
        if self
            .leader
            .as_deref()
            .is_none_or(|l| self.index_of(l).is_none())
        {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        let timeout = self.rebalance_timeout();
        self.rebalance_deadline = Some(now + timeout);
        self.set_phase(Phase::CompletingRebalance, now);
        for i in 0..self.members.len() {
            let joined = self.joined_for(i, false);
            let m = &mut self.members[i];
            m.assignment = Bytes::new();
            m.session_deadline = now + m.session_timeout_ms;
            if let Some(r) = m.awaiting_join.take() {
                let _ = r.send(Ok(joined));
            }
        }
    }

    /// Takes a member out, answering whatever it waits for, and forgetting
    /// its instance id.
    fn remove(&mut self, id: &str) {
        let Some(i) = self.index_of(id) else {
            return;
        };
        let m = self.members.remove(i);
        if let Some(r) = m.awaiting_join {
            let _ = r.send(Err(GroupError::UnknownMemberId));
        }
        if let Some(r) = m.awaiting_sync {
            let _ = r.send(Err(GroupError::UnknownMemberId));
        }
        if let Some(inst) = &m.instance_id
            && self.statics.get(inst).is_some_and(|cur| cur == id)
        {
            self.statics.remove(inst);
        }
    }

    /// Checks a member and generation; refreshes the member's session.
    fn member_in_generation(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<usize, GroupError> {
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.check_fenced(instance_id, member_id)?;
        let i = self
            .index_of(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration {
                given: generation,
                current: self.generation,
            });
        }
        let m = &mut self.members[i];
        m.session_deadline = now + m.session_timeout_ms;
        Ok(i)
    }

    /// Checks an offset commit's member and generation (refreshing the
    /// member's session, as any call from it does).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        self.member_in_generation(member_id, instance_id, generation, now)
            .map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
        reply: SyncReply,
    ) {
        let i = match self.member_in_generation(member_id, instance_id, generation, now) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mismatched = protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref());
        if mismatched {
            let _ = reply.send(Err(GroupError::InconsistentGroupProtocol));
            return;
        }
        match self.phase {
            Phase::Empty | Phase::Dead => {
                let _ = reply.send(Err(GroupError::UnknownMemberId));
            }
            Phase::PreparingRebalance => {
                let _ = reply.send(Err(GroupError::RebalanceInProgress));
            }
            Phase::Stable => {
                let _ = reply.send(Ok(self.synced(i)));
            }
            Phase::CompletingRebalance => {
                self.members[i].awaiting_sync = Some(reply);
                if self.leader.as_deref() != Some(member_id) {
                    return;
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in &mut self.members {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.rebalance_deadline = None;
                self.set_phase(Phase::Stable, now);
                for i in 0..self.members.len() {
                    let synced = self.synced(i);
                    let m = &mut self.members[i];
                    m.session_deadline = now + m.session_timeout_ms;
                    if let Some(r) = m.awaiting_sync.take() {
                        let _ = r.send(Ok(synced));
                    }
                }
            }
        }
    }

    fn synced(&self, i: usize) -> Synced {
        Synced {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone().unwrap_or_default(),
            assignment: self.members[i].assignment.clone(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        if self.phase == Phase::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        self.member_in_generation(member_id, instance_id, generation, now)?;
        match self.phase {
            Phase::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// One member leaves (by member id, or a static member by instance id
    /// with an empty member id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
        config: &GroupConfig,
    ) -> Result<(), GroupError> {
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let id = match instance_id {
            Some(inst) => {
                let current = self
                    .statics
                    .get(inst)
                    .cloned()
                    .ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && member_id != current {
                    return Err(GroupError::FencedInstanceId(inst.to_owned()));
                }
                current
            }
            None => member_id.to_owned(),
        };
        if self.pending.remove(&id).is_some() {
            self.try_complete_join(now);
            return Ok(());
        }
        if self.index_of(&id).is_none() {
            return Err(GroupError::UnknownMemberId);
        }
        self.remove(&id);
        self.prepare_rebalance(now, config);
        Ok(())
    }

    /// Expires members and rebalances that have run out of time.
    pub fn tick(&mut self, now: i64, config: &GroupConfig) {
        self.pending.retain(|_, lapse| *lapse > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.waiting() && m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        let mut changed = !expired.is_empty();
        for id in &expired {
            self.remove(id);
        }
        if self.phase == Phase::CompletingRebalance
            && self.rebalance_deadline.is_some_and(|d| now >= d)
        {
            // The leader never sent its assignment: members that did not
            // sync are out, and the rest rebalance.
            let unsynced: Vec<String> = self
                .members
                .iter()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in &unsynced {
                self.remove(id);
            }
            changed = true;
        }
        match self.phase {
            Phase::PreparingRebalance => self.try_complete_join(now),
            Phase::Stable | Phase::CompletingRebalance if changed => {
                self.rebalance_with(now, config)
            }
            _ => {}
        }
    }

    /// The topics the members of a "consumer" group subscribe to, read by
    /// `subscriptions` from each member's metadata for the chosen protocol.
    /// `None` (as in Kafka: take it as every topic) while no protocol is
    /// chosen yet or when any member's metadata cannot be read.
    pub fn subscribed(
        &self,
        subscriptions: &dyn Fn(&[u8]) -> Option<Vec<String>>,
    ) -> Option<Vec<String>> {
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in &self.members {
            topics.extend(subscriptions(&m.metadata_for(protocol))?);
        }
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// Leaves for good: every waiting call is answered, and later calls see
    /// a dead group.
    pub fn kill(&mut self, now: i64) {
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            self.remove(&id);
        }
        self.pending.clear();
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.set_phase(Phase::Dead, now);
    }
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

impl Membership {
    pub fn members_view(&self) -> Vec<MemberView> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|m| MemberView {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect()
    }
}
