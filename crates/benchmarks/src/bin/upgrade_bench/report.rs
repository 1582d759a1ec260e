//! The run's figures: one [`Cycle`] per upgrade, and the [`Summary`] `bench/upgrade.sh` puts in
//! `docs/BENCHMARKS.md` (medians and ranges per proxy) or prints as JSON. Pure formatting: it starts nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use benchmarks::kinds;
use loadgen::{LoadConfig, Report};

use crate::sides::Kind;

/// The worker kinds that keep their connection between requests.
const KEEPALIVE: [&str; 3] = ["keepalive", "post", "slow"];

/// One upgrade of one proxy and the load around it.
pub struct Cycle {
    pub kind: Kind,
    pub n: usize,
    /// Whether the upgrade completed (the old process gone, the new one in place).
    pub upgraded: bool,
    /// From the signal until the old process was gone.
    pub gone: Duration,
    pub keepalive_requests: u64,
    pub keepalive_failed: u64,
    pub fresh_requests: u64,
    pub fresh_failed: u64,
    pub failures_by_kind: BTreeMap<String, u64>,
    /// p99 of successful requests started in the steady periods before and after the upgrade, in µs.
    pub p99_steady_us: u64,
    /// p99 of successful requests started during the upgrade, in µs.
    pub p99_upgrade_us: u64,
    pub upgrade_requests: u64,
}

impl Cycle {
    pub fn new(kind: Kind, n: usize, upgraded: bool, gone: Duration, report: &Report) -> Cycle {
        let sum = |names: &[&str], f: fn(&loadgen::WorkerTally) -> u64| -> u64 {
            names
                .iter()
                .filter_map(|k| report.workers.get(*k))
                .map(f)
                .sum()
        };
        Cycle {
            kind,
            n,
            upgraded,
            gone,
            keepalive_requests: sum(&KEEPALIVE, |t| t.requests),
            keepalive_failed: sum(&KEEPALIVE, |t| t.failures),
            fresh_requests: sum(&["fresh"], |t| t.requests),
            fresh_failed: sum(&["fresh"], |t| t.failures),
            failures_by_kind: report.failures_by_kind.clone(),
            p99_steady_us: report.latency.steady.p99_us,
            p99_upgrade_us: report.latency.switching.p99_us,
            upgrade_requests: report.latency.switching.count,
        }
    }
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} upgrade {}: {}, old process gone after {:.1} ms; failed {} of {} keep-alive and {} of {} \
             new-connection requests; p99 {} steady, {} during the upgrade ({} requests)",
            self.kind,
            self.n,
            if self.upgraded { "done" } else { "FAILED" },
            ms(self.gone),
            self.keepalive_failed,
            self.keepalive_requests,
            self.fresh_failed,
            self.fresh_requests,
            us(self.p99_steady_us),
            us(self.p99_upgrade_us),
            self.upgrade_requests
        )
    }
}

/// Every cycle of the run.
pub struct Summary {
    pub upgrades: usize,
    pub steady_ms: u64,
    pub load: LoadConfig,
    pub cycles: Vec<Cycle>,
    pub versions: Vec<(Kind, String)>,
}

impl Summary {
    /// Whether a baton upgrade failed or lost a request: the one outcome that is a bug, not a figure.
    pub fn baton_failed(&self) -> bool {
        self.of(Kind::Baton)
            .any(|c| !c.upgraded || c.keepalive_failed + c.fresh_failed > 0)
    }

    fn of(&self, kind: Kind) -> impl Iterator<Item = &Cycle> {
        self.cycles.iter().filter(move |c| c.kind == kind)
    }

