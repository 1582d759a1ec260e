//! The reference: a linear scan in precedence order, written from the crate
//! documentation alone and sharing no code with the router (only the public
//! input types). Slow and obvious on purpose.

use crate::{HostMatch, PathMatch, Request, RouteSpec};
use regex::Regex;

/// The reference answer: route index and params, or the allowed methods
/// (sorted by name), or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Found {
        route: usize,
        params: Vec<(String, String)>,
    },
    MethodNotAllowed(Vec<String>),
    NotFound,
}

pub(super) struct Naive<T> {
    /// `(config index, spec, compiled regex)` in precedence order.
    routes: Vec<(usize, RouteSpec<T>, Option<Regex>)>,
}

/// Sort key, lowest first: host rank, path rank, headers, methods, index.
type Key = ((u8, i64), (u8, i64, Vec<u8>, i64), i64, bool, usize);

fn key<T>(index: usize, spec: &RouteSpec<T>) -> Key {
    let host = match &spec.host {
        Some(HostMatch::Exact(_)) => (0, 0),
        Some(HostMatch::Wildcard(suffix)) => (1, -(config_host(suffix).len() as i64)),
        None => (2, 0),
    };
    let path = match &spec.path {
        Some(PathMatch::Pattern(p)) if !p.contains('{') => (0, 0, vec![], 0),
        Some(PathMatch::Pattern(p)) => {
            let kinds: Vec<u8> = p[1..]
                .split('/')
                .map(|s| {
                    if s.starts_with("{*") {
                        2
                    } else if s.starts_with('{') {
                        1
                    } else {
                        0
                    }
                })
                .collect();
            let literals = kinds.iter().filter(|k| **k == 0).count() as i64;
            (1, -literals, kinds, 0)
        }
        Some(PathMatch::Prefix(p)) => (3, 0, vec![], -(p.len() as i64)),
        Some(PathMatch::Regex(_)) => (2, 0, vec![], 0),
        None => (4, 0, vec![], 0),
    };
    (
        host,
        path,
        -(spec.headers.len() as i64),
        spec.methods.is_empty(),
        index,
    )
}

fn config_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    lower.strip_suffix('.').unwrap_or(&lower).to_owned()
}

fn request_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    let no_port = if lower.starts_with('[') {
        lower.split_inclusive(']').next().unwrap_or("").to_owned()
    } else {
        lower.split(':').next().unwrap_or("").to_owned()
    };
    no_port.strip_suffix('.').unwrap_or(&no_port).to_owned()
}

fn host_matches(cond: &Option<HostMatch>, host: Option<&str>) -> bool {
    match (cond, host.map(request_host)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Exact(want)), Some(host)) => config_host(want) == host,
        (Some(HostMatch::Wildcard(suffix)), Some(host)) => {
            let suffix = config_host(suffix);
            host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
        }
    }
}

/// Segment-by-segment pattern match with parameter extraction.
fn pattern_match(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let path = path.strip_prefix('/')?;
    let want: Vec<&str> = pattern[1..].split('/').collect();
    let have: Vec<&str> = path.split('/').collect();
    let mut params = Vec::new();
    for (i, w) in want.iter().enumerate() {
        if let Some(name) = w.strip_prefix("{*") {
            let rest = if i < have.len() {
                have[i..].join("/")
            } else {
                String::new()
            };
            params.push((name.trim_end_matches('}').to_owned(), rest));
            return Some(params);
        }
        let h = have.get(i)?;
        if let Some(name) = w.strip_prefix('{') {
            if h.is_empty() {
                return None;
            }
            params.push((name.trim_end_matches('}').to_owned(), h.to_string()));
        } else if w != h {
            return None;
        }
    }
    (want.len() == have.len()).then_some(params)
}

impl<T> Naive<T> {
    pub(super) fn new(specs: Vec<RouteSpec<T>>) -> Naive<T> {
        let mut routes: Vec<_> = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let regex = match &spec.path {
                    Some(PathMatch::Regex(r)) => Some(Regex::new(r).expect("valid regex")),
                    _ => None,
                };
                (i, spec, regex)
            })
            .collect();
        routes.sort_by_key(|(i, spec, _)| key(*i, spec));
        Naive { routes }
    }

    pub(super) fn lookup(&self, req: &Request<'_>) -> Answer {
        let mut allowed: Vec<String> = Vec::new();
        for (index, spec, regex) in &self.routes {
            if !host_matches(&spec.host, req.host) {
                continue;
            }
            let params = match &spec.path {
                None => vec![],
                Some(PathMatch::Prefix(p)) if req.path.starts_with(p.as_str()) => vec![],
                Some(PathMatch::Regex(_)) if regex.as_ref().unwrap().is_match(req.path) => vec![],
                Some(PathMatch::Pattern(p)) => match pattern_match(p, req.path) {
                    Some(params) => params,
                    None => continue,
                },
                Some(_) => continue,
            };
            let headers_ok = spec
                .headers
                .iter()
                .all(|(n, v)| req.headers.get_all(n).iter().any(|have| have == v));
            if !headers_ok {
                continue;
            }
            if spec.methods.is_empty() || spec.methods.contains(req.method) {
                return Answer::Found {
                    route: *index,
                    params,
                };
            }
            allowed.extend(spec.methods.iter().map(|m| m.as_str().to_owned()));
        }
        allowed.sort();
        allowed.dedup();
        if allowed.is_empty() {
            Answer::NotFound
        } else {
            Answer::MethodNotAllowed(allowed)
        }
    }
}
