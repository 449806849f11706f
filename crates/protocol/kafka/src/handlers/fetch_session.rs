//! Incremental fetch sessions (KIP-227), kept per connection: a full
//! fetch with epoch 0 opens a session holding its partitions and their
//! fetch offsets; later fetches name the session and its next epoch, list
//! only the partitions whose offset changed (and forgotten ones), and are
//! answered only with the partitions that have records or news (a new
//! high watermark or log start, an error). Epoch -1 closes a session.
//!
//! Sessions live with their connection: a client that reconnects and names
//! an old session gets FETCH_SESSION_ID_NOT_FOUND and starts a new one, as
//! Kafka's clients do after an eviction. Invariant: a session's epoch is
//! the one its next request must carry; it moves once per request taken.
//! Topic names are shared (`Arc<str>`), partitions are found through an
//! index, and a session holds at most [`MAX_PARTITIONS`]: a request that
//! would pass it is refused, so no request costs more than its own size.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::wire::{FetchPartition, FetchRequest};

/// Sessions one connection may hold (a consumer holds one per broker);
/// past it the oldest goes.
const MAX_SESSIONS: usize = 8;
/// Partitions one session may hold.
pub const MAX_PARTITIONS: usize = 100_000;

/// One partition of a session: what the client asked, and what it was
/// last told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPartition {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: i32,
    /// (high watermark, log start) last sent; `None` before the first answer.
    pub told: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Session {
    id: i32,
    /// The epoch the next request must carry.
    epoch: i32,
    /// In answering order: partitions that got records go to the back, so
    /// a response's size limit does not starve the ones after them.
    partitions: Vec<SessionPartition>,
    /// Where each partition is in `partitions`.
    index: HashMap<(Arc<str>, i32), usize>,
}

impl Session {
    fn new(id: i32, partitions: Vec<SessionPartition>) -> Session {
        let mut s = Session {
            id,
            epoch: 1,
            partitions,
            index: HashMap::new(),
        };
        s.reindex();
        s
    }

    fn reindex(&mut self) {
        self.index = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| ((Arc::clone(&p.topic), p.partition), i))
            .collect();
    }
}

/// The epoch after `e` (1 after the largest: 0 would open a session).
fn next_epoch(e: i32) -> i32 {
    e.checked_add(1).unwrap_or(1)
}

/// What a fetch is, once its session fields are read.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// No session: the partitions asked for, answered whole.
    Sessionless,
    /// A new session, answered whole with its id.
    Full {
        id: i32,
        partitions: Vec<SessionPartition>,
    },
    /// An existing session at `epoch` (the request's), answered with what
    /// changed.
    Incremental {
        id: i32,
        epoch: i32,
        partitions: Vec<SessionPartition>,
    },
    /// Refused with this top-level error.
    Refused(ResponseError),
}

/// What an answer told a client of one partition.
#[derive(Clone, Debug)]
pub struct Told {
    pub topic: Arc<str>,
    pub partition: i32,
    /// (high watermark, log start); `None` after an error.
    pub marks: Option<(i64, i64)>,
    /// Whether records came with it.
    pub records: bool,
}

#[derive(Debug, Default)]
pub struct FetchSessions {
    next_id: i32,
    sessions: Vec<Session>,
}

/// The partitions a request names, topic names shared.
pub fn partitions_of(req: &FetchRequest) -> Vec<SessionPartition> {
    req.topics
        .iter()
        .flat_map(|t| {
            let topic: Arc<str> = Arc::from(t.name.as_str());
            t.partitions.iter().map(move |p| part(&topic, p))
        })
        .collect()
}

fn part(topic: &Arc<str>, p: &FetchPartition) -> SessionPartition {
    SessionPartition {
        topic: Arc::clone(topic),
        partition: p.partition,
        offset: p.fetch_offset,
        max_bytes: p.partition_max_bytes,
        told: None,
    }
}

