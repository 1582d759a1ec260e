//! What the proxy can tell a metrics scrape: every pool of the current
//! config with its request counts, its queue, its pause and its members
//! (health, requests in flight, their statistics, connect failures,
//! retries and ejections), every route with its counts, read from the counters the data plane already keeps.
//!
//! Read-only and off the request path: a reading takes the registry's lock
//! (the control plane's, never taken by a request) and loads atomics; it
//! must never add work to the data plane or change any state.

use balance::{QueueStats, StatsSnapshot, Troubles};
use tokio::time::Instant;

use crate::Proxy;
use crate::route_stats::RouteCounts;

/// One pool of the current config, as a scrape reads it.
#[derive(Debug, Clone)]
pub struct PoolReading {
    /// The pool's name.
    pub name: String,
    /// Its requests as its clients saw them (see [`PoolStats`](crate::PoolStats)).
    pub stats: StatsSnapshot,
    /// Its queue now.
    pub queue: QueueStats,
    /// Its members, by address.
    pub members: Vec<MemberReading>,
    /// Whether it is paused now.
    pub paused: bool,
    /// Requests held by its pause now.
    pub held: usize,
}

/// One listener's client connections, as a scrape reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerReading {
    /// The listener's name.
    pub name: String,
    /// Connections accepted since it started serving.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Of those, idle HTTP/1 connections parked now: only their socket is
    /// held (`handoff::http::Server::park_idle`).
    pub parked: u64,
    /// Connections answered 408 since it started serving: no request head
    /// within `header_read_timeout`.
    pub head_timeouts: u64,
    /// Connections closed, and HTTP/2 streams reset, since it started
    /// serving: their client took nothing for `write_timeout`.
    pub write_timeouts: u64,
}

/// One route of the current config, as a scrape reads it.
#[derive(Debug, Clone)]
pub struct RouteReading {
    /// Its label: its `name`, else `#N` (its position in the file, from 1).
    pub label: String,
    /// The pool it sends requests to (`service:NAME` for a service).
    pub pool: String,
    /// Its counts.
    pub counts: RouteCounts,
}

/// One member of a pool, as a scrape reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReading {
    /// Its address (`host:port`), as in the config.
    pub address: String,
    /// Healthy and not passively ejected: it may take requests.
    pub up: bool,
    /// Requests to it in flight now.
    pub in_flight: usize,
    /// Every request the proxy sent to it (see
    /// [`MemberStats`](crate::MemberStats)).
    pub stats: StatsSnapshot,
    /// Its connect failures, retries and passive ejections.
    pub troubles: Troubles,
}

impl Proxy {
    /// Every pool of the current config with its members, sorted by name
    /// (pools) and address (members).
    pub fn readings(&self) -> Vec<PoolReading> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut pools: Vec<PoolReading> = registry
            .pools()
            .map(|(name, entry)| PoolReading {
                name: name.to_owned(),
                stats: entry.stats.snapshot(),
                queue: entry.queue.stats(),
                members: Vec::new(),
                paused: entry.gate.is_paused(),
                held: entry.gate.held_now(),
            })
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        for (pool, address, health) in registry.members() {
            if let Ok(i) = pools.binary_search_by(|p| p.name.as_str().cmp(pool)) {
                pools[i].members.push(MemberReading {
                    address: address.to_owned(),
                    // Read without `is_available`, which publishes the end
                    // of an ejection as it observes it: a scrape changes
                    // nothing.
                    up: health.is_healthy()
                        && health.ejected_until().is_none_or(|until| until <= now),
                    in_flight: health.in_flight(),
                    stats: health.stats().snapshot(),
                    troubles: health.troubles(),
                });
            }
        }
        for p in &mut pools {
            p.members.sort_by(|a, b| a.address.cmp(&b.address));
        }
        pools
    }

    /// Every listener [`serve`](Proxy::serve) serves, with its
    /// connections, in config order.
    pub fn listener_readings(&self) -> Vec<ListenerReading> {
        let connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections
            .iter()
            .map(|(name, c)| ListenerReading {
                name: name.clone(),
                accepted: c.accepted(),
                open: c.open(),
                parked: c.parked(),
                head_timeouts: c.head_timeouts(),
                write_timeouts: c.write_timeouts(),
            })
            .collect()
    }

    /// Calls `each` with every route of the current config, in no order:
    /// its label and the requests it counted so far (every method and
    /// status). What a rate needs, read in place: nothing is copied,
    /// sorted or allocated per route, so that a sampler can read 10,000
    /// routes every second at the cost of their atomics. `each` runs under
    /// the registry's lock: it must not call into the proxy.
    pub fn route_totals(&self, mut each: impl FnMut(&str, u64)) {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        for (label, _, stats) in registry.routes() {
            each(label, stats.total());
        }
    }

    /// Every route of the current config with its counts, sorted by label.
    pub fn route_readings(&self) -> Vec<RouteReading> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut routes: Vec<RouteReading> = registry
            .routes()
            .map(|(label, pool, stats)| RouteReading {
                label: label.to_owned(),
                pool: pool.to_owned(),
                counts: stats.counts(),
            })
            .collect();
        routes.sort_by(|a, b| a.label.cmp(&b.label));
        routes
    }
}
