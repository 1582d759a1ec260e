//! What each kind of worker asks for and what counts as a correct answer.
//!
//! Owns the request shapes (method, path, deterministic POST bodies) and the body checks. It never touches a
//! socket, so every check is a pure function that unit tests exercise directly.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::Full;

use crate::failure::{Failure, FailureKind};

/// The largest POST body an echo worker sends.
pub(crate) const MAX_ECHO_BODY: usize = 64 * 1024;

/// The kind of traffic one worker generates. Every worker sends one request at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerKind {
    /// `GET /` on one persistent keep-alive connection; the body must contain `Hello`.
    KeepAlive,
    /// `GET /` on a new TCP connection per request, sent with `Connection: close` the way `hey` and `ab` do.
    Fresh,
    /// `POST /echo` with a 1 B to 64 KiB body on a keep-alive connection; the response must echo it exactly.
    Post,
    /// `GET /slow?ms=N` on a keep-alive connection, so that slow requests are in flight at every moment; the
    /// response must be 2xx with a complete body. Keep-alive makes it also exercise the `Connection: close` a
    /// draining server puts on the answer to a request that was in flight when draining began.
    Slow,
    /// Binary messages of 1 B to 64 KiB on one WebSocket (`GET /ws`); each must come back exactly (an echo round
    /// trip is one request). A server's close with 1001 (going away) is an announced end: the worker reconnects and
    /// sends the message it has no echo for again, on the new connection.
    WebSocket,
    /// One server-sent event stream (`GET /events?interval_ms=N`) at a time; each `tick N` event is one request and
    /// must number one more than the previous one of its stream. A stream that ends cleanly between two events, or
    /// says `event: shutdown`, is an announced end: the worker opens a new one.
    Sse,
    /// `GET /` and `POST /echo` in turn on one HTTP/2 connection (prior knowledge, cleartext). A GOAWAY without an
    /// error is an announced end: the worker opens a new connection for the request the old one would not take.
    H2,
}

impl WorkerKind {
    /// The name used in reports: `keepalive`, `fresh`, `post` or `slow`.
    pub fn name(self) -> &'static str {
        match self {
            WorkerKind::KeepAlive => "keepalive",
            WorkerKind::Fresh => "fresh",
            WorkerKind::Post => "post",
            WorkerKind::Slow => "slow",
            WorkerKind::WebSocket => "websocket",
            WorkerKind::Sse => "sse",
            WorkerKind::H2 => "h2",
        }
    }

    /// Whether the worker keeps its connection for the next request.
    pub fn reuses_connection(self) -> bool {
        self != WorkerKind::Fresh
    }

    /// Whether a success's latency is a response time: not for server-sent events, whose wait is the server's
    /// own interval.
    pub fn measures_latency(self) -> bool {
        self != WorkerKind::Sse
    }
}

/// One request to send and the answer it expects.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Bytes,
    expect: Expect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The body contains `Hello`.
    Hello,
    /// The body equals the request body.
    Echo,
    /// Any complete body (completeness itself is checked while reading).
    Complete,
}

impl Plan {
    /// The `seq`-th request of worker number `worker` of kind `kind`; `ms` is how long a slow request asks the
    /// server to take, or the interval an event stream asks for.
    pub(crate) fn new(kind: WorkerKind, worker: usize, seq: u64, ms: u64) -> Plan {
        match kind {
            WorkerKind::H2 if seq % 2 == 0 => Plan::new(WorkerKind::KeepAlive, worker, seq, ms),
            WorkerKind::H2 => Plan::new(WorkerKind::Post, worker, seq, ms),
            WorkerKind::WebSocket => Plan {
                method: Method::GET,
                path: "/ws".into(),
                body: echo_body(worker, seq),
                expect: Expect::Echo,
            },
            WorkerKind::Sse => Plan {
                method: Method::GET,
                path: format!("/events?interval_ms={ms}"),
                body: Bytes::new(),
                expect: Expect::Complete,
            },
            WorkerKind::KeepAlive | WorkerKind::Fresh => Plan {
                method: Method::GET,
                path: "/".into(),
                body: Bytes::new(),
                expect: Expect::Hello,
            },
            WorkerKind::Post => Plan {
                method: Method::POST,
                path: "/echo".into(),
                body: echo_body(worker, seq),
                expect: Expect::Echo,
            },
            WorkerKind::Slow => Plan {
                method: Method::GET,
                path: format!("/slow?ms={ms}"),
                body: Bytes::new(),
                expect: Expect::Complete,
            },
        }
    }

