//! What load to generate: the [`LoadConfig`] a caller hands to [`crate::Load::start`].
//!
//! This module only describes the load; it never opens a socket. Every field is public so a test can spell out
//! exactly the traffic it needs with struct-update syntax over [`LoadConfig::new`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The shape and the bounds of one load run.
///
/// Seven kinds of workers run concurrently, each issuing one request at a time (see [`crate::WorkerKind`]):
/// keep-alive `GET /`, new-connection `GET /`, keep-alive `POST /echo` with bodies of 1 B to 64 KiB, keep-alive
/// `GET /slow?ms=N` so that slow requests are always in flight, and the long-lived kinds: WebSocket echoes,
/// server-sent event streams and HTTP/2. The run is bounded twice: by `max_duration` and, optionally, by
/// `max_requests`; it stops by itself at whichever comes first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// The address every connection goes to.
    pub target: SocketAddr,
    /// The `Host` header to send; `None` sends the target address, e.g. `127.0.0.1:8080`.
    pub host_header: Option<String>,
    /// Workers sending `GET /` sequentially on one persistent keep-alive connection each.
    pub keepalive_workers: usize,
    /// Workers sending `GET /` on a new TCP connection per request (announced with `Connection: close`).
    pub fresh_workers: usize,
    /// Workers sending `POST /echo` on a keep-alive connection; the response body must equal the request body.
    pub post_workers: usize,
    /// Workers sending `GET /slow?ms={slow_ms}` on a keep-alive connection.
    pub slow_workers: usize,
    /// How long the server is asked to take for each slow request, in milliseconds.
    pub slow_ms: u64,
    /// Workers sending binary messages on one WebSocket each (`GET /ws`, echoed).
    pub websocket_workers: usize,
    /// Workers reading one server-sent event stream each (`GET /events?interval_ms={sse_interval_ms}`).
    pub sse_workers: usize,
    /// The interval between events each stream asks for, in milliseconds.
    pub sse_interval_ms: u64,
    /// Workers sending `GET /` and `POST /echo` in turn on one HTTP/2 connection each (cleartext, prior knowledge).
    pub h2_workers: usize,
    /// A request not completely answered (connect, headers and whole body) within this time is a timeout failure.
    pub request_timeout: Duration,
    /// No new request starts after this much time since [`crate::Load::start`].
    pub max_duration: Duration,
    /// No more than this many requests are started in total, over all workers.
    pub max_requests: Option<u64>,
    /// A pause each worker takes after every request; `None` sends as fast as the server answers. A pause longer
    /// than the server's keep-alive idle timeout makes it close idle connections; unless it announced that with
    /// `Connection: close`, the next request on such a connection fails, as it would for any real client.
    pub pace: Option<Duration>,
}

impl LoadConfig {
    /// The default load (see [`Default`]) aimed at `target`.
    pub fn new(target: SocketAddr) -> LoadConfig {
        LoadConfig {
            target,
            ..LoadConfig::default()
        }
    }

    /// The `Host` header value requests carry.
    pub fn host(&self) -> String {
        self.host_header
            .clone()
            .unwrap_or_else(|| self.target.to_string())
    }

    /// How many workers this configuration runs in total.
    pub fn total_workers(&self) -> usize {
        self.keepalive_workers
            + self.fresh_workers
            + self.post_workers
            + self.slow_workers
            + self.websocket_workers
            + self.sse_workers
            + self.h2_workers
    }

    /// Checks that the configuration can run: at least one worker, a non-zero request timeout, and a `Host`
    /// header that is a valid header value.
    ///
    /// # Errors
    ///
    /// Every problem found ([`InvalidLoad`]).
    pub fn validate(&self) -> Result<(), InvalidLoad> {
        let mut problems = Vec::new();
        if self.total_workers() == 0 {
            problems.push(Problem::NoWorkers);
        }
        if self.request_timeout.is_zero() {
            problems.push(Problem::ZeroTimeout);
        }
        if http::HeaderValue::try_from(self.host()).is_err() {
            problems.push(Problem::BadHost(self.host()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidLoad(problems))
        }
    }
}

/// Why a [`LoadConfig`] cannot run: every problem found, shown on one line separated by `; `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidLoad(pub Vec<Problem>);

/// One thing wrong with a [`LoadConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Every worker count is 0.
    #[error(
        "no workers: at least one of keepalive, fresh, post, slow, websocket, sse or h2 must be > 0"
    )]
    NoWorkers,
    /// `request_timeout` is zero.
    #[error("the request timeout must be greater than zero")]
    ZeroTimeout,
    /// The `Host` header, which cannot be sent as a header value.
    #[error("{0:?} is not a valid Host header value")]
    BadHost(String),
}

impl Default for LoadConfig {
    /// Small load that a 2-core machine carries next to the server under test: 2 keep-alive, 2 new-connection,
    /// 1 POST and 1 slow (300 ms) worker, no long-lived kinds (streams of 50 ms events when asked for), a 10 s
    /// request timeout, at most 120 s, aimed at `127.0.0.1:8080`.
    fn default() -> LoadConfig {
        LoadConfig {
            target: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            host_header: None,
            keepalive_workers: 2,
            fresh_workers: 2,
            post_workers: 1,
            slow_workers: 1,
            slow_ms: 300,
            websocket_workers: 0,
            sse_workers: 0,
            sse_interval_ms: 50,
            h2_workers: 0,
            request_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(120),
            max_requests: None,
            pace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_defaults_to_the_target_address() {
        let cfg = LoadConfig::new("127.0.0.1:4321".parse().unwrap());
        assert_eq!(cfg.host(), "127.0.0.1:4321");
        let v6 = LoadConfig::new("[::1]:80".parse().unwrap());
        assert_eq!(v6.host(), "[::1]:80");
        let named = LoadConfig {
            host_header: Some("app.test".into()),
            ..cfg
        };
        assert_eq!(named.host(), "app.test");
    }

    #[test]
    fn default_runs_six_workers() {
        assert_eq!(LoadConfig::default().total_workers(), 6);
        assert_eq!(LoadConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_lists_every_problem() {
        let cfg = LoadConfig {
            keepalive_workers: 0,
            fresh_workers: 0,
            post_workers: 0,
            slow_workers: 0,
            request_timeout: Duration::ZERO,
            host_header: Some("bad\nhost".into()),
            ..LoadConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(
            err.0,
            [
                Problem::NoWorkers,
                Problem::ZeroTimeout,
                Problem::BadHost("bad\nhost".into())
            ]
        );
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("no workers: "), "{line}");
        assert!(
            line.contains("; the request timeout must be greater than zero; "),
            "{line}"
        );
        assert!(line.ends_with("is not a valid Host header value"), "{line}");
    }
}
