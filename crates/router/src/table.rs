//! The route table of one host condition (one exact host, one wildcard
//! suffix, or "any host"): an index per kind of path condition, visited in
//! precedence order. It hands candidate route ids to a [`Visitor`]; deciding
//! between them (method, headers, best id) is the visitor's business.

use crate::prefix::PrefixTree;
use crate::route::{PathCond, Route};
use crate::trie::Trie;
use regex::RegexSet;
use smallvec::{SmallVec, smallvec};
// foldhash: keys come from the configuration and requests only query them,
// so a fast, randomly seeded hash is enough (no hash-flooding by inserts).
use foldhash::HashMap;

/// "No route": larger than every id.
pub(crate) const NONE: u32 = u32::MAX;

/// Route ids, ascending. Most lists hold one or two, which then live inline
/// (a `SmallVec` of four `u32` is as big as a `Vec`), saving a pointer chase.
pub(crate) type Ids = SmallVec<[u32; 4]>;

/// Above this many regex routes in one table, a `RegexSet` first checks
/// whether any of them matches, so a miss costs one scan of the path.
const REGEX_GATE: usize = 4;

/// Receives the routes whose host and path match a request.
pub(crate) trait Visitor {
    /// Routes with an id at or above this cannot change the answer; the
    /// indexes skip them. `NONE` while nothing has been found.
    fn bound(&self) -> u32;
    /// Candidates, ids ascending (i.e. in precedence order).
    fn visit(&mut self, ids: &[u32]);
}

/// All routes of one host condition. Ids are positions in the router's
/// precedence-sorted route list, so lower is better.
#[derive(Debug, Default)]
pub(crate) struct Table {
    exact: HashMap<Box<str>, Ids>,
    patterns: Trie,
    prefixes: PrefixTree,
    regexes: Vec<u32>,
    regex_gate: Option<RegexSet>,
    any: Ids,
}

impl Table {
    /// Adds a route; ids must be inserted in ascending order.
    pub(crate) fn insert<T>(&mut self, id: u32, route: &Route<T>) {
        match &route.path {
            PathCond::Any => self.any.push(id),
            PathCond::Exact(path) => match self.exact.get_mut(path) {
                Some(ids) => ids.push(id),
                None => {
                    self.exact.insert(path.clone(), smallvec![id]);
                }
            },
            PathCond::Pattern(pattern) => self.patterns.insert(pattern, id),
            PathCond::Prefix(prefix) => self.prefixes.insert(prefix.as_bytes(), id),
            PathCond::Regex(_) => self.regexes.push(id),
        }
    }

    /// Completes the indexes once every route is in.
    pub(crate) fn finish<T>(&mut self, routes: &[Route<T>]) {
        self.patterns.finish();
        self.prefixes.finish();
        if self.regexes.len() > REGEX_GATE {
            let sources = self
                .regexes
                .iter()
                .filter_map(|&id| match &routes[id as usize].path {
                    PathCond::Regex(regex) => Some(regex.as_str()),
                    _ => None,
                });
            // Each regex compiled on its own; should the set exceed the size
            // limit, the table simply works without the gate.
            self.regex_gate = RegexSet::new(sources).ok();
        }
    }

    /// Hands every route of this table whose path matches to `v`, in
    /// precedence classes: exact path, patterns, regexes, prefixes (longest
    /// first), any path.
    pub(crate) fn visit<T, V: Visitor>(&self, routes: &[Route<T>], path: &str, v: &mut V) {
        // Every id of a class is lower than every id of the next class, so
        // once something is found no later class can beat it.
        if let Some(ids) = self.exact.get(path) {
            v.visit(ids);
        }
        if v.bound() != NONE {
            return;
        }
        self.patterns.visit(path, v);
        if v.bound() != NONE {
            return;
        }
        self.visit_regexes(routes, path, v);
        if v.bound() != NONE {
            return;
        }
        self.prefixes.visit(path, v);
        if v.bound() != NONE {
            return;
        }
        v.visit(&self.any);
    }

    fn visit_regexes<T, V: Visitor>(&self, routes: &[Route<T>], path: &str, v: &mut V) {
        if self.regexes.is_empty()
            || self
                .regex_gate
                .as_ref()
                .is_some_and(|set| !set.is_match(path))
        {
            return;
        }
        for &id in &self.regexes {
            if id >= v.bound() {
                break;
            }
            let PathCond::Regex(regex) = &routes[id as usize].path else {
                continue;
            };
            if regex.is_match(path) {
                v.visit(&[id]);
            }
        }
    }
}
