//! The radix tree of path prefixes in one table. A lookup walks the path's
//! bytes down the tree once, remembers the deepest node that carries routes,
//! then climbs `up` links through the shorter matching prefixes: longest
//! first, without allocating or recursing.

use crate::table::{Ids, NONE, Visitor};

#[derive(Debug)]
struct Node {
    /// Bytes from the parent to this node.
    label: Box<[u8]>,
    /// `(first byte of the child's label, child)`, sorted by byte.
    children: Vec<(u8, u32)>,
    /// Routes whose prefix ends exactly here.
    routes: Ids,
    /// The nearest proper ancestor with routes, or `NONE`.
    up: u32,
}

impl Node {
    fn new(label: &[u8]) -> Node {
        Node {
            label: label.into(),
            children: Vec::new(),
            routes: Ids::new(),
            up: NONE,
        }
    }
}

/// Path prefixes, byte-wise.
#[derive(Debug, Default)]
pub(crate) struct PrefixTree {
    nodes: Vec<Node>,
}

impl PrefixTree {
    /// Adds route `id` with `prefix`; ids must come in ascending order.
    pub(crate) fn insert(&mut self, prefix: &[u8], id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::new(b""));
        }
        let (mut node, mut key) = (0usize, prefix);
        loop {
            let Some(&first) = key.first() else {
                self.nodes[node].routes.push(id);
                return;
            };
            let slot = self.nodes[node]
                .children
                .binary_search_by_key(&first, |&(b, _)| b);
            let (i, child) = match slot {
                Ok(i) => (i, self.nodes[node].children[i].1 as usize),
                Err(i) => {
                    let mut leaf = Node::new(key);
                    leaf.routes.push(id);
                    self.nodes.push(leaf);
                    let leaf = (self.nodes.len() - 1) as u32;
                    self.nodes[node].children.insert(i, (first, leaf));
                    return;
                }
            };
            let label = &self.nodes[child].label;
            let common = label.iter().zip(key).take_while(|(a, b)| a == b).count();
            if common < label.len() {
                // Split the child: a new node takes the common part.
                let label = std::mem::take(&mut self.nodes[child].label);
                let mut middle = Node::new(&label[..common]);
                middle.children.push((label[common], child as u32));
                self.nodes[child].label = label[common..].into();
                self.nodes.push(middle);
                let middle = (self.nodes.len() - 1) as u32;
                self.nodes[node].children[i].1 = middle;
                node = middle as usize;
            } else {
                node = child;
            }
            key = &key[common..];
        }
    }

    /// Sets the `up` links once every prefix is in.
    pub(crate) fn finish(&mut self) {
        if self.nodes.is_empty() {
            return;
        }
        let mut stack = vec![(0u32, NONE)];
        while let Some((node, up)) = stack.pop() {
            let node_ref = &mut self.nodes[node as usize];
            node_ref.up = up;
            let below = if node_ref.routes.is_empty() { up } else { node };
            stack.extend(node_ref.children.iter().map(|&(_, child)| (child, below)));
        }
    }

    /// Hands the routes of every prefix of `path` to `v`, longest first.
    pub(crate) fn visit<V: Visitor>(&self, path: &str, v: &mut V) {
        if self.nodes.is_empty() {
            return;
        }
        let path = path.as_bytes();
        let (mut node, mut pos, mut deepest) = (0usize, 0usize, NONE);
        loop {
            if !self.nodes[node].routes.is_empty() {
                deepest = node as u32;
            }
            let Some(&byte) = path.get(pos) else { break };
            let children = &self.nodes[node].children;
            let Ok(i) = children.binary_search_by_key(&byte, |&(b, _)| b) else {
                break;
            };
            let child = children[i].1 as usize;
            let label = &self.nodes[child].label;
            if !path[pos..].starts_with(label) {
                break;
            }
            node = child;
            pos += label.len();
        }
        while deepest != NONE {
            let node = &self.nodes[deepest as usize];
            v.visit(&node.routes);
            deepest = node.up;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Order(Vec<u32>);
    impl Visitor for Order {
        fn bound(&self) -> u32 {
            NONE
        }
        fn visit(&mut self, ids: &[u32]) {
            self.0.extend_from_slice(ids);
        }
    }

    fn tree(prefixes: &[&str]) -> PrefixTree {
        let mut tree = PrefixTree::default();
        for (id, p) in prefixes.iter().enumerate() {
            tree.insert(p.as_bytes(), id as u32);
        }
        tree.finish();
        tree
    }

    fn visit(tree: &PrefixTree, path: &str) -> Vec<u32> {
        let mut order = Order(Vec::new());
        tree.visit(path, &mut order);
        order.0
    }

    #[test]
    fn prefixes_match_bytes_longest_first() {
        let t = tree(&["/api/", "/api", "/", "/api/v1/", "/apix", "/b"]);
        assert_eq!(visit(&t, "/api/v1/users"), [3, 0, 1, 2]);
        assert_eq!(visit(&t, "/apixyz"), [4, 1, 2]);
        assert_eq!(visit(&t, "/ap"), [2]);
        assert_eq!(visit(&t, "/b"), [5, 2]);
        assert_eq!(visit(&t, "x"), [0u32; 0]);
        assert_eq!(visit(&t, ""), [0u32; 0]);
    }

    #[test]
    fn splitting_keeps_routes_on_both_sides() {
        let t = tree(&["/abcdef", "/abcxyz", "/abc", "/ab", "/abc"]);
        assert_eq!(visit(&t, "/abcdefg"), [0, 2, 4, 3]);
        assert_eq!(visit(&t, "/abcxy"), [2, 4, 3]);
        assert_eq!(visit(&t, "/abcxyz"), [1, 2, 4, 3]);
    }

    #[test]
    fn non_ascii_prefixes_compare_bytes() {
        let t = tree(&["/é", "/e"]);
        assert_eq!(visit(&t, "/été"), [0]);
        assert_eq!(visit(&t, "/e"), [1]);
    }
}
