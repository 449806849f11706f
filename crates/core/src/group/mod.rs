//! Consumer groups: where each group is in each partition (committed
//! offsets, durable through an [`OffsetStore`]), and for Kafka's classic
//! group protocol, membership with generations and rebalances
//! ([`membership`]).
//!
//! - [`Groups`]: every group of every namespace; the calls the Kafka face
//!   makes (join, sync, heartbeat, leave, commit, fetch, describe, list,
//!   delete) and [`Groups::tick`], which a timer calls to expire members,
//!   rebalances and old offsets.
//! - [`OffsetStore`]: the storage boundary.
//!
//! Invariants: each group has its own lock, and every change to a group's
//! offsets is handed to the store under that lock, so the store sees one
//! group's changes in the order they were made. A group leaves the
//! registry only under its own lock and once marked dead; a caller that
//! finds a dead group looks it up again (so no change lands in a group no
//! one can find).

mod error;
mod membership;
mod offsets;
#[cfg(test)]
mod tests;

pub use error::GroupError;
pub use membership::{
    GroupConfig, JoinRequest, Joined, JoinedMember, MAX_PROTOCOLS, MemberView, Phase, Synced,
};
pub use offsets::{Committed, MemoryOffsets, OffsetChange, OffsetKey, OffsetStore};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};
use crate::ids::{IdGenerator, RandomIds};
use crate::store::{Commit, StoreError};
use membership::Membership;

/// How often [`Groups::tick`] looks for offsets past retention.
const EXPIRY_EVERY_MS: i64 = 60_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One group: membership and committed offsets under one lock.
struct Group {
    state: Mutex<GroupState>,
    /// The earliest time its membership can time out; read by the timer
    /// without the lock.
    next_deadline: AtomicI64,
}

struct GroupState {
    membership: Membership,
    offsets: HashMap<(String, u32), Committed>,
}

impl GroupState {
    /// Nothing worth keeping: no members, no offsets.
    fn forgettable(&self) -> bool {
        self.membership.phase == Phase::Empty
            && self.membership.is_empty()
            && self.offsets.is_empty()
    }
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub phase: Phase,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: Vec<MemberView>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    pub protocol_type: String,
    pub phase: Phase,
}

/// One partition's commit, as a client asks for it.
#[derive(Clone, Debug)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Who commits: a member of a generation, or (generation -1, no member) a
/// client that only stores offsets here.
#[derive(Clone, Debug)]
pub struct Committer {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// One partition's answer: topic, partition, outcome.
pub type PartitionAnswer = (String, u32, Result<(), GroupError>);

/// Every consumer group.
pub struct Groups {
    clock: Arc<dyn Clock>,
    config: GroupConfig,
    store: Arc<dyn OffsetStore>,
    ids: RandomIds,
    by_namespace: RwLock<HashMap<String, HashMap<String, Arc<Group>>>>,
    last_expiry: AtomicI64,
}

impl Groups {
    /// Opens the groups with the offsets `store` holds (groups come back
    /// empty: their members rejoin).
    pub fn open(
        clock: Arc<dyn Clock>,
        store: Arc<dyn OffsetStore>,
        config: GroupConfig,
    ) -> Result<Arc<Groups>, StoreError> {
        let now = clock.now().as_millis() as i64;
        let mut by_namespace: HashMap<String, HashMap<String, Arc<Group>>> = HashMap::new();
        for (k, c) in store.load()? {
            let g = by_namespace
                .entry(k.namespace)
                .or_default()
                .entry(k.group)
                .or_insert_with(|| Arc::new(Group::new(0)));
            // A reloaded group has been empty since its newest commit at
            // the latest (not since this start: restarts must not keep
            // postponing the offsets' expiry).
            let mut st = lock(&g.state);
            st.membership.phase_since = st.membership.phase_since.max(c.commit_ms);
            st.offsets.insert((k.topic, k.partition), c);
        }
        Ok(Arc::new(Groups {
            clock,
            config,
            store,
            ids: RandomIds::new(),
            by_namespace: RwLock::new(by_namespace),
            last_expiry: AtomicI64::new(now),
        }))
    }

