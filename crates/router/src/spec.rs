//! The public input types: a route as the control plane describes it, and a
//! request as the data plane sees it. Plain data; all checking happens in
//! [`Router::new`](crate::Router::new).

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// One route of the configuration, before validation.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// The host condition; `None` matches any host (and requests without one).
    pub host: Option<HostMatch>,
    /// The path condition; `None` matches any path.
    pub path: Option<PathMatch>,
    /// The allowed methods; empty allows any method.
    pub methods: Vec<Method>,
    /// Header conditions; all must match, values compared byte for byte.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What the route leads to (for the proxy: an upstream pool).
    pub target: T,
}

impl<T> RouteSpec<T> {
    /// A route that matches every request; set the fields to narrow it.
    pub fn new(target: T) -> Self {
        RouteSpec {
            host: None,
            path: None,
            methods: Vec::new(),
            headers: Vec::new(),
            target,
        }
    }
}

/// How a route matches the request's host (case-insensitively, without port
/// and trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this host name or IP literal (`example.com`, `[::1]`).
    Exact(String),
    /// Any name strictly below this suffix: `Wildcard("example.com")` matches
    /// `a.example.com` and `a.b.example.com` but not `example.com`. Written
    /// without the `*.` that the configuration file uses.
    Wildcard(String),
}

/// How a route matches the request path (raw, as received, without query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with these bytes; must start with `/`.
    Prefix(String),
    /// Segment-by-segment pattern: literals, `{name}` for one non-empty
    /// segment, a final `{*name}` for the (possibly empty) remainder.
    Pattern(String),
    /// An unanchored regular expression (`regex` crate syntax).
    Regex(String),
}

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `Host` header or HTTP/2 `:authority`, as received (port and
    /// letter case are dealt with by the router).
    pub host: Option<&'a str>,
    /// The request method.
    pub method: &'a Method,
    /// The path of the request target, without the query (`uri.path()`).
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}
