//! What a listener answers itself because of HTTPS, before any routing:
//! the ACME HTTP-01 challenge (plain listeners, when the proxy has the
//! challenges store) and the redirect of plain HTTP to `https://`
//! (`redirect_https`); and the `Strict-Transport-Security` header of TLS
//! listeners. Pure request → response functions: no I/O, nothing forwarded.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::ProxyBody;

/// What a connection's listener is, fixed when serving starts — like its
/// socket, which speaks TLS or not for good.
pub(crate) struct Endpoint {
    /// The listener's name (its routes and settings in the snapshot).
    pub name: std::sync::Arc<str>,
    /// The listener has `[listener.tls]`: its connections are HTTPS.
    pub https: bool,
    /// The HTTP-01 challenges to answer (plain listeners only).
    pub challenges: Option<tls::Challenges>,
}

/// The token of a request for the challenge path, `None` for any other
/// path. The token may be empty or invalid (then it is never answered).
pub(crate) fn challenge_token<B>(req: &Request<B>) -> Option<&str> {
    req.uri().path().strip_prefix(tls::CHALLENGE_PREFIX)
}

/// The answer to a request for the challenge path: the key authorization
/// for a token being answered (200), 404 for any other, 405 for methods
/// other than GET and HEAD.
pub(crate) fn answer_challenge(
    challenges: &tls::Challenges,
    method: &Method,
    token: &str,
) -> Response<ProxyBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = status_only(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // An ACME token is base64url; anything else cannot be one of ours.
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match valid.then(|| challenges.answer(token)).flatten() {
        Some(key_authorization) => {
            let mut r = Response::new(ProxyBody::owned(key_authorization.into_bytes()));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        None => status_only(StatusCode::NOT_FOUND),
    }
}

/// The redirect of a plain-HTTP request to `https://HOST[:port]/path?query`:
/// 301 for GET and HEAD, 308 (method and body kept) for the others; 400
/// when the request names no usable host. `host` is the request's host
/// (`:authority` or `Host`), with or without a port.
pub(crate) fn redirect<B>(req: &Request<B>, host: Option<&str>, port: u16) -> Response<ProxyBody> {
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    match host
        .and_then(host_without_port)
        .and_then(|h| location(h, port, path))
    {
        Some(location) => {
            let mut r = status_only(status);
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        None => {
            let mut r = Response::new(ProxyBody::text("no host to redirect to\n"));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
    }
}

fn location(host: &str, port: u16, path: &str) -> Option<HeaderValue> {
    let value = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    HeaderValue::from_str(&value).ok()
}

/// The host of an authority (`example.com:8080` → `example.com`,
/// `[::1]:80` → `[::1]`); `None` when it is not a valid authority's host
/// (empty, user info, spaces, …).
fn host_without_port(authority: &str) -> Option<&str> {
    if authority.contains('@') {
        return None;
    }
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host();
    if host.is_empty() {
        return None;
    }
    // `host()` borrows from `parsed`; the same bytes start `authority`.
    Some(&authority[..host.len()])
}

fn status_only(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::empty());
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    fn location_of(r: &Response<ProxyBody>) -> &str {
        r.headers()[header::LOCATION].to_str().unwrap()
    }

    #[test]
    fn redirects_keep_path_and_query_and_drop_the_port_of_the_host() {
        let r = redirect(
            &req(Method::GET, "/a/b?x=1&y"),
            Some("example.com:8080"),
            443,
        );
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location_of(&r), "https://example.com/a/b?x=1&y");

        let r = redirect(&req(Method::HEAD, "/"), Some("example.com"), 8443);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location_of(&r), "https://example.com:8443/");

        let r = redirect(&req(Method::DELETE, "/x"), Some("[::1]:80"), 443);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(location_of(&r), "https://[::1]/x");
    }

    #[test]
    fn a_request_without_a_usable_host_is_refused() {
        for host in [
            None,
            Some(""),
            Some("user@evil.com"),
            Some("a b"),
            Some(":80"),
        ] {
            let r = redirect(&req(Method::GET, "/"), host, 443);
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{host:?}");
            assert!(!r.headers().contains_key(header::LOCATION));
        }
    }

    #[test]
    fn challenges_are_answered_for_known_tokens_only() {
        let challenges = tls::Challenges::default();
        challenges.insert("tok_en-1".into(), "tok_en-1.thumb".into());
        let ok = answer_challenge(&challenges, &Method::GET, "tok_en-1");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "text/plain");
        for token in ["other", "", "tok_en-1/x", "../tok_en-1"] {
            let r = answer_challenge(&challenges, &Method::GET, token);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{token:?}");
        }
        let post = answer_challenge(&challenges, &Method::POST, "tok_en-1");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
