//! One snapshot of everything the dashboard shows, as the JSON of a
//! `snapshot` event of `GET /v1/events` (`DashboardSnapshot` in
//! docs/openapi.json): the services with their sets and instances, the
//! other pools, routes, listeners, certificates, the last deploy of each
//! service with its progress, and the graphs' points.
//!
//! Built from the engine's status, the certificates' report and the
//! [`Live`] history; it reads and never changes anything.

use serde::Serialize;

use super::live::{History, Live, LiveDeploy, Point, Rates, now_ms};

/// Deploys of a service's history a snapshot carries (the newest).
pub const HISTORY: usize = 20;

/// Everything the dashboard shows.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Every service of the config, and those discovered in a cluster.
    pub services: Vec<ServiceView>,
    /// The pools that are not a service's.
    pub pools: Vec<PoolView>,
    /// Every route.
    pub routes: Vec<RouteView>,
    /// Every listener of the proxy.
    pub listeners: Vec<ListenerView>,
    /// The certificates the TLS listeners serve, and ACME's state.
    pub certificates: crate::certs::CertificatesReport,
    /// The last deploy or rollback of each service, running ones first.
    pub deploys: Vec<LiveDeploy>,
}

/// One service.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    /// As `GET /v1/status` shows it (its newest [`HISTORY`] deploys).
    #[serde(flatten)]
    pub status: deploy::ServiceStatus,
    /// Each of its sets' rates, in the order of `sets`.
    pub set_rates: Vec<Rates>,
    /// Its pool (`service:NAME`), with the instances.
    pub pool: Option<PoolView>,
}

/// One pool, its members and its graphs.
#[derive(Debug, Serialize)]
pub struct PoolView {
    /// Its name.
    pub name: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Requests its pause holds now.
    pub held: usize,
    /// Requests waiting in its queue now.
    pub queue_waiting: usize,
    /// Its requests as its clients saw them, over the last seconds.
    #[serde(flatten)]
    pub rates: Rates,
    /// Its members.
    pub members: Vec<MemberView>,
    /// Its graphs' points (only those after the previous snapshot of the
    /// same stream).
    pub series: Vec<Point>,
}

/// One member of a pool: an instance of a service, or a server.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Its address.
    pub address: String,
    /// The version of the set it belongs to (services only).
    pub version: Option<String>,
    /// Healthy and not ejected.
    pub up: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests sent to it since baton started.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Connections to it that could not be opened.
    pub connect_failures: u64,
    /// Attempts on it that failed and were sent again.
    pub retries: u64,
    /// Times passive health ejected it.
    pub ejections: u64,
    /// Over the last seconds.
    #[serde(flatten)]
    pub rates: Rates,
}

/// One route.
#[derive(Debug, Serialize)]
pub struct RouteView {
    /// Its label (its name, or `#N`).
    pub label: String,
    /// Its pool.
    pub pool: String,
    /// Requests it matched since baton started, by status class `1xx` to
    /// `5xx`.
    pub by_status: [u64; 5],
    /// Per second, over the last second.
    pub requests_per_s: f64,
}

/// One listener.
#[derive(Debug, Serialize)]
pub struct ListenerView {
    /// Its name.
    pub name: String,
    /// Connections accepted since it started.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
}

impl Snapshot {
    /// The newest point of any graph.
    pub fn newest_point(&self) -> Option<u64> {
        let services = self.services.iter().filter_map(|s| s.pool.as_ref());
        services
            .chain(&self.pools)
            .filter_map(|p| p.series.last().map(|p| p.t_ms))
            .max()
    }
}

/// What a snapshot is built from, read at once.
pub struct Readings {
    /// The engine's services.
    pub services: Vec<deploy::ServiceStatus>,
    /// The certificates.
    pub certificates: crate::certs::CertificatesReport,
    /// The proxy's pools and members now.
    pub pools: Vec<proxy::PoolReading>,
    /// Its routes now.
    pub routes: Vec<proxy::RouteReading>,
    /// Its listeners now.
    pub listeners: Vec<proxy::ListenerReading>,
}

/// The snapshot of `now`, with the rates and graphs of `live`'s history
/// (graphs' points after `since_ms` only).
pub fn snapshot(live: &Live, now: Readings, since_ms: Option<u64>) -> Snapshot {
    let Readings {
        services,
        certificates,
        pools,
        routes,
        listeners,
    } = now;
    let deploys = live.deploys();
    live.with_history(|h| {
        let mut pools: Vec<PoolView> = pools.iter().map(|p| pool_view(h, p, since_ms)).collect();
        let services = services
            .into_iter()
            .map(|mut status| {
                let name = format!("service:{}", status.name);
                let mut pool = pools
                    .iter()
                    .position(|p| p.name == name)
                    .map(|i| pools.remove(i));
                let set_rates = status
                    .sets
                    .iter()
                    .map(|set| h.members_rates(&name, set.members.iter().map(String::as_str)))
                    .collect();
                for m in pool.iter_mut().flat_map(|p| p.members.iter_mut()) {
                    m.version = status
                        .sets
                        .iter()
                        .find(|s| s.members.contains(&m.address))
                        .map(|s| s.version.clone());
                }
                let excess = status.history.len().saturating_sub(HISTORY);
                status.history.drain(..excess);
                ServiceView {
                    status,
                    set_rates,
                    pool,
                }
            })
            .collect();
        let routes = routes
            .iter()
            .map(|r| {
                let mut by_status = [0u64; 5];
                for by_method in &r.counts.counts {
                    for (sum, n) in by_status.iter_mut().zip(by_method) {
                        *sum += n;
                    }
                }
                RouteView {
                    label: r.label.clone(),
                    pool: r.pool.clone(),
                    by_status,
                    requests_per_s: h.route_rate(&r.label),
                }
            })
            .collect();
        let listeners = listeners
            .iter()
            .map(|l| ListenerView {
                name: l.name.clone(),
                accepted: l.accepted,
                open: l.open,
            })
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot {
            time_ms: now_ms(),
            services,
            pools,
            routes,
            listeners,
            certificates,
            deploys,
        }
    })
}

fn pool_view(h: &History, p: &proxy::PoolReading, since_ms: Option<u64>) -> PoolView {
    PoolView {
        name: p.name.clone(),
        paused: p.paused,
        held: p.held,
        queue_waiting: p.queue.waiting,
        rates: h.pool_rates(&p.name),
        members: p
            .members
            .iter()
            .map(|m| MemberView {
                address: m.address.clone(),
                version: None,
                up: m.up,
                in_flight: m.in_flight,
                requests: m.stats.requests(),
                failures: m.stats.failures(),
                connect_failures: m.troubles.connect_failures,
                retries: m.troubles.retries,
                ejections: m.troubles.ejections,
                rates: h.member_rates(&p.name, &m.address),
            })
            .collect(),
        series: h.points(&p.name, since_ms),
    }
}
