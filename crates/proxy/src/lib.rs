//! baton's data plane: the reverse proxy behind `baton serve`.
//!
//! A [`Proxy`] holds the current [`Snapshot`](snapshot) of the config —
//! routers, pools, settings — behind an atomic pointer. Requests read it
//! once and keep it; [`Proxy::reload`] builds the next one and swaps it in,
//! so a reload never blocks a request and a request never sees half a
//! config. Member health, pooled upstream connections and active checks
//! live in a registry that survives reloads.
//!
//! The proxy measures what it forwards ([`Proxy::member_stats`],
//! [`Proxy::pool_stats`]) and can hold a pool's requests for a while
//! ([`Proxy::pause`], [`Proxy::resume`]); both are kept by pool name across
//! reloads, for the deploy engine; [`Proxy::readings`] reads them all at
//! once for a metrics scrape.
//!
//! Client connections are served by `handoff::http::Server` (the same code
//! that drains apps): limits (431, 408, connection count), `Connection:
//! close` while draining, GOAWAY for HTTP/2, exit as soon as drained. The
//! long-lived streams the server cannot end by itself are ended by the
//! proxy when the drain starts, the way their protocols announce an end: a
//! WebSocket gets a close frame with code 1001 (going away) in both
//! directions, an event stream ends between two events.
//!
//! HTTPS: a listener with `[listener.tls]` sets `X-Forwarded-Proto: https`
//! and adds its `Strict-Transport-Security` to every response; a plain one
//! answers ACME HTTP-01 challenges itself ([`Proxy::with_challenges`]) and,
//! with `redirect_https`, redirects everything else to `https://`. A pool
//! with `tls` reaches its members over TLS (rustls), active checks included.
//!
//! Invariant: the request path never waits on the control plane — no lock
//! it takes is held across an await, and the snapshot is read lock-free.
//! (A paused pool holds requests because the control plane asked for it,
//! within the bounds it gave; an unpaused pool costs one atomic load.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access_log;
mod body;
mod carry;
mod client_body;
mod edge;
mod forward;
mod h1;
mod headers;
mod https;
mod metrics;
mod pause;
mod probe;
mod route_stats;
mod service;
mod snapshot;
mod sse;
mod stats;
#[cfg(test)]
mod tests;
mod tunnel;
mod upstream;
mod upstream_tls;
mod ws_frames;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use handoff::http::{Limits, Server, Stop};
use handoff::{Listeners, NamedListener, Phase};
use http_body_util::{BodyExt, Empty};
use tokio::sync::watch;

pub use access_log::{AccessLog, Format as AccessLogFormat};
pub use balance::{CarriedHealth, QueueStats, StatsSnapshot, Troubles};
pub use body::ProxyBody;
pub use carry::CarriedMember;
pub use metrics::{ListenerReading, MemberReading, PoolReading, RouteReading};
pub use pause::Hold;
pub use probe::{active_check, tls_handshake};
pub use route_stats::{LE_MICROS, METHODS, RouteCounts, STATUS_CLASSES};
pub use snapshot::BuildErrors;
pub use stats::{MemberStats, PoolStats};

use crate::https::Endpoint;
use crate::service::{ProxyService, Shared};
use crate::snapshot::Registry;
use crate::tunnel::Tunnels;
use crate::upstream::ReqBody;

/// How long a client's keep-alive connection stays idle before it is
/// parked, by default: hyper's buffers for it freed, only the socket kept
/// (see `handoff::http::Server::park_idle`). Long enough that a client
/// between two requests of one page load keeps its connection as it is.
pub const PARK_IDLE: Duration = Duration::from_secs(1);

fn empty_body() -> ReqBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A running proxy's configuration state.
pub struct Proxy {
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
    /// The ACME HTTP-01 challenges the plain listeners answer.
    challenges: Option<tls::Challenges>,
    /// The TLS of the listeners with `[listener.tls]`, by listener name.
    server_tls: HashMap<String, tls::ServerTls>,
    /// Each listener's connection counts, once `serve` started it.
    connections: Mutex<Vec<(String, Arc<handoff::http::ConnCounts>)>>,
    /// When idle client connections are parked.
    park_idle: Option<Duration>,
}

/// A member's count of requests in flight; it stays valid after the member
/// is removed from the config, until its last request ends.
#[derive(Clone)]
pub struct InFlight(Arc<balance::MemberHealth>);

impl InFlight {
    /// Requests to the member still in flight.
    pub fn get(&self) -> usize {
        self.0.in_flight()
    }

    /// Resolves when no request to the member is in flight.
    pub async fn idle(&self) {
        self.0.until(|| self.0.in_flight() == 0).await;
    }

    /// Whether both count the same member state (a member removed from
    /// the config and added again has a new one).
    pub fn same(&self, other: &InFlight) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The config has no pool of that name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not pause pool {0:?}: the config has no such pool")]
pub struct UnknownPool(pub String);

/// How the proxy's listeners ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    /// Whether every connection finished before the drain deadline.
    pub drained: bool,
    /// Connections accepted over the proxy's life.
    pub connections: u64,
}