    pub fn markdown(&self) -> String {
        let l = &self.load;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} upgrades of each proxy, alternating; load per upgrade: {} keep-alive, {} new-connection, {} POST \
             (1 B–64 KiB) and {} slow ({} ms) workers, {} ms steady before and after the upgrade.\n",
            self.upgrades,
            l.keepalive_workers,
            l.fresh_workers,
            l.post_workers,
            l.slow_workers,
            l.slow_ms,
            self.steady_ms
        );
        out.push_str(
            "| proxy | upgrades done | failed keep-alive requests: median (range), total | failed new-connection \
             requests: median (range), total | p99 steady | p99 during the upgrade | old process gone after |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for kind in [Kind::Baton, Kind::Nginx, Kind::Haproxy] {
            let cycles: Vec<&Cycle> = self.of(kind).collect();
            if cycles.is_empty() {
                continue;
            }
            let done = cycles.iter().filter(|c| c.upgraded).count();
            let ka: Vec<u64> = cycles.iter().map(|c| c.keepalive_failed).collect();
            let fresh: Vec<u64> = cycles.iter().map(|c| c.fresh_failed).collect();
            let steady: Vec<u64> = cycles.iter().map(|c| c.p99_steady_us).collect();
            let during: Vec<u64> = cycles.iter().map(|c| c.p99_upgrade_us).collect();
            let gone: Vec<u64> = cycles
                .iter()
                .filter(|c| c.upgraded)
                .map(|c| c.gone.as_micros() as u64)
                .collect();
            let _ = writeln!(
                out,
                "| {kind} | {done} of {} | {} | {} | {} | {} | {} |",
                cycles.len(),
                counts(&ka),
                counts(&fresh),
                spread(&steady, us),
                spread(&during, us),
                spread(&gone, us)
            );
        }
        out.push('\n');
        for kind in [Kind::Baton, Kind::Nginx, Kind::Haproxy] {
            let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
            for c in self.of(kind) {
                for (k, v) in &c.failures_by_kind {
                    *by_kind.entry(k.clone()).or_default() += v;
                }
            }
            if !by_kind.is_empty() {
                let _ = writeln!(out, "- {kind}'s failures by kind: {}", kinds(&by_kind));
            }
        }
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "- Versions: {}.", versions.join(", "));
        out
    }

    pub fn json(&self) -> String {
        let cycles: Vec<serde_json::Value> = self
            .cycles
            .iter()
            .map(|c| {
                serde_json::json!({
                    "proxy": c.kind.to_string(),
                    "n": c.n,
                    "upgraded": c.upgraded,
                    "gone_us": c.gone.as_micros() as u64,
                    "keepalive_requests": c.keepalive_requests,
                    "keepalive_failed": c.keepalive_failed,
                    "fresh_requests": c.fresh_requests,
                    "fresh_failed": c.fresh_failed,
                    "failures_by_kind": c.failures_by_kind,
                    "p99_steady_us": c.p99_steady_us,
                    "p99_upgrade_us": c.p99_upgrade_us,
                    "upgrade_requests": c.upgrade_requests,
                })
            })
            .collect();
        serde_json::json!({ "upgrades": self.upgrades, "cycles": cycles }).to_string()
    }
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// `median (lowest–highest), total`.
fn counts(values: &[u64]) -> String {
    let total: u64 = values.iter().sum();
    let (lo, hi) = (
        values.iter().min().copied().unwrap_or(0),
        values.iter().max().copied().unwrap_or(0),
    );
    let text = format!("{} ({lo}–{hi}), {total}", median(values));
    if total > 0 {
        format!("**{text}**")
    } else {
        text
    }
}

/// `median (lowest–highest)` of microseconds, as `unit` formats them.
fn spread(values: &[u64], unit: fn(u64) -> String) -> String {
    if values.is_empty() {
        return "n/a".into();
    }
    let lo = values.iter().min().copied().unwrap_or(0);
    let hi = values.iter().max().copied().unwrap_or(0);
    format!("{} ({}–{})", unit(median(values)), unit(lo), unit(hi))
}

fn us(v: u64) -> String {
    format!("{:.1} ms", v as f64 / 1000.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
