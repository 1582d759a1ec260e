//! `GET /metrics` on the control socket: the Prometheus text exposition
//! (format 0.0.4) of what baton already counts, read at scrape time.
//!
//! Owns the few counters only the binary sees (config reloads, deploys by
//! outcome: [`Counters`]) and the rendering of a scrape ([`render`]), which
//! reads the proxy's pools and members ([`proxy::Proxy::readings`]) and the
//! engine's services. It must never add work to the request path: every
//! request-path number here is a counter the proxy keeps anyway, and every
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
use proxy::{PoolReading, StatsSnapshot};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The finite `le` bounds of `baton_request_duration_seconds`, in
/// microseconds: powers of two from 64 µs to 2²⁵ µs (about 33.6 s). Each is
/// the upper bound of one of the proxy's latency buckets, so the cumulative
/// counts are exact, not interpolated.
const LE_MICROS: [u64; 20] = {
    let mut out = [0u64; 20];
    let mut i = 0;
    while i < out.len() {
        out[i] = 1 << (6 + i);
        i += 1;
    }
    out
};

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
    deploys: Mutex<BTreeMap<(String, String, DeployOutcome), u64>>,
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
    pub fn deploy(&self, service: &str, strategy: &str, outcome: DeployOutcome) {
        let mut deploys = self.deploys.lock().unwrap_or_else(|e| e.into_inner());
        *deploys
            .entry((service.to_owned(), strategy.to_owned(), outcome))
            .or_default() += 1;
    }
}

/// Everything one scrape shows, read before encoding.
#[derive(Debug)]
struct Scrape {
    pools: Vec<PoolReading>,
    /// (service, version) of every service with a version.
    versions: Vec<(String, String)>,
    reloads: [(&'static str, u64); 2],
    deploys: Vec<((String, String, DeployOutcome), u64)>,
}

/// The exposition now: the proxy's pools and members, the engine's
/// services, and `counters`.
pub fn render(proxy: &proxy::Proxy, engine: &deploy::Engine, counters: &Counters) -> String {
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
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let scrape = Scrape {
        pools: proxy.readings(),
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

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let mut m = enc.encode_descriptor(
            "baton_requests",
            "Requests routed to a pool, as its clients saw them (retries inside).",
            None,
            MetricType::Counter,
        )?;
        for p in &self.pools {
            let labels = [("pool", p.name.as_str())];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&p.stats.requests(), None)?;
        }
        let mut m = enc.encode_descriptor(
            "baton_request_failures",
            "Requests of a pool that failed: a 5xx (the proxy's own included) or a body that broke off.",
            None,
            MetricType::Counter,
        )?;
        for p in &self.pools {
            let labels = [("pool", p.name.as_str())];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&p.stats.failures(), None)?;
        }
        let mut m = enc.encode_descriptor(
            "baton_request_duration",
            "Request duration by pool, from reaching the pool to the end of the response body (_sum is estimated from the buckets).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for p in &self.pools {
            let labels = [("pool", p.name.as_str())];
            let (buckets, sum) = histogram(&p.stats);
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                sum,
                p.stats.requests(),
                &buckets,
                None,
            )?;
        }
        let mut m = enc.encode_descriptor(
            "baton_member_up",
            "1 when a pool member is healthy and not passively ejected, else 0.",
            None,
            MetricType::Gauge,
        )?;
        for p in &self.pools {
            for member in &p.members {
                let labels = [
                    ("pool", p.name.as_str()),
                    ("member", member.address.as_str()),
                ];
                m.encode_family(&labels)?
                    .encode_gauge(&u64::from(member.up))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "baton_member_in_flight",
            "Requests in flight to a pool member.",
            None,
            MetricType::Gauge,
        )?;
        for p in &self.pools {
            for member in &p.members {
                let labels = [
                    ("pool", p.name.as_str()),
                    ("member", member.address.as_str()),
                ];
                m.encode_family(&labels)?.encode_gauge(&member.in_flight)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "baton_queue_waiting",
            "Requests of a pool waiting now for a member's connection.",
            None,
            MetricType::Gauge,
        )?;
        for p in &self.pools {
            let labels = [("pool", p.name.as_str())];
            m.encode_family(&labels)?.encode_gauge(&p.queue.waiting)?;
        }
        let mut m = enc.encode_descriptor(
            "baton_queue_refused",
            "Requests of a pool its queue refused: full, or waited too long (timeout).",
            None,
            MetricType::Counter,
        )?;
        for p in &self.pools {
            for (reason, n) in [("full", p.queue.full), ("timeout", p.queue.timed_out)] {
                let labels = [("pool", p.name.as_str()), ("reason", reason)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "baton_config_reloads",
            "Config reloads (SIGHUP or the control API): applied (ok) or refused.",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in self.reloads {
            let labels = [("result", result)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
        }
        let mut m = enc.encode_descriptor(
            "baton_deploys",
            "Deploys and rollbacks that ran, by service, strategy and outcome.",
            None,
            MetricType::Counter,
        )?;
        for ((service, strategy, outcome), n) in &self.deploys {
            let labels = [
                ("service", service.as_str()),
                ("strategy", strategy.as_str()),
                ("outcome", outcome.label()),
            ];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
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
        Ok(())
    }
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
