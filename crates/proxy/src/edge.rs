//! The front door's own checks on a request head, made once per request
//! before anything routes, logs as routed, or forwards it: where HTTP's
//! rules (RFC 9110, RFC 9112) leave a proxy and its backends room to
//! disagree about what a request means, the request is refused here.
//!
//! hyper's parser already refuses (400, before any service sees it) what
//! breaks the message framing: an invalid or repeated-and-different
//! `Content-Length`, a `Transfer-Encoding` other than a final `chunked`, a
//! `Transfer-Encoding` on HTTP/1.0; a bad chunk is the client's fault found
//! while forwarding (`client_body`). With both `Transfer-Encoding` and
//! `Content-Length`, hyper removes the `Content-Length` before the request
//! reaches us, reads the body as chunked and closes the connection after
//! the response (RFC 9112 §6.1), so the backend never sees two framings and
//! no second request can ride on the first; it cannot be refused here.
//!
//! What this module refuses or changes:
//! - `CONNECT`: baton is no forward proxy; 501, never forwarded;
//! - an HTTP/1.1 request without `Host`, with two `Host` fields, or with a
//!   `Host` that is not a valid authority: 400 (RFC 9112 §3.2);
//! - a target in authority form outside `CONNECT`, `*` outside `OPTIONS`,
//!   or an absolute form whose scheme is not `http`/`https` or that carries
//!   user information: 400;
//! - a target with an authority (absolute form, HTTP/2's `:authority`):
//!   its authority is the request's host, and replaces `Host` (RFC 9112
//!   §3.2.2), so the backend gets the host the request was routed by.
//!
//! Owns only these decisions; never reads the snapshot, never touches the
//! body, never logs.

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Version};

use crate::body::ProxyBody;

/// Why a request is refused at the front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `CONNECT`: tunnels are not offered.
    Connect,
    /// HTTP/1.1 without `Host`.
    NoHost,
    /// More than one `Host` field.
    ManyHosts,
    /// A `Host` that is not a valid authority (empty, spaces, a path,
    /// user information).
    BadHost,
    /// A request target in a form this method may not use, or an absolute
    /// form with another scheme or with user information.
    BadTarget,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Connect => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Refusal::Connect => "CONNECT is not supported: this is not a forward proxy\n",
            Refusal::NoHost => "HTTP/1.1 request without Host\n",
            Refusal::ManyHosts => "more than one Host header\n",
            Refusal::BadHost => "invalid Host header\n",
            Refusal::BadTarget => "invalid request target\n",
        }
    }

    /// The answer, on a connection that is closed after it: what follows a
    /// refused head (a body, tunnel bytes) must never be read as a request.
    pub(crate) fn response(self) -> Response<ProxyBody> {
        let mut r = Response::new(ProxyBody::text(self.text()));
        *r.status_mut() = self.status();
        let headers = r.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }
}

/// Checks `req`'s head and makes its `Host` the host it is routed by; see
/// the module docs for every rule.
pub(crate) fn admit<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Refusal::ManyHosts),
        (Some(host), None) => {
            let valid = simple_host(host.as_bytes())
                || host
                    .to_str()
                    .ok()
                    .and_then(|h| h.parse::<Authority>().ok())
                    .is_some_and(|a| is_plain(&a));
            if !valid {
                return Err(Refusal::BadHost);
            }
        }
        (None, _) if req.version() == Version::HTTP_11 => return Err(Refusal::NoHost),
        (None, _) => {}
    }
    let uri = req.uri();
    if uri.path() == "*" && req.method() != Method::OPTIONS {
        return Err(Refusal::BadTarget);
    }
    let Some(authority) = uri.authority() else {
        return Ok(());
    };
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !scheme_ok || !is_plain(authority) {
        return Err(Refusal::BadTarget);
    }
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| Refusal::BadTarget)?;
    req.headers_mut().insert(header::HOST, host);
    Ok(())
}

/// The common `Host` checked without parsing (and allocating) an
/// `Authority`: a name or IPv4 address of letters, digits, dots and dashes,
/// optionally with a port of at most 65535. Anything else — IPv6 literals
/// included — goes through [`is_plain`].
fn simple_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().position(|&b| b == b':') {
        Some(i) => (&host[..i], Some(&host[i + 1..])),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.iter().all(u8::is_ascii_digit)
            && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65_535
    });
    name_ok && port_ok
}