impl FetchSessions {
    /// Takes a fetch's session fields (Fetch v7 and later).
    pub fn plan(&mut self, req: &FetchRequest) -> Plan {
        let (id, epoch) = (req.session_id, req.session_epoch);
        match epoch {
            -1 => {
                self.sessions.retain(|s| s.id != id);
                Plan::Sessionless
            }
            0 => {
                self.sessions.retain(|s| s.id != id);
                let partitions = partitions_of(req);
                if partitions.len() > MAX_PARTITIONS {
                    return Plan::Refused(ResponseError::InvalidRequest);
                }
                let id = self.new_id();
                if self.sessions.len() >= MAX_SESSIONS {
                    self.sessions.remove(0);
                }
                self.sessions.push(Session::new(id, partitions.clone()));
                Plan::Full { id, partitions }
            }
            _ if id == 0 => Plan::Refused(ResponseError::FetchSessionIdNotFound),
            _ if epoch < 0 => Plan::Refused(ResponseError::InvalidFetchSessionEpoch),
            _ => {
                let Some(at) = self.sessions.iter().position(|s| s.id == id) else {
                    return Plan::Refused(ResponseError::FetchSessionIdNotFound);
                };
                // The session used is the newest: eviction takes the one
                // least recently used.
                let mut s = self.sessions.remove(at);
                if s.epoch != epoch {
                    self.sessions.push(s);
                    return Plan::Refused(ResponseError::InvalidFetchSessionEpoch);
                }
                s.epoch = next_epoch(s.epoch);
                for p in partitions_of(req) {
                    match s.index.get(&(Arc::clone(&p.topic), p.partition)) {
                        Some(&i) => {
                            if let Some(x) = s.partitions.get_mut(i) {
                                x.offset = p.offset;
                                x.max_bytes = p.max_bytes;
                            }
                        }
                        None => {
                            s.index
                                .insert((Arc::clone(&p.topic), p.partition), s.partitions.len());
                            s.partitions.push(p);
                        }
                    }
                }
                // After the additions, as Kafka applies them: a partition
                // both named and forgotten is forgotten.
                if !req.forgotten.is_empty() {
                    s.partitions.retain(|p| {
                        !req.forgotten
                            .iter()
                            .any(|(t, gone)| **t == *p.topic && gone.contains(&p.partition))
                    });
                    s.reindex();
                }
                if s.partitions.len() > MAX_PARTITIONS {
                    return Plan::Refused(ResponseError::InvalidRequest);
                }
                let partitions = s.partitions.clone();
                self.sessions.push(s);
                Plan::Incremental {
                    id,
                    epoch,
                    partitions,
                }
            }
        }
    }

