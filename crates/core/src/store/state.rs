//! The durable state a record sequence describes: the topology recovery
//! rebuilds (the broker puts messages straight into its queues), and the
//! whole state a compaction of the in-memory store writes back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::message::Message;
use crate::queue::QueueConfig;
use crate::router::{Binding, RouterConfig};

use super::record::{Location, QueueId, Record};

#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub at: Timestamp,
    pub message: Arc<Message>,
    pub deliveries: u32,
    /// Where the store holds it.
    pub loc: Option<Location>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DurableQueue {
    pub namespace: String,
    pub name: String,
    pub config: QueueConfig,
    /// By sequence number.
    pub messages: BTreeMap<u64, StoredMessage>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DurableState {
    pub namespaces: BTreeSet<String>,
    pub queues: BTreeMap<QueueId, DurableQueue>,
    /// By (namespace, name).
    pub routers: BTreeMap<(String, String), RouterConfig>,
    /// (namespace, binding), in the order they were made.
    pub bindings: Vec<(String, Binding)>,
    /// Messages of queues not declared (yet) in the records seen so far. A
    /// journal that deletes old segments rewrites the topology into newer
    /// ones, so a queue's declaration may come after its messages on
    /// replay; queue ids are never reused, so they are matched up then.
    orphans: BTreeMap<QueueId, BTreeMap<u64, StoredMessage>>,
}

impl DurableState {
    pub fn from_records(records: impl IntoIterator<Item = (Record, Option<Location>)>) -> Self {
        let mut s = DurableState::default();
        for (r, loc) in records {
            s.apply(r, loc);
        }
        s
    }

    /// Applies one record (`loc`: where an `Enqueued` record is). Records
    /// about things that no longer exist are ignored: they were superseded
    /// (a message of a deleted queue).
    pub fn apply(&mut self, record: Record, loc: Option<Location>) {
        match record {
            Record::NamespaceCreated { name } => {
                self.namespaces.insert(name);
            }
            Record::NamespaceDeleted { name } => {
                self.namespaces.remove(&name);
                self.queues.retain(|_, q| q.namespace != name);
                self.routers.retain(|(ns, _), _| *ns != name);
                self.bindings.retain(|(ns, _)| *ns != name);
            }
            Record::QueueDeclared {
                id,
                namespace,
                name,
                config,
            } => {
                let mut messages = self
                    .queues
                    .remove(&id)
                    .map(|q| q.messages)
                    .unwrap_or_default();
                if let Some(orphans) = self.orphans.remove(&id) {
                    messages.extend(orphans);
                }
                self.queues.insert(
                    id,
                    DurableQueue {
                        namespace,
                        name,
                        config,
                        messages,
                    },
                );
            }
            Record::QueueDeleted { id } => {
                self.orphans.remove(&id);
                if let Some(q) = self.queues.remove(&id) {
                    self.bindings
                        .retain(|(ns, b)| !(*ns == q.namespace && b.destination.is_queue(&q.name)));
                }
            }
            Record::Enqueued {
                queue,
                seq,
                at,
                deliveries,
                message,
                ..
            } => {
                // A copy written by compaction replaces the original.
                self.messages_of(queue).insert(
                    seq,
                    StoredMessage {
                        at,
                        message,
                        deliveries,
                        loc,
                    },
                );
            }
            // A window's key, not a message: deduplication is the queue's.
            Record::DedupKept { .. } => {}
            Record::Delivered { queue, seq, count } => {
                if let Some(m) = self.messages_of(queue).get_mut(&seq) {
                    m.deliveries = count;
                }
            }
            Record::Removed { queue, seq, .. } => {
                self.messages_of(queue).remove(&seq);
            }
            Record::Purged { queue, removed } => {
                let messages = self.messages_of(queue);
                for (s, _) in removed {
                    messages.remove(&s);
                }
            }
            Record::RouterDeclared {
                namespace,
                name,
                config,
            } => {
                self.routers.insert((namespace, name), config);
            }
            Record::RouterDeleted { namespace, name } => {
                self.bindings.retain(|(ns, b)| {
                    !(*ns == namespace && (b.source == name || b.destination.is_router(&name)))
                });
                self.routers.remove(&(namespace, name));
            }
            Record::Bound { namespace, binding } => {
                if !self
                    .bindings
                    .iter()
                    .any(|(ns, b)| *ns == namespace && *b == binding)
                {
                    self.bindings.push((namespace, binding));
                }
            }
            Record::Unbound { namespace, binding } => {
                self.bindings
                    .retain(|(ns, b)| !(*ns == namespace && *b == binding));
            }
        }
    }

    fn messages_of(&mut self, queue: QueueId) -> &mut BTreeMap<u64, StoredMessage> {
        match self.queues.get_mut(&queue) {
            Some(q) => &mut q.messages,
            None => self.orphans.entry(queue).or_default(),
        }
    }

    /// Messages whose queue was never declared: left over once replay ends.
    pub fn orphan_count(&self) -> usize {
        self.orphans.values().map(BTreeMap::len).sum()
    }

    /// A minimal record sequence that rebuilds this state.
    pub fn to_records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for name in &self.namespaces {
            out.push(Record::NamespaceCreated { name: name.clone() });
        }
        for ((namespace, name), config) in &self.routers {
            out.push(Record::RouterDeclared {
                namespace: namespace.clone(),
                name: name.clone(),
                config: config.clone(),
            });
        }
        for (id, q) in &self.queues {
            out.push(Record::QueueDeclared {
                id: *id,
                namespace: q.namespace.clone(),
                name: q.name.clone(),
                config: q.config.clone(),
            });
            for (seq, m) in &q.messages {
                out.push(Record::Enqueued {
                    queue: *id,
                    seq: *seq,
                    at: m.at,
                    deliveries: m.deliveries,
                    message: Arc::clone(&m.message),
                    replaces: None,
                    forwarded: false,
                });
            }
        }
        for (namespace, binding) in &self.bindings {
            out.push(Record::Bound {
                namespace: namespace.clone(),
                binding: binding.clone(),
            });
        }
        out
    }

    /// How many messages the state holds.
    pub fn message_count(&self) -> usize {
        self.queues.values().map(|q| q.messages.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueConfig;

    fn enq(seq: u64) -> Record {
        Record::Enqueued {
            queue: QueueId(3),
            seq,
            at: Timestamp(1),
            deliveries: 0,
            message: Arc::new(Message::new("m")),
            replaces: None,
            forwarded: false,
        }
    }

    #[test]
    fn messages_before_their_queue_declaration_join_it() {
        let declared = Record::QueueDeclared {
            id: QueueId(3),
            namespace: "ns".into(),
            name: "q".into(),
            config: QueueConfig::default(),
        };
        let s = DurableState::from_records(
            [
                enq(1),
                enq(2),
                Record::Removed {
                    queue: QueueId(3),
                    seq: 1,
                    loc: None,
                },
                declared.clone(),
            ]
            .into_iter()
            .map(|r| (r, None)),
        );
        assert_eq!(s.message_count(), 1);
        assert_eq!(s.orphan_count(), 0);
        let gone = DurableState::from_records(
            [enq(1), Record::QueueDeleted { id: QueueId(3) }]
                .into_iter()
                .map(|r| (r, None)),
        );
        assert_eq!(gone.orphan_count() + gone.message_count(), 0);
    }
}
