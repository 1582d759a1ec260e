//! The answer of a lookup, and the canonical order of the methods in a
//! `405` answer (so that the index and the linear scan agree, and the
//! `Allow` header is stable across reloads).

use crate::params::Params;
use http::{HeaderValue, Method};

/// The answer of [`Router::lookup`](crate::Router::lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match<'a, T> {
    /// The winning route.
    Found {
        /// Its target.
        target: &'a T,
        /// Its index in the list given to `Router::new`.
        route: usize,
        /// Its path parameters (empty unless it is a pattern with some).
        params: Params<'a>,
    },
    /// Some route matches everything but the method: answer `405`.
    MethodNotAllowed {
        /// The union of the methods of all such routes, deduplicated, in
        /// canonical order: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS,
        /// CONNECT, TRACE, then extension methods alphabetically. See
        /// [`allow_header`].
        allowed: Vec<Method>,
    },
    /// No route matches: answer `404`.
    NotFound,
}

/// The `Allow` header value for a `405`: `GET, HEAD, POST`.
pub fn allow_header(allowed: &[Method]) -> HeaderValue {
    let mut value = String::new();
    for method in allowed {
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(method.as_str());
    }
    // Method names are HTTP tokens, which are valid header value bytes.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sorts into the canonical order and removes duplicates.
pub(crate) fn canonical(mut methods: Vec<Method>) -> Vec<Method> {
    methods.sort_unstable_by(|a, b| rank(a).cmp(&rank(b)));
    methods.dedup();
    methods
}

fn rank(method: &Method) -> (u8, &str) {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    let position = KNOWN
        .iter()
        .position(|m| m == method)
        .unwrap_or(KNOWN.len());
    (position as u8, method.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_methods_are_sorted_and_unique() {
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let brew = Method::from_bytes(b"BREW").unwrap();
        let methods = vec![
            purge.clone(),
            Method::POST,
            Method::GET,
            brew.clone(),
            Method::POST,
        ];
        let allowed = canonical(methods);
        assert_eq!(allowed, [Method::GET, Method::POST, brew, purge]);
        assert_eq!(allow_header(&allowed), "GET, POST, BREW, PURGE");
        assert_eq!(allow_header(&[]), "");
    }
}
