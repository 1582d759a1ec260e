//! Parsers for the small languages inside string values: host conditions,
//! path patterns, upstream addresses, networks, status ranges and the DNS
//! names of certificates. Pure functions from text to a typed value or a
//! one-line reason.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::raw::IntOrString;
use crate::types::{HostMatch, StatusRange, UpstreamAddr};

/// `api.example.com`, `*.example.com`, `127.0.0.1`, `[::1]` (lower-cased).
pub(crate) fn host_match(text: &str) -> Result<HostMatch, String> {
    let host = text.to_ascii_lowercase();
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
        return match ok {
            true => Ok(HostMatch::Exact(host)),
            false => Err("expected an IPv6 address in brackets, like [::1]".into()),
        };
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Err("write an IPv6 address in brackets, like [::1]".into());
    }
    if host.contains(':') {
        return Err("a host condition has no port (the Host header is compared without it)".into());
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if is_hostname(suffix) {
            return Ok(HostMatch::Wildcard(format!(".{suffix}")));
        }
    } else if host.contains('*') {
        return Err("`*` is only allowed as the whole first label, like *.example.com".into());
    } else if is_hostname(&host) {
        return Ok(HostMatch::Exact(host));
    }
    Err("expected a host name like api.example.com or a wildcard like *.example.com".into())
}

/// Dot-separated labels of letters, digits, `-` and `_`, each 1 to 63 long.
fn is_hostname(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A DNS name as a certificate carries it (`example.com`, lower-cased):
/// labels of 1 to 63 letters, digits and `-`, not starting or ending with
/// `-`, the last not all digits, 253 bytes at most; no wildcard, no final
/// dot. Stricter than [`is_hostname`] (no `_`): a CA would refuse those.
pub(crate) fn dns_name(text: &str) -> Result<String, String> {
    let name = text.to_ascii_lowercase();
    if name.contains('*') {
        return Err("a wildcard is not a single DNS name".into());
    }
    if name.len() > 1 && name.ends_with('.') {
        return Err("write the name without the final dot".into());
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if name.len() > 253 || !name.split('.').all(label) || numeric_tld {
        return Err(
            "expected a DNS name like example.com: letters, digits and '-' (an internationalized name in its xn-- form)"
                .into(),
        );
    }
    Ok(name)
}

/// Checks a `path` pattern: `/users/{id}`, `/static/{*file}`.
pub(crate) fn check_path_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("must start with \"/\"".into());
    }
    if !pattern.contains(['{', '}']) {
        return Ok(()); // an exact path: no parameter to check
    }
    let segments: Vec<&str> = pattern[1..].split('/').collect();
    let mut names = BTreeSet::new();
    for (i, segment) in segments.iter().enumerate() {
        if !segment.contains(['{', '}']) {
            continue;
        }
        let opens = segment.matches('{').count();
        let closes = segment.matches('}').count();
        if opens != closes {
            return Err(format!("unbalanced braces in segment {segment:?}"));
        }
        let inner = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
        let Some(inner) = inner.filter(|inner| !inner.contains(['{', '}'])) else {
            return Err(format!(
                "a parameter must be a whole segment, like /users/{{id}}; found {segment:?}"
            ));
        };
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "invalid parameter name {name:?}: use letters, digits and '_', not starting with a digit"
            ));
        }
        if !names.insert(name) {
            return Err(format!("duplicate parameter name {name:?}"));
        }
        if catch_all && i + 1 != segments.len() {
            return Err(format!("`{{*{name}}}` must be the last segment"));
        }
    }
    Ok(())
}

/// `IP:PORT` or `HOST:PORT`; the port is never 0.
pub(crate) fn parse_upstream_addr(text: &str) -> Result<UpstreamAddr, String> {
    let expected = "expected HOST:PORT or IP:PORT, like 127.0.0.1:9001 or app.internal:8080";
    if text.contains("://") {
        return Err(format!("write the address without a scheme; {expected}"));
    }
    let (host, port, ip) = if let Ok(addr) = text.parse::<SocketAddr>() {
        (addr.ip().to_string(), addr.port(), Some(addr))
    } else {
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("missing port; {expected}"));
        };
        if host.contains([':', '[', ']']) || !is_hostname(host) {
            return Err(format!("invalid host {host:?}; {expected}"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("invalid port {port:?}; {expected}"))?;
        (host.to_owned(), port, None)
    };
    if port == 0 {
        return Err("port 0 is not a valid upstream port".into());
    }
    Ok(UpstreamAddr {
        authority: text.to_owned(),
        host,
        port,
        ip,
    })
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (a single host).
pub(crate) fn parse_network(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpAddr>() {
        Ok(ip) => IpNet::from(ip),
        Err(_) => text.parse::<IpNet>().map_err(|_| {
            format!("{text:?} is not a network; expected CIDR like 10.0.0.0/8 or fd00::/8")
        })?,
    };
    if net.trunc() != net {
        let fixed = net.trunc();
        return Err(format!(
            "{text:?} has host bits set; did you mean \"{fixed}\"?"
        ));
    }
    Ok(net)
}

/// `200`, `"204"` or `"200-399"`, within 100-599.
pub(crate) fn parse_status_range(value: &IntOrString) -> Result<StatusRange, String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
    };
    let range = match value {
        IntOrString::Int(n) => {
            let n = u16::try_from(*n).ok().filter(|n| (100..=599).contains(n));
            n.map(|n| (n, n))
        }
        IntOrString::String(s) => match s.split_once('-') {
            Some((a, b)) => parse(a).zip(parse(b)),
            None => parse(s).map(|n| (n, n)),
        },
    };
    match range {
        Some((first, last)) if first <= last => Ok(StatusRange { first, last }),
        _ => Err("expected a status (100-599) or a range like \"200-399\"".into()),
    }
}
