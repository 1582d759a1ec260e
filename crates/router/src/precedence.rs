//! The precedence order between routes, as a sort key. The router sorts the
//! routes by this key once at build time; a route's position in that order
//! (its id) is all the lookup compares. Change the order here and only here
//! (and in the crate docs).

use crate::host::HostCond;
use crate::pattern::SegmentKind;
use std::cmp::Reverse;

/// Rule 1: exact host > wildcard (longer suffix first) > any host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HostRank {
    Exact,
    Wildcard(Reverse<usize>),
    Any,
}

impl HostRank {
    pub(crate) fn of(host: &HostCond) -> Self {
        match host {
            HostCond::Exact(_) => HostRank::Exact,
            HostCond::Wildcard(suffix) => HostRank::Wildcard(Reverse(suffix.len())),
            HostCond::Any => HostRank::Any,
        }
    }
}

/// Rule 2: exact path > pattern with parameters (more literal segments,
/// then segment kinds from the left) > regex > prefix (longer first) > any.
/// Regexes come before prefixes, as in nginx, so that a catch-all prefix
/// (`/`) never hides them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathRank {
    Exact,
    Pattern {
        literals: Reverse<usize>,
        shape: Box<[SegmentKind]>,
    },
    Regex,
    Prefix(Reverse<usize>),
    Any,
}

/// The whole key; the derived order compares the fields top to bottom, so
/// the lowest key wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Precedence {
    pub(crate) host: HostRank,
    pub(crate) path: PathRank,
    /// Rule 3: more header conditions first.
    pub(crate) headers: Reverse<usize>,
    /// Rule 4: a method list first (`false` sorts before `true`).
    pub(crate) any_method: bool,
    /// Rule 5: configuration order.
    pub(crate) index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_compare_literal_before_param_before_catch_all() {
        use SegmentKind::*;
        let pat = |literals, shape: &[SegmentKind]| PathRank::Pattern {
            literals: Reverse(literals),
            shape: shape.into(),
        };
        assert!(pat(1, &[Literal, Param]) < pat(1, &[Param, Literal]));
        assert!(pat(1, &[Literal, Param]) < pat(1, &[Literal, CatchAll]));
        assert!(pat(1, &[Literal, Param]) < pat(1, &[Literal, Param, CatchAll]));
        assert!(pat(2, &[Param, Literal, Literal]) < pat(1, &[Literal, Param, Param]));
        assert!(PathRank::Exact < pat(9, &[Literal, Param]));
        assert!(pat(0, &[CatchAll]) < PathRank::Regex);
        assert!(PathRank::Regex < PathRank::Prefix(Reverse(100)));
        assert!(PathRank::Prefix(Reverse(5)) < PathRank::Prefix(Reverse(4)));
        assert!(PathRank::Prefix(Reverse(1)) < PathRank::Any);
    }
}
