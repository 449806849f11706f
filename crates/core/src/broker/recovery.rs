//! Opening a broker on a store: replay its records into live namespaces,
//! routers, queues and messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::CoreResult;
use crate::queue::Effects;
use crate::router::Router;
use crate::store::DurableState;

use super::{Broker, Namespace, lock, write};

impl Broker {
    pub(super) fn recover(&self, memory_budget: u64) -> CoreResult<()> {
        let mut state = DurableState::with_budget(memory_budget);
        self.store.recover(&mut |r, loc| state.apply(r, loc))?;
        let now = self.clock.now();
        let mut namespaces = write(&self.namespaces);
        let mut ns_of = |name: &str| {
            Arc::clone(
                namespaces
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::new(Namespace::new(name))),
            )
        };
        for name in &state.namespaces {
            ns_of(name);
        }
        for ((namespace, name), config) in state.routers {
            let ns = ns_of(&namespace);
            write(&ns.routers).insert(
                name.clone(),
                Arc::new(std::sync::RwLock::new(Router::new(&name, config))),
            );
        }
        let mut max_id = 0;
        let mut restored = Vec::new();
        let mut live: Vec<(crate::store::QueueId, crate::store::Location)> = Vec::new();
        for (id, dq) in state.queues.iter() {
            live.extend(dq.messages.values().filter_map(|m| m.loc.map(|l| (*id, l))));
        }
        self.store.recovered(&mut live.into_iter());
        for (id, dq) in state.queues {
            max_id = max_id.max(id.0);
            let ns = ns_of(&dq.namespace);
            let q = self.new_handle(&dq.namespace, &dq.name, id, dq.config);
            {
                let mut core = lock(&q.core);
                let mut fx = Effects::default();
                for (seq, m) in dq.messages {
                    core.restore(
                        seq,
                        m.at,
                        m.message,
                        m.deliveries,
                        m.loc,
                        m.evicted_size,
                        now,
                        &mut fx,
                    );
                }
            }
            write(&ns.queues).insert(dq.name, Arc::clone(&q));
            restored.push(q);
        }
        for (namespace, b) in state.bindings {
            let ns = ns_of(&namespace);
            if let Some(r) = super::read(&ns.routers).get(&b.source) {
                write(r).bind(b.destination, &b.key, b.args);
            }
        }
        drop(namespaces);
        self.next_queue_id.fetch_max(max_id + 1, Ordering::Relaxed);
        for q in &restored {
            let next = lock(&q.core).next_deadline();
            self.schedule(q, next);
        }
        if !restored.is_empty() {
            tracing::info!(queues = restored.len(), "recovered durable state");
        }
        Ok(())
    }
}
