//! Typed upstream pools: members, balancing, timeouts, health checks; and
//! the forwarding settings and health checks that services share with pools.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// One `[pool.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The pool's name (its key in `Config::pools`).
    pub name: String,
    /// At least one; addresses unique within the pool. Weights may all be 0.
    /// Empty when `discover` is set: the members then come from the cluster
    /// registry.
    pub members: Vec<Member>,
    /// The service whose registered instances are the members (`[cluster]`
    /// is present); `None`: the members of the file.
    pub discover: Option<String>,
    /// How the proxy forwards requests to the members.
    pub forward: ForwardSettings,
    /// Active checks; `None`: members are healthy unless passively ejected.
    pub health: Option<HealthCheck>,
    /// Passive ejection; `None`: off.
    pub passive: Option<PassiveHealth>,
}

/// How the proxy forwards requests to the members of a pool or to the
/// instances or targets of a service: the keys `[pool.NAME]` and
/// `[service.NAME]` share, with the same defaults and rules (a [`Pool`]
/// holds one as `forward`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    /// How a member is picked.
    pub balance: Balance,
    /// Requests in flight per member at most (at least 1); more wait in
    /// the pool's queue.
    pub max_connections_per_member: u32,
    /// Requests waiting for a member's connection at most, 0 to 1,000,000
    /// (0: none waits).
    pub queue_length: u32,
    /// The longest a request waits for a member's connection; non-zero.
    pub queue_timeout: Duration,
    /// Time allowed to connect to a member; non-zero.
    pub connect_timeout: Duration,
    /// Time from the request sent to the response head; non-zero.
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a response body; non-zero.
    pub body_timeout: Duration,
    /// Pooled idle upstream connections are closed after this; non-zero.
    pub idle_timeout: Duration,
    /// Time allowed for the whole exchange; `None`: no limit.
    pub total_timeout: Option<Duration>,
    /// Replay a non-idempotent request whose body was sent, after a reset.
    pub retry_non_idempotent: bool,
    /// Send a bodyless idempotent request that got a 5xx once more, to
    /// another member not tried yet (the 5xx still counts against the first).
    pub retry_server_errors: bool,
    /// The `Host` header sent upstream.
    pub upstream_host: UpstreamHost,
    /// `tls`: HTTPS to the members; `None`: plain HTTP.
    pub tls: Option<crate::types::UpstreamTls>,
}

/// The balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's).
    WeightedRoundRobin,
    /// Power of two choices on requests in flight.
    LeastRequests,
}

/// One upstream server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Where it is; not resolved.
    pub address: UpstreamAddr,
    /// Relative share, 0 to 1,000,000; 0 means drained (no new requests).
    pub weight: u32,
}

/// An upstream address as written, `HOST:PORT` or `IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    /// Exactly as written in the file (`app.internal:8080`, `[::1]:9001`);
    /// also the `Host` value of `UpstreamHost::Member`.
    pub authority: String,
    /// The host part, without IPv6 brackets (`app.internal`, `::1`).
    pub host: String,
    /// The port (never 0).
    pub port: u16,
    /// The socket address when the host is an IP literal; `None` for a name,
    /// which the proxy resolves itself.
    pub ip: Option<SocketAddr>,
}

impl From<SocketAddr> for UpstreamAddr {
    /// The address of an instance baton started (`127.0.0.1:41234`).
    fn from(addr: SocketAddr) -> UpstreamAddr {
        UpstreamAddr {
            authority: addr.to_string(),
            host: addr.ip().to_string(),
            port: addr.port(),
            ip: Some(addr),
        }
    }
}

impl FromStr for UpstreamAddr {
    type Err = InvalidUpstreamAddr;

    /// `IP:PORT` or `HOST:PORT` with the rules of the file (for
    /// `baton deploy --target`).
    fn from_str(text: &str) -> Result<UpstreamAddr, InvalidUpstreamAddr> {
        crate::validate::parse_upstream_addr(text).map_err(|reason| InvalidUpstreamAddr {
            address: text.to_owned(),
            reason,
        })
    }
}

/// A string that is not a valid [`UpstreamAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {address:?}: {reason}")]
pub struct InvalidUpstreamAddr {
    /// As given.
    pub address: String,
    /// Why it is refused.
    pub reason: String,
}

/// What `Host` header the proxy sends upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// The client's `Host`, unchanged.
    Preserve,
    /// The member's `authority`.
    Member,
    /// This value (a valid header value, not empty).
    Literal(String),
}

/// `[pool.NAME.health]` or `[service.NAME.health]`: active HTTP checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and optional query, starting with `/`.
    pub path: String,
    /// Time between two checks of a member; greater than `timeout`.
    pub interval: Duration,
    /// Time allowed for one check; non-zero.
    pub timeout: Duration,
    /// Time between two checks of a service's instance or target not yet
    /// found ready (a new one, in a deploy or at start); non-zero, at most
    /// `interval`.
    pub start_interval: Duration,
    /// Consecutive successes to become healthy (at least 1).
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy (at least 1).
    pub unhealthy_threshold: u32,
    /// Statuses that count as success.
    pub expect_status: StatusRange,
}

/// An inclusive range of HTTP status codes within 100..=599.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest accepted status.
    pub first: u16,
    /// Highest accepted status (at least `first`).
    pub last: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }
}

/// `[pool.NAME.passive]` or `[service.NAME.passive]`: ejection on failures
/// seen in traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Failures in a row that eject a member (at least 1).
    pub consecutive_failures: u32,
    /// First ejection; doubles on each ejection in a row. Non-zero.
    pub ejection_time: Duration,
    /// Cap on the ejection time; at least `ejection_time`.
    pub max_ejection_time: Duration,
}
