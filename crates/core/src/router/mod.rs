//! Routers (AMQP exchanges, SNS topics): they route a published message to
//! queues and to other routers by key, pattern or headers.

mod headers;
mod topic;

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::{Headers, Message};

use topic::TopicTrie;

/// The default router (AMQP's default exchange): it routes a message to
/// the queue its routing key names. Every namespace has it implicitly; it
/// cannot be declared, deleted or bound.
pub const DEFAULT_ROUTER: &str = "";

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouterKind {
    /// Routing key equals binding key.
    Direct,
    /// Every binding.
    Fanout,
    /// Binding key is a pattern over `.`-separated words (`*`, `#`).
    Topic,
    /// Binding arguments match message headers (`x-match` all/any).
    Headers,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    pub kind: RouterKind,
    pub durable: bool,
    /// Deleted when its last binding (as a source) is removed.
    pub auto_delete: bool,
    /// Publishers may not publish to it directly; only other routers.
    pub internal: bool,
    /// Where messages this router cannot route go.
    pub alternate: Option<String>,
}

impl RouterConfig {
    pub fn new(kind: RouterKind) -> Self {
        RouterConfig {
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            alternate: None,
        }
    }
}

/// What a binding points at. Names are shared (`Arc<str>`) so routing a
/// message copies no strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(Arc<str>),
    Router(Arc<str>),
}

impl Destination {
    pub fn queue(name: &str) -> Self {
        Destination::Queue(Arc::from(name))
    }

    pub fn router(name: &str) -> Self {
        Destination::Router(Arc::from(name))
    }

    pub fn is_queue(&self, name: &str) -> bool {
        matches!(self, Destination::Queue(q) if &**q == name)
    }

    pub fn is_router(&self, name: &str) -> bool {
        matches!(self, Destination::Router(r) if &**r == name)
    }

    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Router(n) => n,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The router messages come from.
    pub source: String,
    pub destination: Destination,
    /// Routing key or pattern (ignored by fanout and headers routers).
    pub key: String,
    /// Binding arguments (the match spec of a headers router).
    pub args: Headers,
}

impl Binding {
    pub fn new(source: &str, destination: Destination, key: &str) -> Self {
        Binding {
            source: source.to_owned(),
            destination,
            key: key.to_owned(),
            args: Headers::new(),
        }
    }

    pub fn with_args(mut self, args: Headers) -> Self {
        self.args = args;
        self
    }
}

/// The matching index of one kind of router.
#[derive(Debug)]
enum Index {
    Direct(HashMap<Box<str>, Vec<Destination>>),
    Fanout(Vec<Destination>),
    Topic(TopicTrie),
    Headers(Vec<(Headers, Destination)>),
}

/// One router's bindings and the index built from them.
#[derive(Debug)]
pub struct Router {
    name: String,
    config: RouterConfig,
    /// Every binding, by (destination, key); a key may be bound with
    /// several argument sets, as AMQP allows.
    bindings: HashMap<(Destination, Box<str>), Vec<Headers>>,
    index: Index,
}

