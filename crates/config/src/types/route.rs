//! Typed routes, their match conditions and their upstream (a pool or a
//! service). Patterns and regexes are kept as
//! validated strings; the router compiles them into its own structures.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue, Method};

/// One `[[route]]`: conditions (all must hold) and where to send requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Unique among named routes; `None` when not given.
    pub name: Option<String>,
    /// Names of the listeners it applies to, never empty: as given, or every
    /// listener in file order when the key is absent.
    pub listeners: Vec<String>,
    /// Host condition; `None`: any host.
    pub host: Option<HostMatch>,
    /// Path condition; `None`: any path.
    pub path: Option<PathMatch>,
    /// Accepted methods, without duplicates; empty: any method.
    pub methods: Vec<Method>,
    /// Headers that must be present with exactly these values, sorted by
    /// name, names unique.
    pub headers: Vec<HeaderMatch>,
    /// The pool or service serving matched requests; a key of
    /// `Config::pools` or `Config::services`.
    pub upstream: Upstream,
}

/// Where a route sends requests: `pool = "NAME"` or `service = "NAME"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// A key of `Config::pools`.
    Pool(String),
    /// A key of `Config::services`.
    Service(String),
}

impl Upstream {
    /// The pool or service name.
    pub fn name(&self) -> &str {
        match self {
            Upstream::Pool(name) | Upstream::Service(name) => name,
        }
    }

    /// The key in `Config::pools` of the pool that serves this route: the
    /// pool itself, or for a service the pool `service:NAME` that the deploy
    /// engine adds to the config it hands to the proxy (names from the file
    /// never contain `:`, so the two cannot clash).
    pub fn pool_name(&self) -> Cow<'_, str> {
        match self {
            Upstream::Pool(name) => Cow::Borrowed(name),
            Upstream::Service(name) => Cow::Owned(super::service_pool_name(name)),
        }
    }
}

/// How a route matches the request's host (compared without its port,
/// case-insensitively; the strings here are lower case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// This host exactly (`api.example.com`, `127.0.0.1`, `[::1]`).
    Exact(String),
    /// `*.example.com`, stored as the suffix with its leading dot
    /// (`.example.com`): matches a host that ends with the suffix and has at
    /// least one more character before it, so one label or more
    /// (`a.example.com`, `a.b.example.com`), never `example.com` itself.
    Wildcard(String),
}

impl HostMatch {
    /// Whether `host` (lower case, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(exact) => host == exact,
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// How a route matches the request path (never the query string).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The path starts with this string, which starts with `/`.
    Prefix(String),
    /// A pattern starting with `/`: literal segments, `{name}` segments
    /// (one segment, non-empty) and optionally a last `{*name}` (the rest of
    /// the path). Parameter names are unique identifiers (`[A-Za-z_][A-Za-z0-9_]*`).
    Pattern(String),
    /// A regular expression that compiles with the `regex` crate, searched
    /// in the path (unanchored unless it says `^`/`$`).
    Regex(String),
}

/// A header condition: the request has header `name` with value `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Header name (lower case).
    pub name: HeaderName,
    /// Exact value.
    pub value: HeaderValue,
}
