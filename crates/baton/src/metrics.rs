//! `GET /metrics` on the control socket: the Prometheus text exposition
//! (format 0.0.4) of what baton already counts, read at scrape time.
//!
//! Owns the few counters only the binary sees (config reloads, deploys by
//! outcome and their durations: [`Counters`]) and the rendering of a scrape
//! ([`render`]), which reads the proxy's pools, members and routes
//! ([`proxy::Proxy::readings`], [`proxy::Proxy::route_readings`]), the
//! engine's services and the process's `/proc` entries (`process`). It
//! must never add work to the request path: every request-path number here
//! is a counter the proxy keeps anyway, and every
//! label value comes from the config (pool, member, service, strategy) or
//! a fixed list — never from a request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use proxy::{
    LE_MICROS, ListenerReading, METHODS, PoolReading, RouteReading, STATUS_CLASSES, StatsSnapshot,
};

mod process;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The finite `le` bounds of the deploy duration histogram, in seconds.
const DEPLOY_LE: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// How a deploy or rollback that ran ended, for `baton_deploys_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeployOutcome {
    /// A deploy that completed.
    Deployed,
    /// A deploy that failed (and was undone).
    Failed,
    /// A rollback that completed.
    RolledBack,
    /// A rollback that failed.
    RollbackFailed,
}

impl DeployOutcome {
    fn label(self) -> &'static str {
        match self {
            DeployOutcome::Deployed => "deployed",
            DeployOutcome::Failed => "failed",
            DeployOutcome::RolledBack => "rolled_back",
            DeployOutcome::RollbackFailed => "rollback_failed",
        }
    }
}

/// The counters only the binary sees, shared by the control API and the
/// reload path. Cheap to update; never on the request path.
#[derive(Debug, Default)]
pub struct Counters {
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    /// By (service, strategy, outcome); services and strategies come from
    /// the config, so the map is bounded by it.
    deploys: Mutex<BTreeMap<(String, String, DeployOutcome), Deploys>>,
}

/// The deploys of one (service, strategy, outcome): their number and
/// durations.
#[derive(Debug, Clone, Default, PartialEq)]
struct Deploys {
    count: u64,
    /// Per bucket of [`DEPLOY_LE`], then `+Inf`: not cumulative.
    buckets: [u64; DEPLOY_LE.len() + 1],
    sum_seconds: f64,
}

