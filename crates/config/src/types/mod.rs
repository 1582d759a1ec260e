//! Stage 2's output: the validated, typed configuration that `baton serve`
//! builds its routing snapshot from. Plain data with public fields; every
//! value here has passed validation (names unique, references resolved,
//! ranges checked), so consumers need not check again. No I/O, and no
//! parsing of its own (`UpstreamAddr`'s `FromStr` is `validate`'s).

mod admin;
mod cluster;
mod pool;
mod route;
mod service;
mod tls;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use admin::Admin;
pub use cluster::{ClientCert, Cluster, ClusterTls, Credentials, Password};
pub use handoff::ListenAddr;
pub use http::{HeaderName, HeaderValue, Method};
pub use ipnet::IpNet;
pub use pool::{
    Balance, ForwardSettings, HealthCheck, InvalidUpstreamAddr, Member, PassiveHealth, Pool,
    StatusRange, UpstreamAddr, UpstreamHost,
};
pub use route::{HeaderMatch, HostMatch, PathMatch, Route, Upstream};
pub use service::{
    BlueGreen, Canary, External, Restart, Rolling, Runner, Service, SocketMode, Strategy,
    Supervised, UnknownStrategy,
};
pub use tls::{Acme, CIPHER_SUITES, CertificateFiles, Hsts, Tls, TlsVersion, UpstreamTls};

/// A validated `baton.toml`.
///
/// `PartialEq` but not `Eq`: the canary thresholds are floats (never NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[proxy]`: process-wide settings.
    pub proxy: ProxySettings,
    /// `[access_log]`; `None` when the section is absent (no access log).
    pub access_log: Option<AccessLog>,
    /// `[[listener]]` in file order; never empty; names and addresses unique.
    pub listeners: Vec<Listener>,
    /// `[pool.NAME]` by name. No name is also a service's, and none from the
    /// file contains `:`; the deploy engine adds a pool `service:NAME` per
    /// service ([`Service::pool`]) to the config it hands to the proxy.
    pub pools: BTreeMap<String, Pool>,
    /// `[service.NAME]` by name.
    pub services: BTreeMap<String, Service>,
    /// `[[route]]` in file order. Every route's upstream is a key of `pools`
    /// or `services` (as its kind says) and every listener it names is in
    /// `listeners`. Shared: the deploy engine copies the config for every
    /// snapshot it publishes, and a copy of 10,000 routes is not free.
    pub routes: Arc<[Route]>,
    /// `[acme]`; `None` when absent.
    pub acme: Option<Acme>,
    /// `[cluster]`; `None` when absent (one machine, no registry).
    pub cluster: Option<Cluster>,
    /// `[admin]`; `None` when absent (the control API on the Unix socket
    /// only).
    pub admin: Option<Admin>,
}

/// `[proxy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Threads serving the data plane.
    pub workers: Workers,
    /// Deadline for in-flight work on a graceful stop (may be zero).
    pub drain_timeout: Duration,
    /// Delay before idle keep-alive connections are closed once draining
    /// starts (may be zero).
    pub idle_grace: Duration,
    /// Peers whose `X-Forwarded-*` headers are trusted; empty: nobody. Each
    /// network has zero host bits (`IpNet::trunc` is a no-op).
    pub trusted_proxies: Vec<IpNet>,
    /// The request id header (lower case).
    pub request_id_header: HeaderName,
}

/// How many threads serve the data plane (`workers` of `[proxy]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// One per core the process may run on (the default).
    #[default]
    PerCore,
    /// Exactly this many (1 to [`Workers::MAX`]).
    Exactly(NonZeroUsize),
}

impl Workers {
    /// The most threads a config may ask for.
    pub const MAX: usize = 1024;

    /// The number of threads: for `PerCore`, the CPUs this process may run
    /// on (its affinity mask and cgroup quota), 1 when that is unknown,
    /// and never more than [`Workers::MAX`].
    pub fn threads(self) -> NonZeroUsize {
        match self {
            Workers::Exactly(n) => n,
            Workers::PerCore => std::thread::available_parallelism()
                .map_or(NonZeroUsize::MIN, |n| n.min(Self::max())),
        }
    }

    fn max() -> NonZeroUsize {
        NonZeroUsize::new(Self::MAX).unwrap_or(NonZeroUsize::MIN)
    }
}

/// `[access_log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// Where lines go.
    pub target: AccessLogTarget,
    /// How lines look.
    pub format: AccessLogFormat,
}

/// Where the access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output (`path = "-"`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// The format of access log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// The Apache/nginx "combined" format.
    Combined,
    /// One JSON object per line.
    Json,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique name (given, or `listener-N` with N its 1-based position).
    pub name: String,
    /// Where to listen; unique among listeners unless the TCP port is 0.
    pub address: ListenAddr,
    /// Open client connections at most (at least 1).
    pub max_connections: u32,
    /// Time allowed to receive a request head (408 after it); non-zero.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (431 above it); 1 KiB to 1 MiB.
    pub max_header_bytes: usize,
    /// Largest request body in bytes (413 above it).
    pub max_body_bytes: u64,
    /// Longest wait for the next bytes of a request body (408 after it);
    /// non-zero.
    pub body_read_timeout: Duration,
    /// How much of a request body is read before a member is picked; at
    /// most 1 MiB.
    pub body_buffer_bytes: usize,
    /// Longest a write waits for the client to take bytes (the connection
    /// is closed after it); non-zero.
    pub write_timeout: Duration,
    /// Idle client connections are closed after this; non-zero.
    pub keepalive_timeout: Duration,
    /// `[listener.tls]`: HTTPS on this listener.
    pub tls: Option<Tls>,
    /// Plain HTTP listeners only: answer every request (but the ACME
    /// HTTP-01 challenge path) with a redirect to `https://` on this port
    /// (301 for GET and HEAD, 308 otherwise).
    pub redirect_https: Option<u16>,
}

/// The name of the pool that serves service `service`: `service:NAME`.
pub(crate) fn service_pool_name(service: &str) -> String {
    format!("service:{service}")
}

impl Config {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}
