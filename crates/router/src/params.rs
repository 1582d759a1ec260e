//! The parameters of a matched pattern: names borrowed from the router,
//! values borrowed from the request path. Up to eight values live inline,
//! so a lookup allocates nothing for ordinary patterns.

use smallvec::SmallVec;
use std::fmt;

/// Parameter values as collected during matching.
pub(crate) type Values<'a> = SmallVec<[&'a str; 8]>;

/// Named path parameters of the winning route (`{id}` → `"42"`). Values are
/// raw slices of the request path: percent-encoding is left as received.
/// Routes other than patterns have none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params<'a> {
    names: &'a [Box<str>],
    values: Values<'a>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(names: &'a [Box<str>], values: Values<'a>) -> Self {
        debug_assert_eq!(names.len(), values.len());
        Params { names, values }
    }

    /// The value of parameter `name` (`id` for `{id}`, `rest` for `{*rest}`).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.names
            .iter()
            .map(|n| &**n)
            .zip(self.values.iter().copied())
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