    /// The request, with `Host` and, for a one-shot connection, `Connection: close`.
    pub(crate) fn request(&self, host: &HeaderValue, one_shot: bool) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(HOST, host.clone());
        if one_shot {
            builder = builder.header(CONNECTION, "close");
        }
        if !self.body.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/octet-stream");
        }
        builder
            .body(Full::new(self.body.clone()))
            .expect("method, origin-form path and headers are valid by construction")
    }

    /// `GET /` or `POST /echo (1234 B)`, for failure descriptions.
    pub(crate) fn label(&self) -> String {
        if self.body.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {} ({} B)", self.method, self.path, self.body.len())
        }
    }

    /// Checks a complete 2xx body against what this request expects.
    pub(crate) fn check_body(&self, got: &[u8]) -> Result<(), Failure> {
        match self.expect {
            Expect::Complete => Ok(()),
            Expect::Hello if contains(got, b"Hello") => Ok(()),
            Expect::Hello => Err(Failure::new(
                FailureKind::BodyMismatch,
                format!("body lacks \"Hello\": {} B {}", got.len(), preview(got)),
            )),
            Expect::Echo if got == &self.body[..] => Ok(()),
            Expect::Echo => {
                let at = self.body.iter().zip(got).position(|(a, b)| a != b);
                let at = at.unwrap_or(self.body.len().min(got.len()));
                Err(Failure::new(
                    FailureKind::BodyMismatch,
                    format!(
                        "echo differs: sent {} B, got {} B, first difference at byte {at}",
                        self.body.len(),
                        got.len()
                    ),
                ))
            }
        }
    }
}

/// The deterministic body of POST number `seq` of worker `worker`: sizes sweep 1 B .. 64 KiB (both ends included
/// regularly), and the content depends on both numbers so that a response meant for another request is caught.
pub(crate) fn echo_body(worker: usize, seq: u64) -> Bytes {
    let seed = mix(((worker as u64) << 40) ^ seq);
    let len = match seq % 8 {
        0 => 1,
        1 => MAX_ECHO_BODY,
        _ => 1 + (seed % MAX_ECHO_BODY as u64) as usize,
    };
    let mut state = seed | 1;
    let mut body = Vec::with_capacity(len + 8);
    while body.len() < len {
        // xorshift64, eight bytes per step: cheap even in debug builds, and no short repeating pattern.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.extend_from_slice(&state.to_le_bytes());
    }
    body.truncate(len);
    Bytes::from(body)
}

/// splitmix64's finaliser: spreads nearby inputs far apart.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The first bytes of a body, quoted, for a one-line description.
fn preview(body: &[u8]) -> String {
    let head = &body[..body.len().min(60)];
    let text = format!("{:?}", String::from_utf8_lossy(head));
    if body.len() > head.len() {
        format!("{text}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_bodies_are_deterministic_and_cover_the_size_range() {
        assert_eq!(echo_body(3, 17), echo_body(3, 17));
        assert_ne!(echo_body(3, 17), echo_body(4, 17));
        assert_ne!(echo_body(3, 17), echo_body(3, 18));
        let sizes: Vec<usize> = (0..64).map(|seq| echo_body(0, seq).len()).collect();
        assert!(sizes.iter().all(|&n| (1..=MAX_ECHO_BODY).contains(&n)));
        assert!(sizes.contains(&1) && sizes.contains(&MAX_ECHO_BODY));
        assert!(sizes.iter().any(|&n| n > 1 && n < MAX_ECHO_BODY));
    }

    #[test]
    fn echo_check_requires_the_exact_body() {
        let plan = Plan::new(WorkerKind::Post, 0, 5, 0);
        assert_eq!(plan.check_body(&plan.body.clone()), Ok(()));
        let mut wrong = plan.body.to_vec();
        wrong[0] ^= 1;
        let failure = plan.check_body(&wrong).unwrap_err();
        assert_eq!(failure.kind, FailureKind::BodyMismatch);
        assert!(
            failure.detail.contains("first difference at byte 0"),
            "{}",
            failure.detail
        );
        let short = plan
            .check_body(&plan.body[..plan.body.len() - 1])
            .unwrap_err();
        assert!(
            short
                .detail
                .contains(&format!("at byte {}", plan.body.len() - 1)),
            "{}",
            short.detail
        );
    }

    #[test]
    fn hello_check_looks_for_hello_anywhere() {
        let plan = Plan::new(WorkerKind::KeepAlive, 0, 0, 0);
        assert_eq!(plan.check_body(b"v2 says Hello\n"), Ok(()));
        let failure = plan.check_body(b"Bad Gateway").unwrap_err();
        assert_eq!(failure.kind, FailureKind::BodyMismatch);
        assert!(
            failure.detail.contains("\"Bad Gateway\""),
            "{}",
            failure.detail
        );
    }

    #[test]
    fn requests_carry_host_and_one_shot_close() {
        let host = HeaderValue::from_static("127.0.0.1:1");
        let slow = Plan::new(WorkerKind::Slow, 0, 0, 250);
        let req = slow.request(&host, false);
        assert_eq!(req.uri(), "/slow?ms=250");
        assert_eq!(req.headers()[HOST], "127.0.0.1:1");
        assert!(req.headers().get(CONNECTION).is_none());
        let fresh = Plan::new(WorkerKind::Fresh, 0, 0, 0).request(&host, true);
        assert_eq!(fresh.headers()[CONNECTION], "close");
    }
}