    /// Groups with offsets in memory only, on the system clock.
    pub fn in_memory() -> Arc<Groups> {
        Groups::open(
            Arc::new(SystemClock::new()),
            Arc::new(MemoryOffsets),
            GroupConfig::default(),
        )
        .unwrap_or_else(|e| unreachable!("memory offsets failed to load: {e}"))
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn now(&self) -> i64 {
        self.clock.now().as_millis() as i64
    }

    fn find(&self, namespace: &str, group: &str) -> Option<Arc<Group>> {
        let map = self
            .by_namespace
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(namespace).and_then(|m| m.get(group)).cloned()
    }

    fn find_or_create(&self, namespace: &str, group: &str) -> Arc<Group> {
        if let Some(g) = self.find(namespace, group) {
            return g;
        }
        let mut map = self
            .by_namespace
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            map.entry(namespace.to_owned())
                .or_default()
                .entry(group.to_owned())
                .or_insert_with(|| Arc::new(Group::new(self.now()))),
        )
    }

    /// Runs `f` on a live group (creating it if `create`), looking it up
    /// again if it died meanwhile. `None`: no such group.
    fn with<T>(
        &self,
        namespace: &str,
        group: &str,
        create: bool,
        f: impl FnOnce(&mut GroupState) -> T,
    ) -> Option<T> {
        loop {
            let g = if create {
                self.find_or_create(namespace, group)
            } else {
                self.find(namespace, group)?
            };
            let mut st = lock(&g.state);
            if st.membership.phase == Phase::Dead {
                drop(st);
                std::thread::yield_now();
                continue;
            }
            let out = f(&mut st);
            g.next_deadline
                .store(st.membership.next_deadline(), Ordering::Release);
            return Some(out);
        }
    }

    /// A namespace's groups, by name (taken out of the registry's lock).
    fn in_namespace(&self, namespace: &str) -> Vec<(String, Arc<Group>)> {
        let map = self
            .by_namespace
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(namespace)
            .map(|m| m.iter().map(|(k, g)| (k.clone(), Arc::clone(g))).collect())
            .unwrap_or_default()
    }

    /// Removes a group from the registry, under its lock, once it is dead.
    fn unregister(&self, namespace: &str, group: &str) {
        let mut map = self
            .by_namespace
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = map.get_mut(namespace) {
            let dead = m
                .get(group)
                .is_some_and(|g| lock(&g.state).membership.phase == Phase::Dead);
            if dead {
                m.remove(group);
            }
            if m.is_empty() {
                map.remove(namespace);
            }
        }
    }