impl Router {
    pub fn new(name: &str, config: RouterConfig) -> Self {
        let index = match config.kind {
            RouterKind::Direct => Index::Direct(HashMap::new()),
            RouterKind::Fanout => Index::Fanout(Vec::new()),
            RouterKind::Topic => Index::Topic(TopicTrie::default()),
            RouterKind::Headers => Index::Headers(Vec::new()),
        };
        Router {
            name: name.to_owned(),
            config,
            bindings: HashMap::new(),
            index,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Adds a binding; false if the same one exists already.
    pub fn bind(&mut self, destination: Destination, key: &str, args: Headers) -> bool {
        let arg_sets = self
            .bindings
            .entry((destination.clone(), key.into()))
            .or_default();
        if arg_sets.contains(&args) {
            return false;
        }
        let first_for_key = arg_sets.is_empty();
        arg_sets.push(args.clone());
        match &mut self.index {
            Index::Direct(map) => {
                if first_for_key {
                    map.entry(key.into()).or_default().push(destination);
                }
            }
            Index::Fanout(list) => {
                if !list.contains(&destination) {
                    list.push(destination);
                }
            }
            Index::Topic(trie) => {
                if first_for_key {
                    trie.insert(key, destination);
                }
            }
            Index::Headers(list) => list.push((args, destination)),
        }
        true
    }

    /// Removes a binding; false if there was none.
    pub fn unbind(&mut self, destination: &Destination, key: &str, args: &Headers) -> bool {
        let map_key = (destination.clone(), Box::<str>::from(key));
        let Some(arg_sets) = self.bindings.get_mut(&map_key) else {
            return false;
        };
        let Some(at) = arg_sets.iter().position(|a| a == args) else {
            return false;
        };
        arg_sets.remove(at);
        let last_for_key = arg_sets.is_empty();
        if last_for_key {
            self.bindings.remove(&map_key);
        }
        match &mut self.index {
            Index::Direct(map) => {
                if last_for_key && let Some(list) = map.get_mut(key) {
                    list.retain(|d| d != destination);
                    if list.is_empty() {
                        map.remove(key);
                    }
                }
            }
            Index::Fanout(list) => {
                let still_bound = self.bindings.keys().any(|(d, _)| d == destination);
                if !still_bound {
                    list.retain(|d| d != destination);
                }
            }
            Index::Topic(trie) => {
                if last_for_key {
                    trie.remove(key, destination);
                }
            }
            Index::Headers(list) => {
                if let Some(i) = list.iter().position(|(a, d)| a == args && d == destination) {
                    list.remove(i);
                }
            }
        }
        true
    }

    /// Removes every binding to `destination` (it was deleted).
    /// Removes every binding to `destination`; returns how many there were.
    pub fn unbind_destination(&mut self, destination: &Destination) -> usize {
        let doomed: Vec<(Box<str>, Vec<Headers>)> = self
            .bindings
            .iter()
            .filter(|((d, _), _)| d == destination)
            .map(|((_, k), a)| (k.clone(), a.clone()))
            .collect();
        let mut removed = 0;
        for (key, arg_sets) in doomed {
            for args in arg_sets {
                removed += usize::from(self.unbind(destination, &key, &args));
            }
        }
        removed
    }

    /// Every binding of this router.
    pub fn bindings(&self) -> Vec<Binding> {
        let mut out: Vec<Binding> = self
            .bindings
            .iter()
            .flat_map(|((dest, key), arg_sets)| {
                arg_sets.iter().map(move |args| Binding {
                    source: self.name.clone(),
                    destination: dest.clone(),
                    key: key.to_string(),
                    args: args.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (a.destination.name(), &a.key).cmp(&(b.destination.name(), &b.key)));
        out
    }

    /// Adds the destinations `msg` goes to (each once) to `out`.
    pub fn route(&self, msg: &Message, out: &mut Vec<Destination>) {
        let mut add = |d: &Destination| {
            if !out.contains(d) {
                out.push(d.clone());
            }
        };
        match &self.index {
            Index::Direct(map) => {
                if let Some(list) = map.get(msg.routing_key.as_str()) {
                    list.iter().for_each(add);
                }
            }
            Index::Fanout(list) => list.iter().for_each(add),
            Index::Topic(trie) => trie.route(&msg.routing_key, out),
            Index::Headers(list) => {
                for (args, d) in list {
                    if headers::matches(args, &msg.headers) {
                        add(d);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(r: &Router, msg: &Message) -> Vec<String> {
        let mut out = Vec::new();
        r.route(msg, &mut out);
        let mut names: Vec<String> = out.iter().map(|d| d.name().to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn direct_routes_by_exact_key() {
        let mut r = Router::new("x", RouterConfig::new(RouterKind::Direct));
        r.bind(Destination::queue("a"), "k1", Headers::new());
        r.bind(Destination::queue("b"), "k1", Headers::new());
        r.bind(Destination::queue("c"), "k2", Headers::new());
        assert_eq!(
            routed(&r, &Message::new("m").with_routing_key("k1")),
            ["a", "b"]
        );
        assert!(routed(&r, &Message::new("m").with_routing_key("k3")).is_empty());
        assert!(r.unbind(&Destination::queue("a"), "k1", &Headers::new()));
        assert!(!r.unbind(&Destination::queue("a"), "k1", &Headers::new()));
        assert_eq!(routed(&r, &Message::new("m").with_routing_key("k1")), ["b"]);
    }

    #[test]
    fn fanout_ignores_keys_and_delivers_once_per_destination() {
        let mut r = Router::new("x", RouterConfig::new(RouterKind::Fanout));
        r.bind(Destination::queue("a"), "k1", Headers::new());
        r.bind(Destination::queue("a"), "k2", Headers::new());
        r.bind(Destination::queue("b"), "", Headers::new());
        assert_eq!(routed(&r, &Message::new("m")), ["a", "b"]);
        r.unbind(&Destination::queue("a"), "k1", &Headers::new());
        assert_eq!(
            routed(&r, &Message::new("m")),
            ["a", "b"],
            "still bound by k2"
        );
        r.unbind(&Destination::queue("a"), "k2", &Headers::new());
        assert_eq!(routed(&r, &Message::new("m")), ["b"]);
    }

    #[test]
    fn headers_router_uses_binding_args() {
        let mut r = Router::new("x", RouterConfig::new(RouterKind::Headers));
        let args: Headers = [("x-match", "any"), ("a", "1"), ("b", "2")]
            .into_iter()
            .collect();
        r.bind(Destination::queue("q"), "", args.clone());
        let yes = Message::new("m").with_header("b", "2");
        let no = Message::new("m").with_header("b", "3");
        assert_eq!(routed(&r, &yes), ["q"]);
        assert!(routed(&r, &no).is_empty());
        assert_eq!(r.bindings().len(), 1);
        r.unbind_destination(&Destination::queue("q"));
        assert!(routed(&r, &yes).is_empty());
    }

    #[test]
    fn topic_with_many_bindings_routes_only_matches() {
        let mut r = Router::new("x", RouterConfig::new(RouterKind::Topic));
        for i in 0..10_000 {
            r.bind(
                Destination::queue(&format!("q{i}")),
                &format!("s{i}.*.x"),
                Headers::new(),
            );
        }
        r.bind(Destination::queue("all"), "#", Headers::new());
        let got = routed(&r, &Message::new("m").with_routing_key("s42.any.x"));
        assert_eq!(got, ["all", "q42"]);
        assert_eq!(r.binding_count(), 10_001);
    }
}