impl Proxy {
    /// Builds the first snapshot. Must be called within a tokio runtime
    /// (active health checks start at once).
    pub fn new(config: &config::Config) -> Result<Proxy, BuildErrors> {
        let mut registry = Registry::default();
        let snapshot = registry.build(config)?;
        Ok(Proxy {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(snapshot),
                tunnels: Tunnels::default(),
            }),
            registry: Mutex::new(registry),
            challenges: None,
            server_tls: HashMap::new(),
            connections: Mutex::default(),
            park_idle: Some(PARK_IDLE),
        })
    }

    /// Parks client connections idle for `after` ([`PARK_IDLE`] by
    /// default), or never (`None`): for measuring what parking saves.
    pub fn with_park_idle(mut self, after: Option<Duration>) -> Proxy {
        self.park_idle = after;
        self
    }

    /// Gives the listener named `listener`, which has `[listener.tls]`, its
    /// TLS: [`serve`](Self::serve) makes each of its connections start with
    /// a handshake with `tls`'s configuration (certificates reloaded inside
    /// `tls` apply to new connections). Ignored for a listener without
    /// `[listener.tls]`.
    pub fn with_server_tls(mut self, listener: impl Into<String>, tls: tls::ServerTls) -> Proxy {
        self.server_tls.insert(listener.into(), tls);
        self
    }

    /// Makes every listener without TLS answer the ACME HTTP-01 challenges
    /// in `challenges` itself, before routing and before any redirect:
    /// `GET` or `HEAD` of `/.well-known/acme-challenge/TOKEN` gets a 200
    /// `text/plain` with the key authorization while `challenges` has the
    /// token, a 404 otherwise (any other method, a 405); nothing under that
    /// path reaches an upstream. Without it, that path is routed like any
    /// other (but still never redirected to HTTPS). Takes effect for the
    /// listeners [`serve`](Self::serve) starts afterwards.
    pub fn with_challenges(mut self, challenges: tls::Challenges) -> Proxy {
        self.challenges = Some(challenges);
        self
    }

    /// Publishes `config`. On error nothing changes: the current snapshot
    /// keeps serving.
    pub fn reload(&self, config: &config::Config) -> Result<(), BuildErrors> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = registry.build(config)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        registry.end_departed();
        registry.wake_queues();
        Ok(())
    }

    /// Says that `member` of `pool` was just checked healthy by the caller
    /// (e.g. an instance that passed its readiness probes), so that when the
    /// next reload adds it, it takes traffic at once instead of waiting for
    /// the proxy's own checks to pass again.
    pub fn verified(&self, pool: &str, member: &str) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.verify(pool, member);
    }

    /// Requests in flight to `member` of `pool` right now, across
    /// snapshots; `None` when the pool has no such member.
    pub fn in_flight_counter(&self, pool: &str, member: &str) -> Option<InFlight> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.member_health(pool, member).map(InFlight)
    }

    /// The statistics of `member` of `pool` (its `host:port`), across
    /// snapshots; `None` when the current config has no such member. The
    /// handle stays valid after the member is removed.
    pub fn member_stats(&self, pool: &str, member: &str) -> Option<MemberStats> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.member_health(pool, member).map(MemberStats)
    }

    /// The statistics of `pool` as its clients saw them; `None` when the
    /// current config has no such pool. They exist from the first snapshot
    /// that has the pool ([`Proxy::new`] or [`Proxy::reload`], once it
    /// returned) and count across reloads for as long as the pool stays in
    /// the config; a pool removed and added again starts from zero (a handle
    /// taken before keeps the old counts, which stop growing).
    pub fn pool_stats(&self, pool: &str) -> Option<PoolStats> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.pool(pool).map(|p| PoolStats {
            stats: p.stats.clone(),
            queue: p.queue.clone(),
        })
    }

    /// Pauses `pool`: from now on each request routed to it waits until
    /// [`resume`](Self::resume), within `hold`'s bounds — one over
    /// `max_requests` waiting gets a 503 at once, one that waited `max_wait`
    /// gets a 503; both with `Retry-After` (`max_wait` in whole seconds,
    /// at least 1) and count as failures in the pool's stats. Requests
    /// already past the gate are not affected. Pausing a paused pool
    /// replaces the bounds, for the requests already waiting too.
    ///
    /// The pause lasts across reloads while the config has the pool; a
    /// reload that removes the pool ends it (its held requests go on). An
    /// error when the current config has no such pool: nothing is paused.
    pub fn pause(&self, pool: &str, hold: Hold) -> Result<(), UnknownPool> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let entry = registry
            .pool(pool)
            .ok_or_else(|| UnknownPool(pool.to_owned()))?;
        entry.gate.pause(hold);
        tracing::info!(pool, max_wait = ?hold.max_wait, max_requests = hold.max_requests, "pool paused");
        Ok(())
    }

    /// Resumes `pool`: every held request goes on at once, with the
    /// snapshot current now (so a reload between the pause and the resume
    /// sends them to the new members). Whether the pool was paused; `false`
    /// for an unknown pool.
    pub fn resume(&self, pool: &str) -> bool {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let resumed = registry.pool(pool).is_some_and(|p| p.gate.resume());
        if resumed {
            tracing::info!(pool, "pool resumed");
        }
        resumed
    }

    /// Whether `pool` is paused; `false` for an unknown pool.
    pub fn paused(&self, pool: &str) -> bool {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.pool(pool).is_some_and(|p| p.gate.is_paused())
    }

    /// Serves every listener until `stop` says so, then drains them
    /// together within `config.proxy.drain_timeout`. `listeners` pairs each
    /// bound socket with its `[[listener]]` settings. `ready` is told once
    /// every listener accepts.
    ///
    /// Whether a listener is HTTPS (`tls`) is fixed here, like its socket:
    /// it decides the handshake, `X-Forwarded-Proto`, whether HSTS is sent
    /// and whether challenges and redirects are answered. The rest (limits
    /// aside) follows the current snapshot.
    ///
    /// # Panics
    ///
    /// When a listener has `tls` but was given no
    /// [`with_server_tls`](Self::with_server_tls): it would otherwise
    /// speak plain HTTP where HTTPS was configured. Nothing is served then.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<(NamedListener, config::Listener)>,
        settings: config::ProxySettings,
        stop: watch::Receiver<Stop>,
        ready: impl FnOnce() + Send,
    ) -> StopReport {
        for (_, cfg) in &listeners {
            assert!(
                cfg.tls.is_none() || self.server_tls.contains_key(&cfg.name),
                "listener {}: [listener.tls] without Proxy::with_server_tls",
                cfg.name
            );
        }
        let mut servers = Vec::with_capacity(listeners.len());
        let mut phases = Vec::with_capacity(listeners.len());
        for (socket, cfg) in listeners {
            let mut server = Server::new(Listeners::from_listeners(vec![socket]))
                .notify(false)
                .drain_timeout(settings.drain_timeout)
                .idle_grace(settings.idle_grace)
                .park_idle(self.park_idle)
                .limits(Limits {
                    max_connections: cfg.max_connections as usize,
                    header_read_timeout: Some(cfg.header_read_timeout),
                    keepalive_timeout: Some(cfg.keepalive_timeout),
                    max_header_bytes: cfg.max_header_bytes,
                    write_timeout: Some(cfg.write_timeout),
                })
                .with_stop(stop.clone());
            if cfg.tls.is_some()
                && let Some(tls) = self.server_tls.get(&cfg.name).cloned()
            {
                server = server.tls(Arc::new(move || tls.server_config()));
            }
            phases.push(server.lifecycle());
            self.connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(server.connection_counts());
            let shared = self.shared.clone();
            let https = cfg.tls.is_some();
            let endpoint = Arc::new(Endpoint {
                name: Arc::from(cfg.name.as_str()),
                https,
                challenges: self.challenges.clone().filter(|_| !https),
            });
            servers.push(tokio::spawn(server.serve_with(move |info| ProxyService {
                shared: shared.clone(),
                endpoint: endpoint.clone(),
                client: info.peer.map(crate::headers::Client::new),
            })));
        }
        for phase in &mut phases {
            let _ = phase.wait_for(|p| *p >= Phase::Ready).await;
        }
        ready();
        let streams = tokio::spawn({
            let shared = self.shared.clone();
            let mut stop = stop.clone();
            async move {
                // A dropped sender stops the servers too.
                let _ = stop.wait_for(|s| *s >= Stop::Drain).await;
                shared.tunnels.go_away();
                if stop.wait_for(|s| *s == Stop::Now).await.is_ok() {
                    shared.tunnels.close();
                }
            }
        });

        let mut report = StopReport {
            drained: true,
            connections: 0,
        };
        let mut drain_started = None;
        for server in servers {
            match server.await {
                Ok(Ok(r)) => {
                    report.connections += r.connections;
                    report.drained &= r.outcome == handoff::DrainOutcome::Drained;
                    let began = tokio::time::Instant::now() - r.drain_time;
                    drain_started =
                        Some(drain_started.map_or(began, |d: tokio::time::Instant| d.min(began)));
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "listener failed");
                    report.drained = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "listener task failed");
                    report.drained = false;
                }
            }
        }
        if self.shared.tunnels.active() > 0 {
            let began = drain_started.unwrap_or_else(tokio::time::Instant::now);
            self.shared
                .tunnels
                .drain(began + settings.drain_timeout.max(Duration::from_millis(1)))
                .await;
        }
        streams.abort();
        report
    }
}