    pub fn join(
        &self,
        namespace: &str,
        req: JoinRequest,
    ) -> oneshot::Receiver<Result<Joined, GroupError>> {
        let (tx, rx) = oneshot::channel();
        if req.group.is_empty() {
            let _ = tx.send(Err(GroupError::InvalidGroupId));
            return rx;
        }
        let create = req.member_id.is_empty();
        let group = req.group.clone();
        let now = self.now();
        let prefix = if req.client_id.is_empty() {
            "member".to_owned()
        } else {
            req.client_id.clone()
        };
        let new_id = || format!("{prefix}-{}", self.ids.next_id());
        let mut tx = Some(tx);
        let found = self.with(namespace, &group, create, |st| {
            if let Some(tx) = tx.take() {
                st.membership.join(req, new_id, &self.config, now, tx);
            }
        });
        if found.is_none()
            && let Some(tx) = tx
        {
            let _ = tx.send(Err(GroupError::UnknownMemberId));
        }
        rx
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        namespace: &str,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<Result<Synced, GroupError>> {
        let (tx, rx) = oneshot::channel();
        if group.is_empty() {
            let _ = tx.send(Err(GroupError::InvalidGroupId));
            return rx;
        }
        let now = self.now();
        let mut tx = Some(tx);
        let found = self.with(namespace, group, false, |st| {
            if let Some(tx) = tx.take() {
                st.membership.sync(
                    member_id,
                    instance_id,
                    generation,
                    protocol_type,
                    protocol,
                    assignments,
                    now,
                    tx,
                );
            }
        });
        if found.is_none()
            && let Some(tx) = tx
        {
            let _ = tx.send(Err(GroupError::UnknownMemberId));
        }
        rx
    }

    pub fn heartbeat(
        &self,
        namespace: &str,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now = self.now();
        self.with(namespace, group, false, |st| {
            st.membership
                .heartbeat(member_id, instance_id, generation, now)
        })
        .unwrap_or(Err(GroupError::UnknownMemberId))
    }

    /// Members leave: (member id, instance id) each, answered each.
    pub fn leave(
        &self,
        namespace: &str,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now = self.now();
        self.with(namespace, group, false, |st| {
            members
                .iter()
                .map(|(m, i)| st.membership.leave(m, i.as_deref(), now, &self.config))
                .collect()
        })
        .ok_or(GroupError::UnknownMemberId)
    }

    /// Commits offsets; each partition is answered, and the [`Commit`] says
    /// when the accepted ones are durable (answer only after it).
    pub fn commit(
        &self,
        namespace: &str,
        group: &str,
        who: &Committer,
        offsets: Vec<OffsetCommit>,
    ) -> Result<(Vec<Result<(), GroupError>>, Commit), GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        // A commit without a generation may create the group (simple
        // consumers and admin tools commit so).
        let create = who.generation < 0;
        let now = self.now();
        let max = self.config.max_metadata_bytes;
        let done = self.with(namespace, group, create, |st| {
            let m = &mut st.membership;
            // Kafka's order of checks: an empty group takes any commit
            // without a generation; otherwise the member and generation
            // first, and only then the rebalance state.
            if !(create && m.phase == Phase::Empty) {
                if who.generation >= 0 || !who.member_id.is_empty() || who.instance_id.is_some() {
                    m.check_commit(
                        &who.member_id,
                        who.instance_id.as_deref(),
                        who.generation,
                        now,
                    )?;
                } else {
                    return Err(GroupError::UnknownMemberId);
                }
                if m.phase == Phase::CompletingRebalance {
                    // Members commit before rejoining, or once the new
                    // assignment is theirs, not in between.
                    return Err(GroupError::RebalanceInProgress);
                }
            }
            let mut answers = Vec::with_capacity(offsets.len());
            let mut changes = Vec::with_capacity(offsets.len());
            for o in offsets {
                let metadata = o.metadata.unwrap_or_default();
                if metadata.len() > max {
                    answers.push(Err(GroupError::OffsetMetadataTooLarge {
                        given: metadata.len(),
                        max,
                    }));
                    continue;
                }
                let c = Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                    commit_ms: now,
                };
                st.offsets.insert((o.topic.clone(), o.partition), c.clone());
                changes.push(OffsetChange::Commit(
                    OffsetKey {
                        namespace: namespace.to_owned(),
                        group: group.to_owned(),
                        topic: o.topic,
                        partition: o.partition,
                    },
                    c,
                ));
                answers.push(Ok(()));
            }
            let commit = if changes.is_empty() {
                Commit::done()
            } else {
                self.store.record(changes)
            };
            Ok((answers, commit))
        });
        // A commit with a generation to a group that does not exist (the
        // Kafka face answers ILLEGAL_GENERATION to OffsetCommit below v9).
        done.unwrap_or_else(|| Err(GroupError::GroupIdNotFound(group.to_owned())))
    }

