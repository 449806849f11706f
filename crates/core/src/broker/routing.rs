//! Routers of the broker: declare, bind, publish, and dead-letter routing.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::message::{DeathReason, Message};
use crate::queue::{DeadLetter, DeadLetterTarget, Dying};
use crate::router::{Binding, DEFAULT_ROUTER, Destination, Router, RouterConfig};
use crate::store::{Commit, Record};

use super::{Broker, Namespace, QueueHandle, read, write};

/// Dead letters that dead-letter again stop after this many hops.
const MAX_DEAD_LETTER_HOPS: u32 = 8;
/// Router-to-router chains longer than this are not followed.
const MAX_ROUTER_HOPS: usize = 32;

/// The outcome of publishing to a router.
#[derive(Debug)]
pub struct Published {
    /// How many queues took the message; 0: unroutable (report it back to
    /// a mandatory publisher).
    pub queues: usize,
    /// How many of them refused it (full with reject-publish).
    pub refused: usize,
    pub commit: Commit,
}

impl Broker {
    /// Creates a router, or accepts a redeclaration with the same settings.
    /// Returns true if it was created, and when the router is durable (a
    /// redeclaration waits for everything journaled before it: the first
    /// declaration may be a moment old).
    pub fn declare_router(
        &self,
        namespace: &str,
        name: &str,
        config: RouterConfig,
    ) -> CoreResult<(bool, Commit)> {
        if name == DEFAULT_ROUTER {
            return Err(CoreError::DefaultRouter);
        }
        let ns = self.namespace(namespace)?;
        let mut map = write(&ns.routers);
        if let Some(r) = map.get(name) {
            return if read(r).config() == &config {
                Ok((false, self.barrier_if(config.durable)))
            } else {
                Err(CoreError::RouterExists {
                    name: name.to_owned(),
                })
            };
        }
        let commit = if config.durable {
            self.append(&mut vec![Record::RouterDeclared {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                config: config.clone(),
            }])
        } else {
            Commit::done()
        };
        // Refused by the store: it never existed.
        if let Some(Err(e)) = commit.outcome() {
            return Err(CoreError::Storage(e));
        }
        map.insert(
            name.to_owned(),
            Arc::new(std::sync::RwLock::new(Router::new(name, config))),
        );
        Ok((true, commit))
    }

    pub fn router_config(&self, namespace: &str, name: &str) -> CoreResult<RouterConfig> {
        let ns = self.namespace(namespace)?;
        let r = self.router(&ns, name)?;
        let cfg = read(&r).config().clone();
        Ok(cfg)
    }

