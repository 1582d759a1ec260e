//! The route table of the proxy's data plane: which route answers a request.
//!
//! The control plane builds a [`Router`] once per configuration snapshot with
//! [`Router::new`], which checks every route and reports *all* errors at once.
//! Request tasks then share it immutably (it is `Send + Sync` when the target
//! is) and call [`Router::lookup`], which is synchronous, does no I/O and
//! allocates nothing except for a `405` answer (the allowed methods), a
//! pattern with more than eight parameters, or an upper-case host name longer
//! than 255 bytes. (The `regex` crate keeps scratch space per thread, created
//! on a thread's first regex lookup.)
//!
//! # Matching
//!
//! A route matches a request when its host, path, headers and methods all
//! match:
//!
//! - **Host** (`HostMatch`): compared case-insensitively after removing a
//!   `:port` suffix (an IPv6 literal such as `[::1]:8080` keeps its brackets:
//!   `[::1]`) and one trailing dot, on both the request and the route.
//!   `Exact("example.com")` matches only `example.com`.
//!   `Wildcard("example.com")` matches any name *below* it (`a.example.com`,
//!   `a.b.example.com`) but not `example.com` itself; it is what the
//!   configuration writes as `*.example.com`. A request without a host
//!   matches only routes without a host condition.
//! - **Path** (`PathMatch`), always on the raw path as received: no
//!   percent-decoding, no `.`/`..` resolution, no slash merging, and without
//!   the query string (the caller passes `uri.path()`).
//!   - `Prefix("/api/")`: the path starts with these bytes (`/api` would also
//!     match `/apix`; end the prefix with `/` to match whole segments).
//!   - `Pattern("/users/{id}/posts/{post}")`: the path is split on `/` and
//!     compared segment by segment. A literal segment must be equal, `{name}`
//!     matches exactly one non-empty segment, and a final `{*name}` matches
//!     the remainder, possibly empty: `/files/{*rest}` matches `/files`,
//!     `/files/` and `/files/a/b` with `rest` = `""`, `""` and `"a/b"`. A
//!     pattern without parameters is an exact path. Trailing slashes count:
//!     `/users/{id}` does not match `/users/7/`.
//!   - `Regex("^/v[0-9]+/")`: the regex matches somewhere in the path (add
//!     `^`/`$` to anchor). Regex routes extract no parameters.
//! - **Headers**: every `(name, value)` condition needs a request header of
//!   that name whose value is byte-for-byte equal (any one of several values
//!   of a repeated header is enough).
//! - **Methods**: an empty list matches any method; otherwise the request
//!   method must be in the list (`HEAD` is not implied by `GET`).
//!
//! # Precedence
//!
//! A route wins over another when, in this order:
//!
//! 1. its **host** is more specific: exact host > wildcard (longer suffix
//!    first) > any host;
//! 2. its **path** is more specific: exact path (a pattern without
//!    parameters) > pattern with parameters > regex > prefix (longer first) >
//!    any path (regexes before prefixes, as in nginx, so a catch-all `/`
//!    prefix never hides them). Between two patterns with parameters, the one with more
//!    literal segments wins; if they have as many, their segments are
//!    compared from the left and the first difference decides: a literal
//!    beats a `{param}`, which beats a `{*catch_all}`, and a pattern that
//!    ends beats one that continues;
//! 3. it has **more header conditions**;
//! 4. it has a **method list** (a non-empty `methods`);
//! 5. it comes **first in the configuration**.
//!
//! The answer is the first route in that order whose host, path, headers and
//! methods all match ([`Match::Found`]). If none matches but some route
//! matches on everything except the method, the answer is
//! [`Match::MethodNotAllowed`] with the union of the methods of all such
//! routes (for a `405` and its `Allow` header); otherwise [`Match::NotFound`].
//! The index gives exactly the answer of a linear scan in that order
//! ([`Router::lookup_linear`]); a property test checks it.
//!
//! # Parameters
//!
//! [`Params`] holds the names (borrowed from the router) and the values
//! (borrowed from the request path, as received) of the winning pattern's
//! parameters, inline for up to eight of them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod host;
mod outcome;
mod params;
mod pattern;
mod precedence;
mod prefix;
mod route;
mod router;
mod spec;
mod table;
mod trie;

pub use error::{BuildError, HostError, PatternError};
pub use outcome::{Match, allow_header};
pub use params::Params;
pub use router::Router;
pub use spec::{HostMatch, PathMatch, Request, RouteSpec};

#[cfg(test)]
mod tests;
