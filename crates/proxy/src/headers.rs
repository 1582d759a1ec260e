//! What the proxy changes in requests and responses on the way through:
//! hop-by-hop headers removed (RFC 9110 §7.6.1), `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and a request id set — trusting
//! what the client sent only when its address is in a configured network.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, never to be forwarded.
pub(crate) static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including any named in `Connection`. When
/// `keep_upgrade` is set (a WebSocket handshake), `Connection: upgrade` and
/// `Upgrade` survive.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names (compared, not hashed) finds which of them
    // are there; most messages have none, or only `Connection`, and only
    // those are removed.
    let mut present = 0u8;
    let mut upgrade = false;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::UPGRADE {
            upgrade = true;
        }
    }
    if present & 1 != 0 {
        // What `Connection` (the first of `HOP_BY_HOP`) names goes, looked
        // up by the token itself (no name is allocated); its values are
        // cloned first (shared bytes), all at once only in the rare message
        // with several.
        let mut connection = headers.get_all(header::CONNECTION).iter();
        match (connection.next().cloned(), connection.next().is_some()) {
            (None, _) => {}
            (Some(value), false) => remove_named(headers, &value, keep_upgrade),
            (Some(_), true) => {
                let values: Vec<HeaderValue> = headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .cloned()
                    .collect();
                for value in &values {
                    remove_named(headers, value, keep_upgrade);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if upgrade && !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the headers a `Connection` value names (but `Upgrade` when
/// `keep_upgrade`); a token that is no header name removes nothing.
pub(crate) fn remove_named(headers: &mut HeaderMap, connection: &HeaderValue, keep_upgrade: bool) {
    let Ok(tokens) = connection.to_str() else {
        return;
    };
    for token in tokens.split(',').map(str::trim) {
        if !(keep_upgrade && token.eq_ignore_ascii_case("upgrade")) {
            headers.remove(token);
        }
    }
}

/// True when the request asks to switch protocols (WebSocket).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The networks whose forwarded headers we believe.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    pub networks: Vec<IpNet>,
}

impl Trust {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.networks.iter().any(|n| n.contains(&ip))
    }
}

/// The client of one connection as the forwarding headers name it: its
/// address, and that address as an `X-Forwarded-For` element, formatted once
/// when the connection is accepted rather than for each of its requests.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub addr: SocketAddr,
    forwarded_for: Option<HeaderValue>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            forwarded_for: HeaderValue::from_str(&addr.ip().to_string()).ok(),
        }
    }
}

/// Sets the forwarding headers for a request from `client` (None: a Unix
/// socket client, trusted like a local process) that arrived over `scheme`
/// (`http` or `https`: what the listener speaks) and returns the request id.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client: Option<&Client>,
    scheme: &'static str,
    trust: &Trust,
    request_id: &HeaderName,
) -> HeaderValue {
    // Room for the four headers set here at once: the map grows (its
    // entries and its index) once, not step by step.
    headers.reserve(4);
    let trusted = client.is_none_or(|c| trust.trusts(c.addr.ip()));
    if !trusted {
        // Whatever the client sent is replaced (`insert` drops every value
        // it had) or removed: no lookup of what it was.
        match client.and_then(|c| c.forwarded_for.as_ref()) {
            Some(ip) => headers.insert(X_FORWARDED_FOR.clone(), ip.clone()),
            None => headers.remove(&X_FORWARDED_FOR),
        };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
        match headers.get(header::HOST).cloned() {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        let id = new_request_id();
        headers.insert(request_id.clone(), id.clone());
        return id;
    }
    if let Some(ip) = client.and_then(|c| c.forwarded_for.as_ref()) {
        let value = match headers.get(&X_FORWARDED_FOR) {
            Some(prior) => append_hop(prior, ip),
            None => Some(ip.clone()),
        };
        if let Some(v) = value {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    match headers.get(request_id) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let id = new_request_id();
            headers.insert(request_id.clone(), id.clone());
            id
        }
    }
}

/// `prior, ip`: the chain a trusted proxy sent, extended by one hop (in one
/// allocation). `None` when `prior` is not text.
fn append_hop(prior: &HeaderValue, ip: &HeaderValue) -> Option<HeaderValue> {
    let prior = prior.to_str().ok()?;
    let mut chain = Vec::with_capacity(prior.len() + 2 + ip.len());
    chain.extend_from_slice(prior.as_bytes());
    chain.extend_from_slice(b", ");
    chain.extend_from_slice(ip.as_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(chain)).ok()
}

/// 128 random bits as 32 lowercase hex digits. Their bytes are cut from a
/// per-thread block of [`ID_BLOCK`] ids: one allocation for that many ids
/// rather than one each (a block is freed when its last id is dropped, and
/// an id lives as long as its request).
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (half, word) in id
        .chunks_exact_mut(16)
        .zip([fastrand::u64(..), fastrand::u64(..)])
    {
        for (i, digit) in half.iter_mut().enumerate() {
            *digit = HEX[((word >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    let bytes = ID_BYTES.with_borrow_mut(|block| {
        if block.capacity() < id.len() {
            *block = BytesMut::with_capacity(id.len() * ID_BLOCK);
        }
        block.extend_from_slice(&id);
        block.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).expect("hex is a valid header value")
}

/// Request ids per allocated block.
const ID_BLOCK: usize = 32;

thread_local! {
    /// Where this thread's request ids are cut from (see [`new_request_id`]).
    static ID_BYTES: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid() -> HeaderName {
        HeaderName::from_static("x-request-id")
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn every_connection_value_names_headers_in_any_case() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "X-One , keep-alive".parse().unwrap());
        h.append(header::CONNECTION, "x-TWO,,not a name".parse().unwrap());
        h.insert("x-one", "1".parse().unwrap());
        h.insert("x-two", "2".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_as_it_is() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "example.com".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn upgrade_survives_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn untrusted_clients_cannot_forge_forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-request-id", "forged".parse().unwrap());
        h.insert(header::HOST, "example.com".parse().unwrap());
        let peer = "203.0.113.9:5000".parse().unwrap();
        let id = set_forwarded(
            &mut h,
            Some(&Client::new(peer)),
            "http",
            &Trust::default(),
            &rid(),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_ne!(id, "forged");
        assert_eq!(h["x-request-id"], id);
    }

    #[test]
    fn the_scheme_is_the_listeners_unless_a_trusted_proxy_said_otherwise() {
        let peer = "203.0.113.9:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        set_forwarded(
            &mut h,
            Some(&Client::new(peer)),
            "https",
            &Trust::default(),
            &rid(),
        );
        assert_eq!(h["x-forwarded-proto"], "https", "untrusted: ours");
        let trust = Trust {
            networks: vec!["203.0.113.0/24".parse().unwrap()],
        };
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        set_forwarded(&mut h, Some(&Client::new(peer)), "https", &trust, &rid());
        assert_eq!(h["x-forwarded-proto"], "http", "trusted: the client's");
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-request-id", "abc".parse().unwrap());
        let trust = Trust {
            networks: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let peer = "10.1.2.3:4000".parse().unwrap();
        let id = set_forwarded(&mut h, Some(&Client::new(peer)), "http", &trust, &rid());
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(id, "abc");
        // IPv4-mapped IPv6 peers are matched as IPv4.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        let mapped = "[::ffff:10.0.0.7]:1".parse().unwrap();
        set_forwarded(&mut h, Some(&Client::new(mapped)), "http", &trust, &rid());
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, ::ffff:10.0.0.7");
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 32);
            assert!(
                text.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            );
        }
    }
}