/// A host and an optional numeric port: no user information, nothing
/// after the port (`http::uri::Authority` parses all of those).
fn is_plain(authority: &Authority) -> bool {
    let whole = authority.as_str();
    !authority.host().is_empty()
        && !whole.contains('@')
        && (whole.len() == authority.host().len() || authority.port_u16().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_host_check_accepts_only_what_the_parser_accepts() {
        let cases = [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com:1",
            "a",
            "127.0.0.1",
            "127.0.0.1:65535",
            "127.0.0.1:65536",
            "host:",
            "host:0",
            "host:00080",
            "host:123456",
            ":80",
            "a-b.c-d",
            "-a",
            "a..b",
            "a@b",
            "user@host:80",
            "[::1]:80",
            "[::1]",
            "host:80x",
            "host:8 0",
            "ho st",
            "",
            "host:80:90",
            "ex_ample.com",
            "%41",
        ];
        for case in cases {
            let parsed = case.parse::<Authority>().ok().is_some_and(|a| is_plain(&a));
            if simple_host(case.as_bytes()) {
                assert!(parsed, "{case:?} passes the fast check but not the parser");
            }
        }
    }

    fn req(method: &str, target: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder()
            .method(method)
            .uri(target)
            .version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    fn verdict(
        method: &str,
        target: &str,
        version: Version,
        hosts: &[&str],
    ) -> Result<(), Refusal> {
        admit(&mut req(method, target, version, hosts))
    }

    #[test]
    fn host_rules() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        assert_eq!(verdict("GET", "/", HTTP_11, &["a.test"]), Ok(()));
        assert_eq!(verdict("GET", "/", HTTP_11, &["a.test:8080"]), Ok(()));
        assert_eq!(verdict("GET", "/", HTTP_11, &["[::1]:80"]), Ok(()));
        assert_eq!(verdict("GET", "/", HTTP_11, &[]), Err(Refusal::NoHost));
        assert_eq!(verdict("GET", "/", HTTP_10, &[]), Ok(()));
        assert_eq!(
            verdict("GET", "/", HTTP_11, &["a.test", "a.test"]),
            Err(Refusal::ManyHosts)
        );
        assert_eq!(
            verdict("GET", "/", HTTP_10, &["a.test", "b.test"]),
            Err(Refusal::ManyHosts)
        );
        for bad in ["", "a b", "a/b", "u@a.test", "a.test:x"] {
            assert_eq!(
                verdict("GET", "/", HTTP_11, &[bad]),
                Err(Refusal::BadHost),
                "{bad:?}"
            );
        }
        // HTTP/2 names its host in `:authority`, which hyper puts in the URI.
        assert_eq!(verdict("GET", "https://a.test/", HTTP_2, &[]), Ok(()));
    }

    #[test]
    fn the_targets_authority_replaces_host() {
        let mut r = req("GET", "http://b.test/x?y", Version::HTTP_11, &["a.test"]);
        assert_eq!(admit(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "b.test");
        assert_eq!(r.headers().get_all(header::HOST).iter().count(), 1);
        let mut r = req("GET", "https://b.test:8443/", Version::HTTP_2, &["a.test"]);
        assert_eq!(admit(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "b.test:8443");
        let mut r = req("GET", "/x", Version::HTTP_11, &["a.test"]);
        assert_eq!(admit(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "a.test");
    }

    #[test]
    fn targets_and_methods() {
        const HTTP_11: Version = Version::HTTP_11;
        let h = &["a.test"];
        assert_eq!(
            verdict("CONNECT", "b.test:443", HTTP_11, h),
            Err(Refusal::Connect)
        );
        assert_eq!(
            verdict("GET", "ftp://b.test/", HTTP_11, h),
            Err(Refusal::BadTarget)
        );
        assert_eq!(
            verdict("GET", "http://u:p@b.test/", HTTP_11, h),
            Err(Refusal::BadTarget)
        );
        assert_eq!(
            verdict("GET", "b.test:80", HTTP_11, h),
            Err(Refusal::BadTarget)
        );
        assert_eq!(verdict("GET", "*", HTTP_11, h), Err(Refusal::BadTarget));
        assert_eq!(verdict("OPTIONS", "*", HTTP_11, h), Ok(()));
        assert_eq!(Refusal::Connect.response().status(), 501);
        let r = Refusal::NoHost.response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }
}