impl Counters {
    /// Counts one config reload (SIGHUP or `POST /v1/reload`): applied, or
    /// refused (the file, or a certificate).
    pub fn reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one deploy or rollback that ran (one refused before it
    /// started is not counted: its service may not even exist).
    pub fn deploy(
        &self,
        service: &str,
        strategy: &str,
        outcome: DeployOutcome,
        took: std::time::Duration,
    ) {
        let mut deploys = self.deploys.lock().unwrap_or_else(|e| e.into_inner());
        let entry = deploys
            .entry((service.to_owned(), strategy.to_owned(), outcome))
            .or_default();
        let seconds = took.as_secs_f64();
        entry.count += 1;
        entry.sum_seconds += seconds;
        entry.buckets[DEPLOY_LE.partition_point(|&le| le < seconds)] += 1;
    }
}

/// Everything one scrape shows, read before encoding.
#[derive(Debug)]
struct Scrape {
    pools: Vec<PoolReading>,
    routes: Vec<RouteReading>,
    listeners: Vec<ListenerReading>,
    process: process::Process,
    certs: crate::certs::CertificatesReport,
    /// (service, version) of every service with a version.
    versions: Vec<(String, String)>,
    reloads: [(&'static str, u64); 2],
    deploys: Vec<((String, String, DeployOutcome), Deploys)>,
}

/// The exposition now: the proxy's pools and members, the engine's
/// services, and `counters`.
pub fn render(
    proxy: &proxy::Proxy,
    engine: &deploy::Engine,
    counters: &Counters,
    certs: &crate::certs::CertificatesReport,
) -> String {
    let versions = engine
        .status()
        .into_iter()
        .filter_map(|s| Some((s.name, s.version?)))
        .collect();
    let deploys = counters
        .deploys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let scrape = Scrape {
        pools: proxy.readings(),
        routes: proxy.route_readings(),
        listeners: proxy.listener_readings(),
        process: process::read(),
        certs: certs.clone(),
        versions,
        reloads: [
            ("ok", counters.reloads_ok.load(Ordering::Relaxed)),
            ("refused", counters.reloads_refused.load(Ordering::Relaxed)),
        ],
        deploys,
    };
    encode(scrape)
}

fn encode(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    // Writing to a String cannot fail, and the collector only fails when
    // its writer does.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// A family of counters: its name (without `_total`), its help, and one
/// sample per label set.
fn counters<'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = ([(&'a str, &'a str); N], u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in samples {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
    }
    Ok(())
}

/// A family of gauges, one sample per label set.
fn gauges<'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = ([(&'a str, &'a str); N], u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, n) in samples {
        m.encode_family(&labels)?.encode_gauge(&n)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let enc = &mut enc;
        let pools = || self.pools.iter().map(|p| ([("pool", p.name.as_str())], p));
        counters(
            enc,
            "baton_requests",
            "Requests routed to a pool, as its clients saw them (retries inside).",
            pools().map(|(l, p)| (l, p.stats.requests())),
        )?;
        counters(
            enc,
            "baton_request_failures",
            "Requests of a pool that failed: a 5xx (the proxy's own included) or a body that broke off.",
            pools().map(|(l, p)| (l, p.stats.failures())),
        )?;
        let mut m = enc.encode_descriptor(
            "baton_request_duration",
            "Request duration by pool, from reaching the pool to the end of the response body (_sum is estimated from the buckets).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (labels, p) in pools() {
            let (buckets, sum) = histogram(&p.stats);
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                sum,
                p.stats.requests(),
                &buckets,
                None,
            )?;
        }
        self.encode_members(enc)?;
        gauges(
            enc,
            "baton_queue_waiting",
            "Requests of a pool waiting now for a member's connection.",
            None,
            pools().map(|(l, p)| (l, p.queue.waiting as u64)),
        )?;
        counters(
            enc,
            "baton_queue_refused",
            "Requests of a pool its queue refused: full, or waited too long (timeout).",
            self.pools.iter().flat_map(|p| {
                [("full", p.queue.full), ("timeout", p.queue.timed_out)]
                    .map(|(reason, n)| ([("pool", p.name.as_str()), ("reason", reason)], n))
            }),
        )?;
        counters(
            enc,
            "baton_config_reloads",
            "Config reloads (SIGHUP or the control API): applied (ok) or refused.",
            self.reloads.map(|(result, n)| ([("result", result)], n)),
        )?;
        let deploys = || {
            self.deploys
                .iter()
                .map(|((service, strategy, outcome), d)| {
                    let labels = [
                        ("service", service.as_str()),
                        ("strategy", strategy.as_str()),
                        ("outcome", outcome.label()),
                    ];
                    (labels, d)
                })
        };
        counters(
            enc,
            "baton_deploys",
            "Deploys and rollbacks that ran, by service, strategy and outcome.",
            deploys().map(|(l, d)| (l, d.count)),
        )?;
        let mut m = enc.encode_descriptor(
            "baton_deploy_duration",
            "How long deploys and rollbacks that ran took, by service, strategy and outcome.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (labels, d) in deploys() {
            let buckets: Vec<(f64, u64)> = DEPLOY_LE
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(d.buckets)
                .collect();
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                d.sum_seconds,
                d.count,
                &buckets,
                None,
            )?;
        }
        let mut m = enc.encode_descriptor(
            "baton_service_version",
            "The version a service serves (always 1).",
            None,
            MetricType::Info,
        )?;
        for (service, version) in &self.versions {
            let labels = [("service", service.as_str()), ("version", version.as_str())];
            m.encode_info(&labels)?;
        }
        self.encode_routes(enc)?;
        self.encode_pauses(enc)?;
        self.encode_listeners(enc)?;
        self.encode_certificates(enc)?;
        self.encode_process(enc)
    }
}

impl Scrape {
    /// Every member of every pool, labelled by pool and member address.
    fn members(&self) -> impl Iterator<Item = ([(&str, &str); 2], &proxy::MemberReading)> {
        self.pools.iter().flat_map(|p| {
            p.members.iter().map(move |m| {
                let labels = [("pool", p.name.as_str()), ("member", m.address.as_str())];
                (labels, m)
            })
        })
    }

