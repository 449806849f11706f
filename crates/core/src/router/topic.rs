//! Topic matching: a trie over `.`-separated words, where `*` matches one
//! word and `#` zero or more. Matching walks only the branches a key can
//! take, so its cost depends on the key and the wildcards, not on the
//! number of bindings.

use std::collections::HashMap;

use super::Destination;

#[derive(Debug, Default)]
pub(super) struct TopicTrie {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    words: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// Destinations bound with the pattern that ends here.
    destinations: Vec<Destination>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.destinations.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }

    fn child_mut(&mut self, word: &str) -> &mut Node {
        match word {
            "*" => self.star.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            w => self.words.entry(w.into()).or_default(),
        }
    }

    /// Removes `dest` bound at the end of `pattern`; true if this node is now empty.
    fn remove(&mut self, pattern: Option<&str>, dest: &Destination) -> bool {
        match pattern {
            None => self.destinations.retain(|d| d != dest),
            Some(p) => {
                let (word, rest) = split_word(p);
                let child = match word {
                    "*" => self.star.as_deref_mut(),
                    "#" => self.hash.as_deref_mut(),
                    w => self.words.get_mut(w),
                };
                if let Some(child) = child
                    && child.remove(rest, dest)
                {
                    match word {
                        "*" => self.star = None,
                        "#" => self.hash = None,
                        w => {
                            self.words.remove(w);
                        }
                    }
                }
            }
        }
        self.is_empty()
    }

    /// Adds every destination whose pattern matches the words of `key`.
    fn collect(&self, key: Option<&str>, out: &mut Vec<Destination>) {
        match key {
            None => out.extend(self.destinations.iter().cloned()),
            Some(k) => {
                let (word, rest) = split_word(k);
                if let Some(child) = self.words.get(word) {
                    child.collect(rest, out);
                }
                if let Some(star) = &self.star {
                    star.collect(rest, out);
                }
            }
        }
        if let Some(hash) = &self.hash {
            // `#` swallows zero, one, ... or all remaining words.
            let mut rest = key;
            loop {
                hash.collect(rest, out);
                match rest {
                    None => break,
                    Some(r) => rest = split_word(r).1,
                }
            }
        }
    }
}

fn split_word(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((w, rest)) => (w, Some(rest)),
        None => (s, None),
    }
}

/// `#.#` matches what `#` matches; collapsing runs of `#` keeps matching
/// from going exponential on patterns like `#.#.#.#.#`.
fn normalize(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains("#.#") {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut words: Vec<&str> = Vec::new();
    for w in pattern.split('.') {
        if w == "#" && words.last() == Some(&"#") {
            continue;
        }
        words.push(w);
    }
    std::borrow::Cow::Owned(words.join("."))
}

impl TopicTrie {
    pub(super) fn insert(&mut self, pattern: &str, dest: Destination) {
        let pattern = normalize(pattern);
        let mut node = &mut self.root;
        let mut rest = Some(&*pattern);
        while let Some(p) = rest {
            let (word, tail) = split_word(p);
            node = node.child_mut(word);
            rest = tail;
        }
        if !node.destinations.contains(&dest) {
            node.destinations.push(dest);
        }
    }

    pub(super) fn remove(&mut self, pattern: &str, dest: &Destination) {
        self.root.remove(Some(&normalize(pattern)), dest);
    }

    /// Adds each matching destination once (several patterns, or `#`
    /// taking different numbers of words, may reach the same one).
    pub(super) fn route(&self, key: &str, out: &mut Vec<Destination>) {
        let start = out.len();
        self.root.collect(Some(key), out);
        if out.len() - start > 1 {
            if start == 0 {
                out.sort_unstable();
                out.dedup();
            } else {
                let mut found = out.split_off(start);
                found.sort_unstable();
                found.dedup();
                out.append(&mut found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let mut t = TopicTrie::default();
        t.insert(pattern, Destination::queue("q"));
        let mut out = Vec::new();
        t.route(key, &mut out);
        !out.is_empty()
    }

    #[test]
    fn wildcards() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*.c", "a.x.c"));
        assert!(!matches("a.*.c", "a.x.y.c"));
        assert!(matches("a.#", "a"));
        assert!(matches("a.#", "a.b.c"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("#.c", "a.b.c"));
        assert!(matches("a.#.c", "a.c"));
        assert!(matches("a.#.c", "a.b.b.c"));
        assert!(!matches("a.#.c", "a.b.d"));
        assert!(matches("*.#", "a"));
        assert!(!matches("*.*", "a"));
        assert!(matches("#.#", "a.b"));
        assert!(matches("#.#.#", ""));
        assert!(matches("a.#.#.b", "a.b"));
        assert_eq!(normalize("#.#.a.#.#"), "#.a.#");
    }

    #[test]
    fn removal_prunes_and_keeps_others() {
        let mut t = TopicTrie::default();
        t.insert("a.*", Destination::queue("q1"));
        t.insert("a.*", Destination::queue("q2"));
        t.remove("a.*", &Destination::queue("q1"));
        let mut out = Vec::new();
        t.route("a.b", &mut out);
        assert_eq!(out, vec![Destination::queue("q2")]);
        t.remove("a.*", &Destination::queue("q2"));
        assert!(t.root.is_empty());
    }

    #[test]
    fn a_destination_reached_twice_is_listed_once() {
        let mut t = TopicTrie::default();
        t.insert("a.*", Destination::queue("q"));
        t.insert("#", Destination::queue("q"));
        let mut out = Vec::new();
        t.route("a.b", &mut out);
        assert_eq!(out.len(), 1);
    }
}