    /// Committed offsets of the partitions asked for (`None`: every one
    /// the group has), each with what is committed if anything is.
    pub fn fetch(
        &self,
        namespace: &str,
        group: &str,
        partitions: Option<&[(String, Vec<u32>)]>,
    ) -> Vec<(String, u32, Option<Committed>)> {
        let all = self.with(namespace, group, false, |st| match partitions {
            Some(ps) => ps
                .iter()
                .flat_map(|(t, parts)| {
                    parts.iter().map(|p| {
                        let c = st.offsets.get(&(t.clone(), *p)).cloned();
                        (t.clone(), *p, c)
                    })
                })
                .collect(),
            None => {
                let mut v: Vec<_> = st
                    .offsets
                    .iter()
                    .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                    .collect();
                v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                v
            }
        });
        all.unwrap_or_else(|| match partitions {
            Some(ps) => ps
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(|p| (t.clone(), *p, None)))
                .collect(),
            None => Vec::new(),
        })
    }

    /// OffsetDelete: forgets partitions' offsets, except those of topics
    /// the members subscribe to (read from their metadata by
    /// `subscriptions`, for groups of protocol type "consumer").
    pub fn delete_offsets(
        &self,
        namespace: &str,
        group: &str,
        partitions: &[(String, Vec<u32>)],
        subscriptions: &dyn Fn(&[u8]) -> Option<Vec<String>>,
    ) -> Result<(Vec<PartitionAnswer>, Commit), GroupError> {
        let not_found = || GroupError::GroupIdNotFound(group.to_owned());
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.with(namespace, group, false, |st| {
            let m = &st.membership;
            // `None`: subscribed to every topic.
            let subscribed = if m.phase == Phase::Empty {
                Some(Vec::new())
            } else if m.protocol_type.as_deref() == Some("consumer") {
                m.subscribed(subscriptions)
            } else {
                return Err(GroupError::NonEmptyGroup);
            };
            let mut answers = Vec::new();
            let mut changes = Vec::new();
            for (t, parts) in partitions {
                for p in parts {
                    if subscribed.as_ref().is_none_or(|s| s.contains(t)) {
                        answers.push((t.clone(), *p, Err(GroupError::GroupSubscribedToTopic)));
                        continue;
                    }
                    if st.offsets.remove(&(t.clone(), *p)).is_some() {
                        changes.push(OffsetChange::Delete(OffsetKey {
                            namespace: namespace.to_owned(),
                            group: group.to_owned(),
                            topic: t.clone(),
                            partition: *p,
                        }));
                    }
                    answers.push((t.clone(), *p, Ok(())));
                }
            }
            let commit = if changes.is_empty() {
                Commit::done()
            } else {
                self.store.record(changes)
            };
            Ok((answers, commit))
        })
        .unwrap_or_else(|| Err(not_found()))
    }

    /// A group's state and members; an unknown group is `Dead` with none,
    /// as Kafka describes it.
    pub fn describe(&self, namespace: &str, group: &str) -> GroupView {
        self.with(namespace, group, false, |st| {
            let m = &st.membership;
            GroupView {
                phase: m.phase,
                generation: m.generation,
                protocol_type: m.protocol_type.clone().unwrap_or_default(),
                protocol: m.protocol.clone().unwrap_or_default(),
                leader: m.leader.clone().unwrap_or_default(),
                members: m.members_view(),
            }
        })
        .unwrap_or(GroupView {
            phase: Phase::Dead,
            generation: -1,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: Vec::new(),
        })
    }

    /// The namespaces that have groups, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_namespace
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, groups)| !groups.is_empty())
            .map(|(ns, _)| ns.clone())
            .collect();
        v.sort();
        v
    }

    /// Every group of a namespace, by name.
    pub fn list(&self, namespace: &str) -> Vec<GroupSummary> {
        let groups = self.in_namespace(namespace);
        let mut out: Vec<GroupSummary> = groups
            .into_iter()
            .filter_map(|(name, g)| {
                let st = lock(&g.state);
                (st.membership.phase != Phase::Dead).then(|| GroupSummary {
                    group: name,
                    protocol_type: st.membership.protocol_type.clone().unwrap_or_else(|| {
                        // An empty group keeps the type of its last members
                        // only in Kafka's log; here offsets-only groups
                        // are "consumer" groups, as Kafka lists them.
                        if st.offsets.is_empty() {
                            String::new()
                        } else {
                            "consumer".into()
                        }
                    }),
                    phase: st.membership.phase,
                })
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// DeleteGroups: only an empty group goes, with its offsets.
    pub fn delete(&self, namespace: &str, group: &str) -> Result<Commit, GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now = self.now();
        let commit = self
            .with(namespace, group, false, |st| {
                // Pending MEMBER_ID_REQUIRED ids do not count: the group is
                // Empty until one of them joins.
                if st.membership.phase != Phase::Empty || !st.membership.members.is_empty() {
                    return Err(GroupError::NonEmptyGroup);
                }
                Ok(self.kill(namespace, group, st, now))
            })
            .ok_or_else(|| GroupError::GroupIdNotFound(group.to_owned()))??;
        self.unregister(namespace, group);
        Ok(commit)
    }

    /// Marks a group dead and forgets its offsets (under its lock).
    fn kill(&self, namespace: &str, group: &str, st: &mut GroupState, now: i64) -> Commit {
        st.membership.kill(now);
        if std::mem::take(&mut st.offsets).is_empty() {
            return Commit::done();
        }
        self.store.record(vec![OffsetChange::DeleteGroup {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
        }])
    }

    /// A topic was deleted: every group forgets its offsets.
    pub fn forget_topic(&self, namespace: &str, topic: &str) -> Commit {
        let groups = self.in_namespace(namespace);
        let mut commit = Commit::done();
        for (name, g) in groups {
            let mut st = lock(&g.state);
            let gone: Vec<(String, u32)> = st
                .offsets
                .keys()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect();
            if gone.is_empty() {
                continue;
            }
            let changes = gone
                .into_iter()
                .map(|k| {
                    st.offsets.remove(&k);
                    OffsetChange::Delete(OffsetKey {
                        namespace: namespace.to_owned(),
                        group: name.clone(),
                        topic: k.0,
                        partition: k.1,
                    })
                })
                .collect();
            commit = commit.and(self.store.record(changes));
        }
        commit
    }

    /// Expires what has run out of time: members, rebalances, and (every
    /// minute) empty groups' offsets past retention. Call it often (every
    /// 100 ms or so): timeouts are only as precise as the calls.
    pub fn tick(&self) {
        let now = self.now();
        let groups: Vec<(String, String, Arc<Group>)> = {
            let map = self
                .by_namespace
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let expiry = now - self.last_expiry.load(Ordering::Relaxed) >= EXPIRY_EVERY_MS;
            map.iter()
                .flat_map(|(ns, m)| {
                    m.iter()
                        .filter(|(_, g)| expiry || g.next_deadline.load(Ordering::Acquire) <= now)
                        .map(|(k, g)| (ns.clone(), k.clone(), Arc::clone(g)))
                })
                .collect()
        };
        let expiry = now - self.last_expiry.load(Ordering::Relaxed) >= EXPIRY_EVERY_MS;
        if expiry {
            self.last_expiry.store(now, Ordering::Relaxed);
        }
        for (ns, name, g) in groups {
            let forget = {
                let mut st = lock(&g.state);
                if st.membership.phase == Phase::Dead {
                    continue;
                }
                st.membership.tick(now, &self.config);
                g.next_deadline
                    .store(st.membership.next_deadline(), Ordering::Release);
                let expired = expiry && self.offsets_expired(&st, now);
                if expired {
                    // Durable or not, the offsets are past keeping; a crash
                    // before this is durable only brings them back to be
                    // expired again.
                    let _expiry_commit = self.kill(&ns, &name, &mut st, now);
                }
                expired || st.forgettable()
            };
            if forget {
                {
                    let mut st = lock(&g.state);
                    if st.forgettable() {
                        st.membership.kill(now);
                    }
                }
                self.unregister(&ns, &name);
            }
        }
    }

    /// An empty group whose newest commit (or emptiness) is older than the
    /// offsets' retention.
    fn offsets_expired(&self, st: &GroupState, now: i64) -> bool {
        if st.membership.phase != Phase::Empty || !st.membership.is_empty() {
            return false;
        }
        let Some(newest) = st.offsets.values().map(|c| c.commit_ms).max() else {
            return false;
        };
        now - newest.max(st.membership.phase_since) >= self.config.offsets_retention_ms
    }
}

impl Group {
    fn new(now: i64) -> Group {
        Group {
            state: Mutex::new(GroupState {
                membership: Membership::new(now),
                offsets: HashMap::new(),
            }),
            next_deadline: AtomicI64::new(i64::MAX),
        }
    }
}
