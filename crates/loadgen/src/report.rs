//! The result of a load run: counts, failure kinds and samples, instances, latency per phase.
//!
//! Owns presentation only: the JSON shape (stable keys, for scripts and tests), the short human summary, and the
//! multi-line panic message of [`Report::assert_no_failures`]. It never decides what is a failure.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::failure::FailureKind;

/// Everything a load run counted. Serialises to JSON with the field names below (`elapsed` as `elapsed_secs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Requests that finished, successfully or not.
    pub requests: u64,
    /// Requests answered 2xx with a complete, correct body.
    pub ok: u64,
    /// Requests that failed; always `requests - ok`.
    pub failures: u64,
    /// Failures per [`FailureKind::key`]: `refused`, `reset`, `timeout`, `status_503`, `truncated`,
    /// `body_mismatch`, `other`. Kinds that did not occur are absent.
    pub failures_by_kind: BTreeMap<String, u64>,
    /// One line per failure, for the first 20 failures: when, which worker, what request, what went wrong.
    pub failure_samples: Vec<String>,
    /// Responses per value of their `x-instance` header; responses without it are counted under `(none)`.
    pub instances: BTreeMap<String, u64>,
    /// Counts per worker kind (`keepalive`, `fresh`, `post`, `slow`, `websocket`, `sse`, `h2`), e.g. to check slow
    /// requests really ran.
    pub workers: BTreeMap<String, WorkerTally>,
    /// Latency of successful requests, split by the phase current when each request started.
    pub latency: PhaseLatency,
    /// Time from the start of the load to now, or to the moment the last worker finished.
    #[serde(rename = "elapsed_secs", with = "secs")]
    pub elapsed: Duration,
    /// `requests` divided by `elapsed`.
    pub requests_per_sec: f64,
}

/// Counts for one kind of worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTally {
    /// Requests that finished.
    pub requests: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Announced ends the requests met and went on from: WebSockets closed with 1001, event streams ended
    /// cleanly, HTTP/2 connections that sent GOAWAY before taking the request. Not failures.
    #[serde(default)]
    pub announced_ends: u64,
}

/// Latency of successful requests in each [`crate::Phase`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseLatency {
    /// Requests started in [`crate::Phase::Steady`].
    pub steady: LatencySummary,
    /// Requests started in [`crate::Phase::Switching`].
    pub switching: LatencySummary,
}

/// A latency distribution in microseconds, from connect (if the request needed one) to the last body byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many requests were measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl LatencySummary {
    pub(crate) fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }
}

impl Report {
    /// How many failures of `kind` were counted.
    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures_by_kind.get(&kind.key()).copied().unwrap_or(0)
    }

    /// Panics, with the failure kinds and samples in the message, if any request failed.
    #[track_caller]
    pub fn assert_no_failures(&self) {
        if self.failures > 0 {
            panic!("{}", self.failure_description());
        }
    }

    /// A multi-line account of the failures: totals, kinds, then the samples.
    pub fn failure_description(&self) -> String {
        let mut text = format!(
            "{} of {} requests failed ({} ok) in {:.2}s\n",
            self.failures,
            self.requests,
            self.ok,
            self.elapsed.as_secs_f64()
        );
        text.push_str(&format!("  by kind: {}\n", kinds(&self.failures_by_kind)));
        let shown = self.failure_samples.len() as u64;
        text.push_str(&format!("  first {shown} failures:\n"));
        for sample in &self.failure_samples {
            text.push_str(&format!("    {sample}\n"));
        }
        text
    }
}

impl fmt::Display for Report {
    /// `1234 requests, 1234 ok, 0 failed in 10.00s (123.4 req/s)`, then failure kinds, instances and latency.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} requests, {} ok, {} failed in {:.2}s ({:.1} req/s)",
            self.requests,
            self.ok,
            self.failures,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec
        )?;
        if self.failures > 0 {
            writeln!(f, "failures: {}", kinds(&self.failures_by_kind))?;
            for sample in self.failure_samples.iter().take(5) {
                writeln!(f, "  {sample}")?;
            }
        }
        if !self.instances.is_empty() {
            writeln!(f, "instances: {}", kinds(&self.instances))?;
        }
        write!(f, "latency steady {}", self.latency.steady)?;
        if self.latency.switching.count > 0 {
            write!(f, "; switching {}", self.latency.switching)?;
        }
        Ok(())
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
            self.count,
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.max_us)
        )
    }
}

/// `reset=3 timeout=1`.
fn kinds(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

/// Serialises a [`Duration`] as fractional seconds.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_report() -> Report {
        Report {
            requests: 10,
            ok: 8,
            failures: 2,
            failures_by_kind: [("reset".to_owned(), 1), ("status_503".to_owned(), 1)].into(),
            failure_samples: vec!["+0.100s keepalive#0 GET /: reset: boom".into()],
            instances: [("v1".to_owned(), 9)].into(),
            workers: BTreeMap::new(),
            latency: PhaseLatency::default(),
            elapsed: Duration::from_millis(1500),
            requests_per_sec: 6.7,
        }
    }

    #[test]
    fn json_round_trips_with_stable_keys() {
        let report = failing_report();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["elapsed_secs"], 1.5);
        assert_eq!(json["failures_by_kind"]["status_503"], 1);
        assert_eq!(json["latency"]["switching"]["p99_us"], 0);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn assert_no_failures_names_kinds_and_samples() {
        let report = failing_report();
        let panic = std::panic::catch_unwind(|| report.assert_no_failures()).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("2 of 10 requests failed"), "{message}");
        assert!(message.contains("reset=1 status_503=1"), "{message}");
        assert!(
            message.contains("keepalive#0 GET /: reset: boom"),
            "{message}"
        );
        assert_eq!(report.failures_of(FailureKind::Status(503)), 1);
        assert_eq!(report.failures_of(FailureKind::Timeout), 0);

        let clean = Report {
            failures: 0,
            ok: 10,
            failures_by_kind: BTreeMap::new(),
            ..report
        };
        clean.assert_no_failures();
    }

    #[test]
    fn display_is_short() {
        let text = failing_report().to_string();
        assert!(
            text.starts_with("10 requests, 8 ok, 2 failed in 1.50s"),
            "{text}"
        );
        assert!(text.contains("instances: v1=9"), "{text}");
    }
}
