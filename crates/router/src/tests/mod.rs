//! Tests of the router as a whole, through the public API: precedence rules,
//! lookups, build errors, and the equivalence of the index with a naive
//! linear scan written from the documentation alone (`naive`). Tests of a
//! single matcher live next to it (`host`, `pattern`, `trie`, `prefix`).

mod build;
mod equivalence;
mod generate;
mod lookup;
mod naive;
mod precedence;

use crate::{HostMatch, Match, PathMatch, Request, RouteSpec, Router};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Builder-style helpers for route specs in tests.
trait SpecExt: Sized {
    fn exact(self, host: &str) -> Self;
    fn wildcard(self, suffix: &str) -> Self;
    fn prefix(self, prefix: &str) -> Self;
    fn pattern(self, pattern: &str) -> Self;
    fn regex(self, regex: &str) -> Self;
    fn methods(self, methods: &[Method]) -> Self;
    fn header(self, name: &'static str, value: &'static str) -> Self;
}

impl<T> SpecExt for RouteSpec<T> {
    fn exact(mut self, host: &str) -> Self {
        self.host = Some(HostMatch::Exact(host.into()));
        self
    }
    fn wildcard(mut self, suffix: &str) -> Self {
        self.host = Some(HostMatch::Wildcard(suffix.into()));
        self
    }
    fn prefix(mut self, prefix: &str) -> Self {
        self.path = Some(PathMatch::Prefix(prefix.into()));
        self
    }
    fn pattern(mut self, pattern: &str) -> Self {
        self.path = Some(PathMatch::Pattern(pattern.into()));
        self
    }
    fn regex(mut self, regex: &str) -> Self {
        self.path = Some(PathMatch::Regex(regex.into()));
        self
    }
    fn methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        let name = HeaderName::from_static(name);
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}

/// `RouteSpec::new(target)`, short.
fn route(target: &'static str) -> RouteSpec<&'static str> {
    RouteSpec::new(target)
}

/// An owned request, for building `Request`s in tests.
#[derive(Debug, Clone)]
struct Req {
    host: Option<String>,
    method: Method,
    path: String,
    headers: HeaderMap,
}

impl Req {
    fn new(method: Method, host: Option<&str>, path: &str) -> Req {
        Req {
            host: host.map(str::to_owned),
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
        }
    }

    fn get(host: &str, path: &str) -> Req {
        Req::new(Method::GET, Some(host), path)
    }

    fn method(mut self, method: Method) -> Req {
        self.method = method;
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        // `from_bytes` lower-cases, so tests may write names in any case.
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }

    fn request(&self) -> Request<'_> {
        Request {
            host: self.host.as_deref(),
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
        }
    }
}

fn router(specs: Vec<RouteSpec<&'static str>>) -> Router<&'static str> {
    Router::new(specs).expect("valid routes")
}

/// The winning target, or `"404"` / `"405"`; also checks that the linear
/// scan agrees.
fn winner(router: &Router<&'static str>, req: &Req) -> &'static str {
    let found = router.lookup(&req.request());
    assert_eq!(
        found,
        router.lookup_linear(&req.request()),
        "index and linear scan disagree on {req:?}"
    );
    match found {
        Match::Found { target, .. } => target,
        Match::MethodNotAllowed { .. } => "405",
        Match::NotFound => "404",
    }
}
