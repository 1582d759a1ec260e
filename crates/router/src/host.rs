//! Host names: validating and normalising the configured ones (at build
//! time) and normalising the request's (per lookup). Per-lookup work never
//! allocates for host names of up to 255 bytes.

use crate::error::HostError;

/// A route's host condition after validation, lower-case, without trailing dot.
#[derive(Debug, Clone)]
pub(crate) enum HostCond {
    Any,
    Exact(Box<str>),
    Wildcard(Box<str>),
}

impl HostCond {
    /// Whether a normalised request host satisfies the condition.
    pub(crate) fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostCond::Any, _) => true,
            (HostCond::Exact(want), Some(host)) => **want == *host,
            (HostCond::Wildcard(suffix), Some(host)) => is_below(host, suffix),
            (_, None) => false,
        }
    }
}

/// Validates and normalises a configured host (or wildcard suffix).
pub(crate) fn normalize_config(raw: &str, wildcard: bool) -> Result<Box<str>, HostError> {
    let host = raw.strip_suffix('.').unwrap_or(raw);
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if wildcard && host.starts_with("*.") {
        return Err(HostError::WildcardStar);
    }
    if let Some(inner) = host.strip_prefix('[') {
        if wildcard {
            return Err(HostError::WildcardLiteral);
        }
        let Some(end) = inner.find(']') else {
            return Err(HostError::BadChar('['));
        };
        if let Some(c) = inner[end + 1..].chars().next() {
            return Err(if c == ':' {
                HostError::Port
            } else {
                HostError::BadChar(c)
            });
        }
        if let Some(c) = inner[..end]
            .chars()
            .find(|c| !(c.is_ascii_hexdigit() || *c == ':' || *c == '.'))
        {
            return Err(HostError::BadChar(c));
        }
        return Ok(host.to_ascii_lowercase().into());
    }
    for c in host.chars() {
        if c == ':' {
            return Err(HostError::Port);
        }
        if c.is_whitespace()
            || c.is_control()
            || matches!(c, '/' | '\\' | '@' | '*' | '[' | ']' | '?' | '#')
        {
            return Err(HostError::BadChar(c));
        }
    }
    if host.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel);
    }
    Ok(host.to_ascii_lowercase().into())
}

/// Removes the port (`example.com:8080`, `[::1]:8080`) and one trailing dot.
pub(crate) fn strip_port_and_dot(raw: &str) -> &str {
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.bytes().position(|b| b == b':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Calls `f` with the normalised request host: port and trailing dot
/// removed, ASCII lower-case. Lower-casing happens in a stack buffer, so
/// only an upper-case host longer than 255 bytes allocates.
pub(crate) fn with_normalized<R>(raw: Option<&str>, f: impl FnOnce(Option<&str>) -> R) -> R {
    let Some(raw) = raw else { return f(None) };
    let host = strip_port_and_dot(raw);
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(Some(host));
    }
    let mut buf = [0u8; 255];
    match buf.get_mut(..host.len()) {
        Some(buf) => {
            buf.copy_from_slice(host.as_bytes());
            buf.make_ascii_lowercase();
            // ASCII lower-casing of valid UTF-8 is valid UTF-8.
            match std::str::from_utf8(buf) {
                Ok(lower) => f(Some(lower)),
                Err(_) => f(Some(&host.to_ascii_lowercase())),
            }
        }
        None => f(Some(&host.to_ascii_lowercase())),
    }
}

/// The wildcard suffixes `host` is strictly below, longest first:
/// `a.b.c` yields `b.c`, then `c`.
pub(crate) fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .filter(|(dot, _)| *dot > 0)
        .map(move |(dot, _)| &host[dot + 1..])
}

/// Whether `host` is `label(s).suffix` with a non-empty part before the dot.
pub(crate) fn is_below(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len() + 1
        && host.ends_with(suffix)
        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        with_normalized(Some(raw), |h| h.map(str::to_owned))
    }

    #[test]
    fn request_host_loses_port_dot_and_case() {
        assert_eq!(norm("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(norm("example.com.").as_deref(), Some("example.com"));
        assert_eq!(norm("example.com.:443").as_deref(), Some("example.com"));
        assert_eq!(norm("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(norm("[2001:DB8::1]").as_deref(), Some("[2001:db8::1]"));
        assert_eq!(norm("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(norm("").as_deref(), Some(""));
        assert_eq!(with_normalized(None, |h| h.map(str::to_owned)), None);
    }

    #[test]
    fn long_upper_case_host_is_lowered_too() {
        let long = format!("{}.COM", "A".repeat(300));
        assert_eq!(norm(&long), Some(long.to_ascii_lowercase()));
        let fits = format!("{}.COM", "A".repeat(251));
        assert_eq!(norm(&fits), Some(fits.to_ascii_lowercase()));
    }

    #[test]
    fn configured_hosts_are_normalised() {
        assert_eq!(
            normalize_config("Example.com.", false).as_deref(),
            Ok("example.com")
        );
        assert_eq!(normalize_config("[::1]", false).as_deref(), Ok("[::1]"));
        assert_eq!(
            normalize_config("Example.com", true).as_deref(),
            Ok("example.com")
        );
    }

    #[test]
    fn configured_hosts_are_validated() {
        assert_eq!(normalize_config("", false), Err(HostError::Empty));
        assert_eq!(normalize_config(".", true), Err(HostError::Empty));
        assert_eq!(normalize_config("a.com:80", false), Err(HostError::Port));
        assert_eq!(normalize_config("[::1]:80", false), Err(HostError::Port));
        assert_eq!(
            normalize_config("*.a.com", true),
            Err(HostError::WildcardStar)
        );
        assert_eq!(
            normalize_config("*.a.com", false),
            Err(HostError::BadChar('*'))
        );
        assert_eq!(
            normalize_config("a..com", false),
            Err(HostError::EmptyLabel)
        );
        assert_eq!(normalize_config(".a.com", true), Err(HostError::EmptyLabel));
        assert_eq!(normalize_config("a b", false), Err(HostError::BadChar(' ')));
        assert_eq!(
            normalize_config("[::1]", true),
            Err(HostError::WildcardLiteral)
        );
        assert_eq!(
            normalize_config("[::g]", false),
            Err(HostError::BadChar('g'))
        );
    }

    #[test]
    fn wildcard_is_strictly_below_its_suffix() {
        assert!(is_below("a.example.com", "example.com"));
        assert!(is_below("a.b.example.com", "example.com"));
        assert!(!is_below("example.com", "example.com"));
        assert!(!is_below("badexample.com", "example.com"));
        assert!(!is_below(".example.com", "example.com"));
        let suffixes: Vec<_> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(suffixes, ["b.example.com", "example.com", "com"]);
        assert_eq!(wildcard_suffixes(".com").count(), 0);
    }
}