    fn router(&self, ns: &Namespace, name: &str) -> CoreResult<Arc<std::sync::RwLock<Router>>> {
        read(&ns.routers)
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::RouterNotFound(name.to_owned()))
    }

    pub fn router_names(&self, namespace: &str) -> CoreResult<Vec<String>> {
        let mut v: Vec<String> = read(&self.namespace(namespace)?.routers)
            .keys()
            .cloned()
            .collect();
        v.sort();
        Ok(v)
    }

    /// Deletes a router and every binding from or to it; durable once the
    /// commit is. With `if_unused`, fails if it has bindings as a source.
    pub fn delete_router(
        &self,
        namespace: &str,
        name: &str,
        if_unused: bool,
    ) -> CoreResult<Commit> {
        let ns = self.namespace(namespace)?;
        let r = self.router(&ns, name)?;
        if if_unused && read(&r).binding_count() > 0 {
            return Err(CoreError::QueueInUse(name.to_owned()));
        }
        let durable = read(&r).config().durable;
        if write(&ns.routers).remove(name).is_none() {
            // Deleted meanwhile by another: that deletion is before now.
            return Ok(self.barrier_if(durable));
        }
        Ok(self.router_removed(&ns, namespace, name, durable))
    }

    /// What follows a router's removal from its namespace: its record, and
    /// the bindings to it everywhere (with the auto-deletions they cause).
    fn router_removed(&self, ns: &Namespace, namespace: &str, name: &str, durable: bool) -> Commit {
        let commit = if durable {
            self.append(&mut vec![Record::RouterDeleted {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }])
        } else {
            Commit::done()
        };
        commit.and(self.unbind_everywhere(ns, namespace, &Destination::router(name)))
    }

    /// Deletes auto-delete router `r` (named `name`) if it still is the
    /// router of that name and still has no bindings, both checked under
    /// the namespace's lock: a bind that came in meanwhile keeps it.
    fn delete_if_emptied(
        &self,
        ns: &Namespace,
        namespace: &str,
        name: &str,
        r: &Arc<std::sync::RwLock<Router>>,
    ) -> Commit {
        let durable = {
            let mut map = write(&ns.routers);
            match map.get(name) {
                Some(current) if Arc::ptr_eq(current, r) && read(r).binding_count() == 0 => {
                    map.remove(name);
                    read(r).config().durable
                }
                _ => return Commit::done(),
            }
        };
        self.router_removed(ns, namespace, name, durable)
    }

    /// Removes every binding to `dest` (a router or queue going away). An
    /// auto-delete router that loses its last binding so goes too, as in
    /// RabbitMQ, and so on down the chain. Returns when the deletions are
    /// durable.
    pub(super) fn unbind_everywhere(
        &self,
        ns: &Namespace,
        namespace: &str,
        dest: &Destination,
    ) -> Commit {
        let routers: Vec<_> = read(&ns.routers).values().cloned().collect();
        let mut emptied = Vec::new();
        for arc in routers {
            let mut r = write(&arc);
            if r.unbind_destination(dest) > 0 && r.config().auto_delete && r.binding_count() == 0 {
                emptied.push((r.name().to_owned(), Arc::clone(&arc)));
            }
        }
        let mut commit = Commit::done();
        for (name, r) in emptied {
            commit = commit.and(self.delete_if_emptied(ns, namespace, &name, &r));
        }
        commit
    }

    /// Removes every binding to `dest` in `namespace` (a stream going
    /// away: queues and routers do this themselves). Returns when that is
    /// durable.
    pub fn unbind_destination(&self, namespace: &str, dest: &Destination) -> CoreResult<Commit> {
        let ns = self.namespace(namespace)?;
        let routers: Vec<_> = read(&ns.routers).values().cloned().collect();
        let mut commit = Commit::done();
        for r in routers {
            let bindings: Vec<Binding> = read(&r)
                .bindings()
                .into_iter()
                .filter(|b| b.destination == *dest)
                .collect();
            // Each journaled as a client's unbind is, so a restart does not
            // bring it back.
            for b in bindings {
                if let Ok((_, c)) = self.unbind(namespace, b) {
                    commit = commit.and(c);
                }
            }
        }
        Ok(commit)
    }

    /// Adds a binding; both ends must exist. Returns false if it existed,
    /// and when the binding is durable.
    pub fn bind(&self, namespace: &str, binding: Binding) -> CoreResult<(bool, Commit)> {
        let ns = self.namespace(namespace)?;
        let source = self.router(&ns, &binding.source)?;
        let dest_durable = self.destination_durable(&ns, &binding.destination)?;
        let added = write(&source).bind(
            binding.destination.clone(),
            &binding.key,
            binding.args.clone(),
        );
        let durable = dest_durable && read(&source).config().durable;
        let commit = if added && durable {
            self.append(&mut vec![Record::Bound {
                namespace: namespace.to_owned(),
                binding,
            }])
        } else {
            self.barrier_if(durable)
        };
        Ok((added, commit))
    }

    /// Removes a binding. Returns false if there was none, and when the
    /// removal is durable (with the source's auto-deletion it caused).
    pub fn unbind(&self, namespace: &str, binding: Binding) -> CoreResult<(bool, Commit)> {
        let ns = self.namespace(namespace)?;
        let source = self.router(&ns, &binding.source)?;
        let removed = write(&source).unbind(&binding.destination, &binding.key, &binding.args);
        let (durable, now_unused) = {
            let r = read(&source);
            (
                r.config().durable,
                r.config().auto_delete && r.binding_count() == 0,
            )
        };
        let mut commit = if removed && durable {
            self.append(&mut vec![Record::Unbound {
                namespace: namespace.to_owned(),
                binding: binding.clone(),
            }])
        } else {
            self.barrier_if(durable)
        };
        if removed && now_unused {
            commit = commit.and(self.delete_if_emptied(&ns, namespace, &binding.source, &source));
        }
        Ok((removed, commit))
    }

    pub fn bindings(&self, namespace: &str, router: &str) -> CoreResult<Vec<Binding>> {
        let ns = self.namespace(namespace)?;
        let r = self.router(&ns, router)?;
        let b = read(&r).bindings();
        Ok(b)
    }

    fn destination_durable(&self, ns: &Namespace, d: &Destination) -> CoreResult<bool> {
        Ok(match d {
            Destination::Queue(q) => {
                // A stream is always durable.
                let queued = read(&ns.queues).contains_key(&**q);
                if !queued && self.stream(ns.name(), q).is_some() {
                    return Ok(true);
                }
                let q = read(&ns.queues)
                    .get(&**q)
                    .cloned()
                    .ok_or_else(|| CoreError::QueueNotFound(q.to_string()))?;
                let c = q.config();
                c.durable && c.exclusive_owner.is_none()
            }
            Destination::Router(r) => {
                let r = self.router(ns, r)?;
                read(&r).config().durable
            }
        })
    }

    /// Publishes to a router: the message goes to every queue the router
    /// (and the routers bound to it, and alternates) routes it to.
    pub fn publish(
        &self,
        namespace: &str,
        router: &str,
        mut msg: Message,
    ) -> CoreResult<Published> {
        let ns = self.namespace(namespace)?;
        if router != DEFAULT_ROUTER {
            let r = self.router(&ns, router)?;
            if read(&r).config().internal {
                return Err(CoreError::InternalRouter(router.to_owned()));
            }
        }
        let mut queues = Vec::new();
        self.route(&ns, router, &msg, &mut Vec::new(), &mut queues);
        self.stamp_for_publish(&mut msg, router);
        let msg = Arc::new(msg);
        let mut published = Published {
            queues: 0,
            refused: 0,
            commit: Commit::done(),
        };
        for name in queues {
            let Some(q) = read(&ns.queues).get(&*name).cloned() else {
                if let Some(s) = self.stream(namespace, &name) {
                    published.queues += 1;
                    let now = msg.published_at.as_millis() as i64;
                    match s.append_message(&msg, now) {
                        Ok(a) => published.commit = published.commit.and(a.commit),
                        Err(e) => {
                            tracing::debug!(namespace, stream = %name, error = %e, "stream refused a routed message");
                            published.refused += 1;
                        }
                    }
                }
                continue;
            };
            published.queues += 1;
            match self.enqueue_existing(&q, Arc::clone(&msg), false, 0, &mut None) {
                Ok((_, c)) => published.commit = published.commit.and(c),
                Err(CoreError::QueueFull(_)) => published.refused += 1,
                Err(_) => published.queues -= 1,
            }
        }
        Ok(published)
    }

    fn stamp_for_publish(&self, msg: &mut Message, router: &str) {
        self.stamp(msg, self.clock.now());
        // The default router is no router (and costs no allocation).
        if router == DEFAULT_ROUTER {
            msg.router = None;
        } else if msg.router.as_deref() != Some(router) {
            msg.router = Some(router.to_owned());
        }
    }

    /// Collects the queues `msg` goes to from `router`, following bindings
    /// to other routers and alternates. `path` holds the routers on the way
    /// here, so a cycle ends; a router reached twice by different ways
    /// (a diamond) routes both times and its queues are listed once.
    /// Returns how many destinations were reached (0: unroutable here).
    fn route(
        &self,
        ns: &Namespace,
        router: &str,
        msg: &Message,
        path: &mut Vec<String>,
        queues: &mut Vec<Arc<str>>,
    ) -> usize {
        if path.iter().any(|v| v == router) || path.len() >= MAX_ROUTER_HOPS {
            return 0;
        }
        if router == DEFAULT_ROUTER {
            let key = msg.routing_key.as_str();
            // The queues' guard goes before the streams' lock is taken.
            let queued = read(&ns.queues).contains_key(key);
            if !queued && self.stream(ns.name(), key).is_none() {
                return 0;
            }
            if !queues.iter().any(|q| &**q == key) {
                queues.push(Arc::from(key));
            }
            return 1;
        }
        let Ok(r) = self.router(ns, router) else {
            return 0;
        };
        path.push(router.to_owned());
        let mut dests = Vec::new();
        let alternate = {
            let r = read(&r);
            r.route(msg, &mut dests);
            r.config().alternate.clone()
        };
        let mut reached = 0;
        for d in dests {
            match d {
                Destination::Queue(q) => {
                    reached += 1;
                    if !queues.contains(&q) {
                        queues.push(q);
                    }
                }
                Destination::Router(next) => {
                    reached += self.route(ns, &next, msg, path, queues);
                }
            }
        }
        if reached == 0
            && let Some(alt) = alternate
        {
            reached += self.route(ns, &alt, msg, path, queues);
        }
        path.pop();
        reached
    }

    /// Delivers dead letters from `source` to their targets, then journals
    /// their removal from the source.
    pub(super) fn dead_letter(
        &self,
        source: &Arc<QueueHandle>,
        letters: Vec<DeadLetter>,
        depth: u32,
    ) {
        let Ok(ns) = self.namespace(&source.namespace) else {
            return;
        };
        for dl in letters {
            let mut removal = dl.removal;
            if matches!(dl.target, DeadLetterTarget::Discard) {
                // Nowhere to go: dropped, unread (an evicted one stays on
                // disk only until its removal is durable).
                if let Some(r) = removal {
                    let _unanswered = self.append(&mut vec![r]);
                }
                continue;
            }
            let mut msg = match dl.message {
                Dying::Marked(m) => *m,
                // Read back here, with the source's lock released.
                Dying::InStore { loc, reason, at } => match self.store.load(loc) {
                    Ok(m) => m.dead_lettered(&source.name, reason, at),
                    Err(err) => {
                        // Its removal is not journaled: a restart brings it
                        // back to its source rather than lose it.
                        tracing::error!(queue = %source.name, error = %err, "a dying evicted message could not be read back to dead-letter it; its journal record is kept");
                        continue;
                    }
                },
            };
            let targets: Vec<Arc<str>> = match &dl.target {
                DeadLetterTarget::Queue(q) => vec![Arc::from(q.as_str())],
                DeadLetterTarget::Router {
                    router,
                    routing_key,
                } => {
                    if let Some(k) = routing_key {
                        msg.routing_key = k.clone();
                    }
                    let mut queues = Vec::new();
                    self.route(&ns, router, &msg, &mut Vec::new(), &mut queues);
                    queues
                }
                DeadLetterTarget::Discard => Vec::new(),
            };
            // RabbitMQ's rule: a message dead-lettered into a queue it already
            // died in, with no rejection anywhere in its history, would go
            // round for ever (TTL loops): drop it.
            let automatic = msg.deaths.iter().all(|d| d.reason != DeathReason::Rejected);
            let msg = Arc::new(msg);
            for t in targets {
                let cycle = automatic && msg.deaths.iter().any(|d| *d.queue == *t);
                if cycle || depth >= MAX_DEAD_LETTER_HOPS {
                    tracing::warn!(queue = %source.name, target = %t, "dropping dead letter that would cycle");
                    continue;
                }
                // Looked up first, so the queues' guard is gone before a
                // stream append below.
                let queue = read(&ns.queues).get(&*t).cloned();
                let Some(q) = queue else {
                    if let Some(s) = self.stream(&source.namespace, &t) {
                        self.dead_letter_into_stream(&s, &msg, &mut removal, source);
                        continue;
                    }
                    tracing::debug!(queue = %source.name, target = %t, "dead-letter target does not exist; dropped");
                    continue;
                };
                // The source's removal rides with the first accepted copy.
                if let Err(e) =
                    self.enqueue_existing(&q, Arc::clone(&msg), true, depth + 1, &mut removal)
                {
                    tracing::warn!(queue = %source.name, target = %t, error = %e, "dead letter refused by its target");
                }
            }
            // No target took it: it is dropped, as its policy says.
            if let Some(r) = removal {
                // Dead-lettering answers nobody: a crash before this is
                // durable brings the message back to its source.
                let _unanswered = self.append(&mut vec![r]);
            }
        }
    }

    /// Appends a dead letter to a stream (RabbitMQ lets a stream be a
    /// dead-letter target). The stream's log commits apart from the
    /// journal, so the source's removal, if this copy carries it, waits in
    /// `stream_removals` until the append is durable: a crash in between
    /// leaves the message in both, never in neither.
    fn dead_letter_into_stream(
        &self,
        stream: &crate::stream::Stream,
        msg: &Message,
        removal: &mut Option<Record>,
        source: &QueueHandle,
    ) {
        let now = self.clock.now().as_millis() as i64;
        match stream.append_message(msg, now) {
            Ok(a) => {
                if let Some(r) = removal.take() {
                    super::lock(&self.stream_removals).push((a.commit, r));
                    self.wake_timers();
                }
            }
            Err(e) => {
                tracing::warn!(queue = %source.name, stream = %stream.name(), error = %e, "dead letter refused by its stream");
            }
        }
    }

    /// Journals the removals of dead letters whose stream appends are now
    /// durable. One whose append failed keeps its journal record: a
    /// restart brings the message back to its source. Whether any wait.
    /// The timer task calls it; shutdown once more, after the streams'
    /// logs closed and before the journal does.
    pub fn settle_stream_removals(&self) -> bool {
        let mut ready = Vec::new();
        let waiting = {
            let mut pending = super::lock(&self.stream_removals);
            pending.retain(|(commit, record)| match commit.outcome() {
                None => true,
                Some(Ok(())) => {
                    ready.push(record.clone());
                    false
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a dead letter's stream append failed; its source keeps it on disk");
                    false
                }
            });
            !pending.is_empty()
        };
        if !ready.is_empty() {
            // Dead-lettering answers nobody (as in `dead_letter`).
            let _unanswered = self.append(&mut ready);
        }
        waiting
    }
}
