//! The segment trie of the patterns with parameters in one table. A node is
//! a sequence of segment kinds from the root (`/users/{}/posts`); routes sit
//! on the node where their pattern ends, or in its catch-all list. A lookup
//! visits every node the path can reach, each at most once, skipping
//! subtrees whose best route cannot beat what was already found.

use crate::pattern::{Pattern, Segment, split_segment};
use crate::table::{Ids, NONE, Visitor};
// foldhash: keys come from the configuration and requests only query them,
// so a fast, randomly seeded hash is enough (no hash-flooding by inserts).
use foldhash::HashMap;

/// Above this many literal children, a node looks them up in a hash map
/// instead of comparing one by one.
const FEW: usize = 8;

/// A node's literal children.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<str>, u32)>),
    Many(HashMap<Box<str>, u32>),
}

impl Children {
    fn get(&self, segment: &str) -> Option<u32> {
        match self {
            Children::Few(few) => few.iter().find(|(s, _)| **s == *segment).map(|(_, n)| *n),
            Children::Many(many) => many.get(segment).copied(),
        }
    }
}

#[derive(Debug)]
struct Node {
    literals: Children,
    /// The `{param}` child, or `NONE`.
    param: u32,
    /// Routes whose pattern ends here.
    end: Ids,
    /// Routes whose pattern ends with `{*rest}` here.
    catch_all: Ids,
    /// The lowest id in this subtree: nothing below can beat a bound under it.
    min: u32,
    parent: u32,
}

impl Node {
    fn new(parent: u32) -> Node {
        Node {
            literals: Children::Few(Vec::new()),
            param: NONE,
            end: Ids::new(),
            catch_all: Ids::new(),
            min: NONE,
            parent,
        }
    }
}

/// Patterns with parameters, indexed by segment.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    /// Adds route `id` with `pattern`; ids must come in ascending order.
    pub(crate) fn insert(&mut self, pattern: &Pattern, id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::new(NONE));
        }
        let mut node = 0;
        for segment in &pattern.segments {
            node = match segment {
                Segment::Literal(literal) => self.literal_child(node, literal),
                Segment::Param => self.param_child(node),
                Segment::CatchAll => {
                    self.nodes[node as usize].catch_all.push(id);
                    return;
                }
            };
        }
        self.nodes[node as usize].end.push(id);
    }

    fn literal_child(&mut self, node: u32, literal: &str) -> u32 {
        if let Some(child) = self.nodes[node as usize].literals.get(literal) {
            return child;
        }
        let child = self.new_node(node);
        match &mut self.nodes[node as usize].literals {
            Children::Few(few) if few.len() < FEW => few.push((literal.into(), child)),
            Children::Few(few) => {
                let mut many: HashMap<_, _> = few.drain(..).collect();
                many.insert(literal.into(), child);
                self.nodes[node as usize].literals = Children::Many(many);
            }
            Children::Many(many) => {
                many.insert(literal.into(), child);
            }
        }
        child
    }

    fn param_child(&mut self, node: u32) -> u32 {
        match self.nodes[node as usize].param {
            NONE => {
                let child = self.new_node(node);
                self.nodes[node as usize].param = child;
                child
            }
            child => child,
        }
    }

    fn new_node(&mut self, parent: u32) -> u32 {
        self.nodes.push(Node::new(parent));
        (self.nodes.len() - 1) as u32
    }

    /// Computes each subtree's lowest id once every route is in.
    pub(crate) fn finish(&mut self) {
        // Children are created after their parent, so walking backwards
        // completes every child before its parent.
        for i in (0..self.nodes.len()).rev() {
            let node = &mut self.nodes[i];
            let own = node
                .end
                .first()
                .into_iter()
                .chain(node.catch_all.first())
                .copied();
            node.min = own.fold(node.min, u32::min);
            let (min, parent) = (node.min, node.parent);
            if parent != NONE {
                let parent = &mut self.nodes[parent as usize];
                parent.min = parent.min.min(min);
            }
        }
    }

    /// Hands every route whose pattern matches `path` to `v`.
    pub(crate) fn visit<V: Visitor>(&self, path: &str, v: &mut V) {
        if let (false, Some(rest)) = (self.nodes.is_empty(), path.strip_prefix('/')) {
            self.walk(0, Some(rest), v);
        }
    }

    /// `rest` is what follows the `/` after the segments consumed so far, or
    /// `None` once the path is used up.
    fn walk<V: Visitor>(&self, node: u32, rest: Option<&str>, v: &mut V) {
        let node = &self.nodes[node as usize];
        if node.min >= v.bound() {
            return;
        }
        match rest {
            None => v.visit(&node.end),
            Some(rest) => {
                let (head, tail) = split_segment(rest);
                if let Some(child) = node.literals.get(head) {
                    self.walk(child, tail, v);
                }
                if node.param != NONE && !head.is_empty() {
                    self.walk(node.param, tail, v);
                }
            }
        }
        v.visit(&node.catch_all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects every candidate, like the 405 pass.
    struct All(Vec<u32>);
    impl Visitor for All {
        fn bound(&self) -> u32 {
            NONE
        }
        fn visit(&mut self, ids: &[u32]) {
            self.0.extend_from_slice(ids);
        }
    }

    fn trie(patterns: &[&str]) -> Trie {
        let mut trie = Trie::default();
        for (id, p) in patterns.iter().enumerate() {
            trie.insert(&Pattern::parse(p).unwrap(), id as u32);
        }
        trie.finish();
        trie
    }

    fn candidates(trie: &Trie, path: &str) -> Vec<u32> {
        let mut all = All(Vec::new());
        trie.visit(path, &mut all);
        all.0.sort();
        all.0
    }

    #[test]
    fn finds_every_matching_pattern() {
        let t = trie(&[
            "/users/{id}",
            "/{a}/{b}",
            "/users/{id}/posts",
            "/{*all}",
            "/users/{*rest}",
        ]);
        assert_eq!(candidates(&t, "/users/7"), [0, 1, 3, 4]);
        assert_eq!(candidates(&t, "/users/7/posts"), [2, 3, 4]);
        assert_eq!(candidates(&t, "/users"), [3, 4]);
        assert_eq!(candidates(&t, "/users/"), [3, 4]);
        assert_eq!(candidates(&t, "/x/"), [3]);
        assert_eq!(candidates(&t, "/"), [3]);
        assert_eq!(candidates(&t, "x"), [0u32; 0]);
    }

    #[test]
    fn many_literal_children_use_a_map() {
        let patterns: Vec<String> = (0..50).map(|i| format!("/s{i}/{{id}}")).collect();
        let t = trie(&patterns.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(matches!(t.nodes[0].literals, Children::Many(_)));
        assert_eq!(candidates(&t, "/s42/x"), [42]);
        assert_eq!(candidates(&t, "/s50/x"), [0u32; 0]);
    }

    #[test]
    fn subtree_minimum_prunes() {
        struct Bounded(u32, Vec<u32>);
        impl Visitor for Bounded {
            fn bound(&self) -> u32 {
                self.0
            }
            fn visit(&mut self, ids: &[u32]) {
                self.1.extend(ids.iter().filter(|&&id| id < self.0));
            }
        }
        let t = trie(&["/a/{x}", "/b/{x}", "/{y}/c"]);
        assert_eq!(t.nodes[0].min, 0);
        let mut v = Bounded(1, Vec::new());
        t.visit("/b/c", &mut v);
        assert!(v.1.is_empty());
    }
}