    fn encode_members(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauges(
            enc,
            "baton_member_up",
            "1 when a pool member is healthy and not passively ejected, else 0.",
            None,
            self.members().map(|(l, m)| (l, u64::from(m.up))),
        )?;
        gauges(
            enc,
            "baton_member_in_flight",
            "Requests in flight to a pool member.",
            None,
            self.members().map(|(l, m)| (l, m.in_flight as u64)),
        )?;
        counters(
            enc,
            "baton_member_requests",
            "Attempts the proxy sent to a pool member (a retried request counts on each member it tried).",
            self.members().map(|(l, m)| (l, m.stats.requests())),
        )?;
        counters(
            enc,
            "baton_member_request_failures",
            "Attempts on a pool member that failed: connect failure, timeout, 5xx or a body that broke off.",
            self.members().map(|(l, m)| (l, m.stats.failures())),
        )?;
        counters(
            enc,
            "baton_member_connect_failures",
            "Connections to a pool member that could not be opened.",
            self.members()
                .map(|(l, m)| (l, m.troubles.connect_failures)),
        )?;
        counters(
            enc,
            "baton_member_retries",
            "Attempts on a pool member that failed before anything was answered and were sent again (to another member, or on a fresh connection).",
            self.members().map(|(l, m)| (l, m.troubles.retries)),
        )?;
        counters(
            enc,
            "baton_member_ejections",
            "Times passive health checks ejected a pool member.",
            self.members().map(|(l, m)| (l, m.troubles.ejections)),
        )
    }

