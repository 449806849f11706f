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

use kafka_protocol::ResponseError;

use crate::wire::{FetchPartition, FetchRequest};

/// Sessions one connection may hold (a consumer holds one per broker);
/// past it the oldest goes.
const MAX_SESSIONS: usize = 8;

/// One partition of a session: what the client asked, and what it was
/// last told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPartition {
    pub topic: String,
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
    partitions: Vec<SessionPartition>,
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

#[derive(Debug, Default)]
pub struct FetchSessions {
    next_id: i32,
    sessions: Vec<Session>,
}

fn partitions_of(req: &FetchRequest) -> Vec<SessionPartition> {
    req.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| part(&t.name, p)))
        .collect()
}

fn part(topic: &str, p: &FetchPartition) -> SessionPartition {
    SessionPartition {
        topic: topic.to_owned(),
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
                let id = self.new_id();
                if self.sessions.len() >= MAX_SESSIONS {
                    self.sessions.remove(0);
                }
                self.sessions.push(Session {
                    id,
                    epoch: 1,
                    partitions: partitions.clone(),
                });
                Plan::Full { id, partitions }
            }
            _ if id == 0 || epoch < 0 => Plan::Refused(ResponseError::InvalidFetchSessionEpoch),
            _ => {
                let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) else {
                    return Plan::Refused(ResponseError::FetchSessionIdNotFound);
                };
                if s.epoch != epoch {
                    return Plan::Refused(ResponseError::InvalidFetchSessionEpoch);
                }
                s.epoch = s.epoch.checked_add(1).unwrap_or(1);
                for t in &req.topics {
                    for p in &t.partitions {
                        match s
                            .partitions
                            .iter_mut()
                            .find(|x| x.topic == t.name && x.partition == p.partition)
                        {
                            Some(x) => {
                                x.offset = p.fetch_offset;
                                x.max_bytes = p.partition_max_bytes;
                            }
                            None => s.partitions.push(part(&t.name, p)),
                        }
                    }
                }
                // After the additions, as Kafka applies them: a partition
                // both named and forgotten is forgotten.
                for (topic, gone) in &req.forgotten {
                    s.partitions
                        .retain(|p| !(p.topic == *topic && gone.contains(&p.partition)));
                }
                Plan::Incremental {
                    id,
                    epoch,
                    partitions: s.partitions.clone(),
                }
            }
        }
    }

    /// After an answer: what each partition included was told, so later
    /// answers leave it out until it has news. `epoch` is the epoch the
    /// answered request carried (0 for a new session).
    pub fn told(&mut self, id: i32, epoch: i32, told: &[(String, i32, i64, i64)]) {
        let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) else {
            return;
        };
        // A later request took the session on meanwhile: its answer counts.
        if s.epoch != epoch + 1 {
            return;
        }
        for (topic, partition, hw, start) in told {
            if let Some(p) = s
                .partitions
                .iter_mut()
                .find(|p| p.topic == *topic && p.partition == *partition)
            {
                p.told = Some((*hw, *start));
            }
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
                .map(|p| (p.topic.clone(), p.partition, p.offset))
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
            Plan::Refused(ResponseError::InvalidFetchSessionEpoch)
        );
        // Closing it: sessionless, and the id is gone.
        assert_eq!(s.plan(&req(id, -1, &[("a", 0, 1)], &[])), Plan::Sessionless);
        assert_eq!(
            s.plan(&req(id, 3, &[], &[])),
            Plan::Refused(ResponseError::FetchSessionIdNotFound)
        );
    }

    #[test]
    fn what_was_told_is_kept_for_the_answered_epoch_only() {
        let mut s = FetchSessions::default();
        let Plan::Full { id, .. } = s.plan(&req(0, 0, &[("a", 0, 0)], &[])) else {
            panic!("a new session");
        };
        s.told(id, 0, &[("a".into(), 0, 10, 0)]);
        let Plan::Incremental { partitions, .. } = s.plan(&req(id, 1, &[], &[])) else {
            panic!("incremental");
        };
        assert_eq!(partitions[0].told, Some((10, 0)));
        // An answer to an epoch the session has moved past is ignored.
        let _ = s.plan(&req(id, 2, &[], &[]));
        s.told(id, 1, &[("a".into(), 0, 99, 0)]);
        let Plan::Incremental { partitions, .. } = s.plan(&req(id, 3, &[], &[])) else {
            panic!("incremental");
        };
        assert_eq!(partitions[0].told, Some((10, 0)));
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