    /// After an answer: what each partition included was told, so later
    /// answers leave it out until it has news; a partition that answered an
    /// error is told nothing (it is sent again once the error clears), and
    /// those that got records go to the back. `epoch` is the epoch the
    /// answered request carried (0 for a new session).
    pub fn told(&mut self, id: i32, epoch: i32, told: &[Told]) {
        let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) else {
            return;
        };
        // A later request took the session on meanwhile: its answer counts.
        if s.epoch != next_epoch(epoch) {
            return;
        }
        let mut served = Vec::new();
        for t in told {
            if let Some(&i) = s.index.get(&(Arc::clone(&t.topic), t.partition))
                && let Some(p) = s.partitions.get_mut(i)
            {
                p.told = t.marks;
                if t.records {
                    served.push(i);
                }
            }
        }
        if !served.is_empty() && served.len() < s.partitions.len() {
            served.sort_unstable();
            let mut back = Vec::with_capacity(served.len());
            for i in served.into_iter().rev() {
                back.push(s.partitions.remove(i));
            }
            back.reverse();
            s.partitions.extend(back);
            s.reindex();
        }
    }

    fn new_id(&mut self) -> i32 {
        loop {
            self.next_id = self.next_id.checked_add(1).filter(|n| *n > 0).unwrap_or(1);
            if !self.sessions.iter().any(|s| s.id == self.next_id) {
                return self.next_id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FetchTopic;

    fn req(
        id: i32,
        epoch: i32,
        parts: &[(&str, i32, i64)],
        forgotten: &[(&str, i32)],
    ) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (t, p, o) in parts {
            let fp = FetchPartition {
                partition: *p,
                fetch_offset: *o,
                partition_max_bytes: 1000,
            };
            match topics.iter_mut().find(|x| x.name == *t) {
                Some(x) => x.partitions.push(fp),
                None => topics.push(FetchTopic {
                    name: (*t).into(),
                    partitions: vec![fp],
                }),
            }
        }
        FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            isolation_level: 0,
            session_id: id,
            session_epoch: epoch,
            topics,
            forgotten: forgotten
                .iter()
                .map(|(t, p)| ((*t).into(), vec![*p]))
                .collect(),
        }
    }

    fn offsets(plan: &Plan) -> Vec<(String, i32, i64)> {
        match plan {
            Plan::Full { partitions, .. } | Plan::Incremental { partitions, .. } => partitions
                .iter()
                .map(|p| (p.topic.to_string(), p.partition, p.offset))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_session_keeps_its_partitions_and_takes_changes() {
        let mut s = FetchSessions::default();
        let Plan::Full { id, .. } = s.plan(&req(0, 0, &[("a", 0, 5), ("a", 1, 7)], &[])) else {
            panic!("a new session");
        };
        // Nothing named: the session's partitions at their offsets.
        let p = s.plan(&req(id, 1, &[], &[]));
        assert_eq!(offsets(&p), vec![("a".into(), 0, 5), ("a".into(), 1, 7)]);
        // An offset moves, a partition is added, one is forgotten.
        let p = s.plan(&req(id, 2, &[("a", 0, 9), ("b", 0, 0)], &[("a", 1)]));
        assert_eq!(offsets(&p), vec![("a".into(), 0, 9), ("b".into(), 0, 0)]);
        // The same epoch twice, a wrong one, an unknown session.
        assert_eq!(
            s.plan(&req(id, 2, &[], &[])),
            Plan::Refused(ResponseError::InvalidFetchSessionEpoch)
        );
        assert_eq!(
            s.plan(&req(id + 1, 1, &[], &[])),
            Plan::Refused(ResponseError::FetchSessionIdNotFound)
        );
        assert_eq!(
            s.plan(&req(0, 3, &[], &[])),
            Plan::Refused(ResponseError::FetchSessionIdNotFound)
        );
        // Closing it: sessionless, and the id is gone.
        assert_eq!(s.plan(&req(id, -1, &[("a", 0, 1)], &[])), Plan::Sessionless);
        assert_eq!(
            s.plan(&req(id, 3, &[], &[])),
            Plan::Refused(ResponseError::FetchSessionIdNotFound)
        );
    }

    fn told(topic: &str, partition: i32, hw: i64, records: bool) -> Told {
        Told {
            topic: Arc::from(topic),
            partition,
            marks: Some((hw, 0)),
            records,
        }
    }

    #[test]
    fn what_was_told_is_kept_for_the_answered_epoch_only() {
        let mut s = FetchSessions::default();
        let Plan::Full { id, .. } = s.plan(&req(0, 0, &[("a", 0, 0)], &[])) else {
            panic!("a new session");
        };
        s.told(id, 0, &[told("a", 0, 10, false)]);
        let Plan::Incremental { partitions, .. } = s.plan(&req(id, 1, &[], &[])) else {
            panic!("incremental");
        };
        assert_eq!(partitions[0].told, Some((10, 0)));
        // An answer to an epoch the session has moved past is ignored.
        let _ = s.plan(&req(id, 2, &[], &[]));
        s.told(id, 1, &[told("a", 0, 99, false)]);
        let Plan::Incremental { partitions, .. } = s.plan(&req(id, 3, &[], &[])) else {
            panic!("incremental");
        };
        assert_eq!(partitions[0].told, Some((10, 0)));
    }

    #[test]
    fn partitions_that_got_records_go_to_the_back() {
        let mut s = FetchSessions::default();
        let Plan::Full { id, .. } =
            s.plan(&req(0, 0, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)], &[]))
        else {
            panic!("a new session");
        };
        s.told(
            id,
            0,
            &[
                told("a", 0, 5, true),
                told("a", 1, 0, false),
                told("b", 0, 0, false),
            ],
        );
        let p = s.plan(&req(id, 1, &[], &[]));
        assert_eq!(
            offsets(&p),
            vec![("a".into(), 1, 0), ("b".into(), 0, 0), ("a".into(), 0, 0)]
        );
    }

    #[test]
    fn a_session_is_bounded() {
        let mut s = FetchSessions::default();
        let many: Vec<(&str, i32, i64)> =
            (0..=MAX_PARTITIONS as i32).map(|i| ("a", i, 0)).collect();
        assert_eq!(
            s.plan(&req(0, 0, &many, &[])),
            Plan::Refused(ResponseError::InvalidRequest)
        );
    }

    #[test]
    fn a_connection_holds_a_bounded_number_of_sessions() {
        let mut s = FetchSessions::default();
        let ids: Vec<i32> = (0..MAX_SESSIONS + 2)
            .map(|_| match s.plan(&req(0, 0, &[("a", 0, 0)], &[])) {
                Plan::Full { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(s.sessions.len(), MAX_SESSIONS);
        assert_eq!(
            s.plan(&req(ids[0], 1, &[], &[])),
            Plan::Refused(ResponseError::FetchSessionIdNotFound)
        );
        assert!(matches!(
            s.plan(&req(ids[MAX_SESSIONS + 1], 1, &[], &[])),
            Plan::Incremental { .. }
        ));
    }
}