    fn encode_routes(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        // Only what happened: 8 methods × 5 classes per route would be
        // mostly zeros.
        let happened = self.routes.iter().flat_map(|r| {
            METHODS
                .iter()
                .zip(&r.counts.counts)
                .flat_map(move |(method, by_status)| {
                    STATUS_CLASSES
                        .iter()
                        .zip(by_status)
                        .filter(|(_, n)| **n != 0)
                        .map(move |(status, n)| {
                            let labels = [
                                ("route", r.label.as_str()),
                                ("pool", r.pool.as_str()),
                                ("method", *method),
                                ("status", *status),
                            ];
                            (labels, *n)
                        })
                })
        });
        counters(
            enc,
            "baton_route_requests",
            "Requests matched by a route, by method and status class, counted at the response's head.",
            happened,
        )?;
        let mut m = enc.encode_descriptor(
            "baton_route_request_duration",
            "Time from the request's arrival to its response's head, by route.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for r in &self.routes {
            let labels = [("route", r.label.as_str()), ("pool", r.pool.as_str())];
            let count: u64 = r.counts.buckets.iter().sum();
            let (buckets, sum) = route_histogram(&r.counts.buckets);
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }

    fn encode_pauses(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let pools = || self.pools.iter().map(|p| ([("pool", p.name.as_str())], p));
        gauges(
            enc,
            "baton_pool_paused",
            "1 while a pool (a service's) is paused, else 0.",
            None,
            pools().map(|(l, p)| (l, u64::from(p.paused))),
        )?;
        gauges(
            enc,
            "baton_pause_held",
            "Requests held now by a pool's pause.",
            None,
            pools().map(|(l, p)| (l, p.held as u64)),
        )
    }

    fn encode_listeners(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let listeners = || {
            self.listeners
                .iter()
                .map(|l| ([("listener", l.name.as_str())], l))
        };
        counters(
            enc,
            "baton_listener_connections_accepted",
            "Client connections a listener accepted since baton started.",
            listeners().map(|(labels, l)| (labels, l.accepted)),
        )?;
        gauges(
            enc,
            "baton_listener_connections_open",
            "Client connections open now on a listener (TLS handshakes included).",
            None,
            listeners().map(|(labels, l)| (labels, l.open)),
        )?;
        gauges(
            enc,
            "baton_listener_connections_parked",
            "Of a listener's open connections, the idle HTTP/1 ones parked now: only their socket is held.",
            None,
            listeners().map(|(labels, l)| (labels, l.parked)),
        )?;
        let limits = self.listeners.iter().flat_map(|l| {
            [
                (
                    [("listener", l.name.as_str()), ("limit", "head")],
                    l.head_timeouts,
                ),
                (
                    [("listener", l.name.as_str()), ("limit", "write")],
                    l.write_timeouts,
                ),
            ]
        });
        counters(
            enc,
            "baton_listener_timeouts",
            "Clients a listener's time limits ended since baton started: limit=head, connections answered 408 for a request head not in within header_read_timeout; limit=write, connections closed (and HTTP/2 streams reset) whose client took nothing for write_timeout.",
            limits,
        )
    }

    fn encode_certificates(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let names: Vec<(&crate::certs::CertificateReport, u64, String)> = self
            .certs
            .certificates
            .iter()
            .filter_map(|c| {
                let not_after = c.not_after_unix?;
                let name = match &c.file {
                    Some(file) => file.clone(),
                    None => format!("acme:{}", c.names.first().map_or("", String::as_str)),
                };
                Some((c, not_after, name))
            })
            .collect();
        gauges(
            enc,
            "baton_certificate_expiry_timestamp",
            "When a certificate a listener serves expires, in seconds since the Unix epoch (certificate: its file, or acme:FIRST-NAME).",
            Some(&Unit::Seconds),
            names.iter().map(|(c, not_after, name)| {
                let labels = [
                    ("listener", c.listener.as_str()),
                    ("source", c.source.as_str()),
                    ("certificate", name.as_str()),
                ];
                (labels, *not_after)
            }),
        )?;
        let Some(acme) = &self.certs.acme else {
            return Ok(());
        };
        counters(
            enc,
            "baton_acme_orders",
            "Certificate orders the ACME task placed since baton started.",
            [([], acme.orders)],
        )?;
        counters(
            enc,
            "baton_acme_certificates_issued",
            "Certificates the ACME task obtained since baton started; orders minus these failed.",
            [([], acme.issued)],
        )?;
        gauges(
            enc,
            "baton_acme_failures_in_a_row",
            "The ACME task's failed attempts since its last success (0: the last renewal succeeded).",
            None,
            [([], u64::from(acme.failures))],
        )
    }

    fn encode_process(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let p = &self.process;
        if let Some(v) = p.cpu_seconds {
            enc.encode_descriptor(
                "process_cpu",
                "User and system CPU time of the baton process.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, f64, u64>(&v, None)?;
        }
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory of the baton process.",
                Some(Unit::Bytes),
                p.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory of the baton process.",
                Some(Unit::Bytes),
                p.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors of the baton process.",
                None,
                p.open_fds,
            ),
            (
                "process_max_fds",
                "The soft limit on open file descriptors.",
                None,
                p.max_fds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?
                    .encode_gauge(&v)?;
            }
        }
        if let Some(v) = p.start_time {
            enc.encode_descriptor(
                "process_start_time",
                "When the baton process started, in seconds since the Unix epoch.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&v)?;
        }
        Ok(())
    }
}

/// A route's histogram: (upper bound in seconds, count in that bucket
/// only) for each bound of [`LE_MICROS`] then +Inf, and the estimated sum
/// in seconds (each request at the middle of its bucket, the +Inf ones at
/// the last finite bound).
fn route_histogram(counts: &[u64; LE_MICROS.len() + 1]) -> (Vec<(f64, u64)>, f64) {
    let mut sum = 0.0;
    let mut lower = 0.0;
    for (i, &n) in counts.iter().enumerate() {
        let value = match LE_MICROS.get(i) {
            Some(&le) => {
                let upper = le as f64 / 1e6;
                let middle = (lower + upper) / 2.0;
                lower = upper;
                middle
            }
            None => lower,
        };
        sum += value * n as f64;
    }
    let buckets = LE_MICROS
        .iter()
        .map(|&le| le as f64 / 1e6)
        .chain([f64::INFINITY])
        .zip(counts.iter().copied())
        .collect();
    (buckets, sum)
}

/// The histogram of a pool's latencies: (upper bound in seconds, count in
/// that bucket only) for each finite bound of [`LE_MICROS`], then +Inf;
/// and the estimated sum in seconds (each request at the middle of its
/// bucket, the slowest bucket at its lower bound).
fn histogram(stats: &StatsSnapshot) -> (Vec<(f64, u64)>, f64) {
    let mut counts = [0u64; LE_MICROS.len() + 1];
    let mut sum = 0.0;
    let last = stats.buckets().len() - 1;
    for (index, &count) in stats.buckets().iter().enumerate() {
        if count == 0 {
            continue;
        }
        let upper = StatsSnapshot::bucket_upper_bound(index).as_secs_f64();
        let lower = match index {
            0 => 0.0,
            i => StatsSnapshot::bucket_upper_bound(i - 1).as_secs_f64(),
        };
        let upper_micros = StatsSnapshot::bucket_upper_bound(index).as_micros();
        // The slowest bucket also holds everything slower: only +Inf.
        let slot = if index == last {
            LE_MICROS.len()
        } else {
            LE_MICROS.partition_point(|&le| u128::from(le) < upper_micros)
        };
        counts[slot] += count;
        let middle = if index == last {
            lower
        } else {
            (lower + upper) / 2.0
        };
        sum += middle * count as f64;
    }
    let buckets = LE_MICROS
        .iter()
        .map(|&le| le as f64 / 1e6)
        .chain([f64::INFINITY])
        .zip(counts)
        .collect();
    (buckets, sum)
}

#[cfg(test)]
mod tests;
