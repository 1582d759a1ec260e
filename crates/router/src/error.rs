//! Why a route table could not be built. Every error names the index of the
//! route in the list given to [`Router::new`](crate::Router::new), which
//! reports all of them, not just the first.

/// One reason why a route is invalid.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The host condition is not a usable host name.
    #[error("route {route}: could not use host `{host}`: {reason}")]
    Host {
        /// Index of the route.
        route: usize,
        /// The host as given.
        host: String,
        /// What is wrong with it.
        reason: HostError,
    },
    /// The path pattern does not parse.
    #[error("route {route}: could not parse path pattern `{pattern}`: {reason}")]
    Pattern {
        /// Index of the route.
        route: usize,
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: PatternError,
    },
    /// The path prefix does not start with `/`.
    #[error("route {route}: could not use path prefix `{prefix}`: it must start with `/`")]
    Prefix {
        /// Index of the route.
        route: usize,
        /// The prefix as given.
        prefix: String,
    },
    /// The path regex does not compile.
    #[error("route {route}: could not compile path regex `{regex}`")]
    Regex {
        /// Index of the route.
        route: usize,
        /// The regex as given.
        regex: String,
        /// The compiler's explanation.
        #[source]
        source: regex::Error,
    },
}

impl BuildError {
    /// Index of the offending route in the list given to `Router::new`.
    pub fn route(&self) -> usize {
        match self {
            BuildError::Host { route, .. }
            | BuildError::Pattern { route, .. }
            | BuildError::Prefix { route, .. }
            | BuildError::Regex { route, .. } => *route,
        }
    }
}

/// What is wrong with a host condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing left after removing the trailing dot.
    #[error("it is empty")]
    Empty,
    /// `host:port`: the router ignores request ports, so this could never match.
    #[error("it has a port, but ports are not part of host matching")]
    Port,
    /// A character that cannot appear in a host name.
    #[error("it contains {0:?}")]
    BadChar(char),
    /// An empty label (`a..b`, or a leading dot).
    #[error("it has an empty label")]
    EmptyLabel,
    /// `Wildcard("*.example.com")`: the `*.` belongs to the file syntax only.
    #[error("a wildcard is written as its suffix, without `*.`")]
    WildcardStar,
    /// `Wildcard("[::1]")`: IP literals have no names below them.
    #[error("an IP literal cannot be a wildcard suffix")]
    WildcardLiteral,
}

/// What is wrong with a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are matched against paths, which start with `/`.
    #[error("it must start with `/`")]
    NoLeadingSlash,
    /// `{}` or `{*}`.
    #[error("a parameter has no name")]
    EmptyName,
    /// A name with characters other than ASCII letters, digits, `_` and `-`.
    #[error("parameter name `{0}` may only contain ASCII letters, digits, `_` and `-`")]
    BadName(String),
    /// The same name twice in one pattern.
    #[error("parameter `{0}` appears twice")]
    DuplicateName(String),
    /// `{*rest}` followed by more segments.
    #[error("the catch-all `{{*{0}}}` must be the last segment")]
    CatchAllNotLast(String),
    /// A brace inside a literal segment, such as `/file.{ext}`.
    #[error("segment `{0}` mixes text and braces; a parameter must be a whole segment")]
    PartialSegment(String),
}
