//! One validated route: its conditions in matchable form, how it ranks, and
//! the per-route checks (host, path, method, headers) that the indexes in
//! `table` leave to the end. Compiling never stops at the first error.

use crate::error::BuildError;
use crate::host::{self, HostCond};
use crate::params::{Params, Values};
use crate::pattern::Pattern;
use crate::precedence::{HostRank, PathRank, Precedence};
use crate::spec::{HostMatch, PathMatch, Request, RouteSpec};
use http::{HeaderName, HeaderValue, Method};
use regex::Regex;
use std::cmp::Reverse;

/// A route's path condition, validated.
#[derive(Debug)]
pub(crate) enum PathCond {
    Any,
    /// A pattern without parameters.
    Exact(Box<str>),
    /// A pattern with at least one parameter.
    Pattern(Pattern),
    Prefix(Box<str>),
    Regex(Regex),
}

/// How a route whose host and path match fares on the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Found,
    /// Headers match, the method does not: a candidate for `405`.
    WrongMethod,
    Miss,
}

/// A validated route.
#[derive(Debug)]
pub(crate) struct Route<T> {
    pub(crate) target: T,
    /// Position in the configuration.
    pub(crate) index: usize,
    pub(crate) host: HostCond,
    pub(crate) path: PathCond,
    pub(crate) methods: Box<[Method]>,
    pub(crate) headers: Box<[(HeaderName, HeaderValue)]>,
}

impl<T> Route<T> {
    /// Validates `spec`, collecting every error.
    pub(crate) fn compile(
        index: usize,
        spec: RouteSpec<T>,
    ) -> Result<(Route<T>, Precedence), Vec<BuildError>> {
        let mut errors = Vec::new();
        let host = match &spec.host {
            None => Some(HostCond::Any),
            Some(HostMatch::Exact(raw) | HostMatch::Wildcard(raw)) => {
                let wildcard = matches!(spec.host, Some(HostMatch::Wildcard(_)));
                match host::normalize_config(raw, wildcard) {
                    Ok(name) if wildcard => Some(HostCond::Wildcard(name)),
                    Ok(name) => Some(HostCond::Exact(name)),
                    Err(reason) => {
                        errors.push(BuildError::Host {
                            route: index,
                            host: raw.clone(),
                            reason,
                        });
                        None
                    }
                }
            }
        };
        let path = match spec.path {
            None => Some((PathCond::Any, PathRank::Any)),
            Some(PathMatch::Prefix(prefix)) if prefix.starts_with('/') => {
                let rank = PathRank::Prefix(Reverse(prefix.len()));
                Some((PathCond::Prefix(prefix.into()), rank))
            }
            Some(PathMatch::Prefix(prefix)) => {
                errors.push(BuildError::Prefix {
                    route: index,
                    prefix,
                });
                None
            }
            Some(PathMatch::Pattern(raw)) => match Pattern::parse(&raw) {
                Ok(pattern) if pattern.is_exact() => {
                    Some((PathCond::Exact(raw.into()), PathRank::Exact))
                }
                Ok(pattern) => {
                    let literals = Reverse(pattern.literal_count());
                    let rank = PathRank::Pattern {
                        literals,
                        shape: pattern.shape(),
                    };
                    Some((PathCond::Pattern(pattern), rank))
                }
                Err(reason) => {
                    errors.push(BuildError::Pattern {
                        route: index,
                        pattern: raw,
                        reason,
                    });
                    None
                }
            },
            Some(PathMatch::Regex(raw)) => match Regex::new(&raw) {
                Ok(regex) => Some((PathCond::Regex(regex), PathRank::Regex)),
                Err(source) => {
                    errors.push(BuildError::Regex {
                        route: index,
                        regex: raw,
                        source,
                    });
                    None
                }
            },
        };
        let (Some(host), Some((path, path_rank))) = (host, path) else {
            return Err(errors);
        };
        let precedence = Precedence {
            host: HostRank::of(&host),
            path: path_rank,
            headers: Reverse(spec.headers.len()),
            any_method: spec.methods.is_empty(),
            index,
        };
        let route = Route {
            target: spec.target,
            index,
            host,
            path,
            methods: spec.methods.into(),
            headers: spec.headers.into(),
        };
        Ok((route, precedence))
    }

    /// Method and headers, for a route whose host and path match.
    pub(crate) fn check(&self, req: &Request<'_>) -> Check {
        let method_ok = self.methods.is_empty() || self.methods.contains(req.method);
        let headers_ok = self
            .headers
            .iter()
            .all(|(name, value)| req.headers.get_all(name).iter().any(|v| v == value));
        match (headers_ok, method_ok) {
            (true, true) => Check::Found,
            (true, false) => Check::WrongMethod,
            (false, _) => Check::Miss,
        }
    }

    /// The path condition alone, without the index (linear scan).
    pub(crate) fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathCond::Any => true,
            PathCond::Exact(exact) => **exact == *path,
            PathCond::Pattern(pattern) => pattern.captures(path, &mut Values::new()),
            PathCond::Prefix(prefix) => path.starts_with(&**prefix),
            PathCond::Regex(regex) => regex.is_match(path),
        }
    }

    /// The parameters of this route for a path it matches.
    pub(crate) fn params<'a>(&'a self, path: &'a str) -> Params<'a> {
        match &self.path {
            PathCond::Pattern(pattern) => {
                debug_assert!(
                    self.path_matches(path),
                    "params() on a path the route does not match"
                );
                let mut values = Values::new();
                pattern.extract(path, &mut values);
                Params::new(&pattern.names, values)
            }
            _ => Params::default(),
        }
    }
}
