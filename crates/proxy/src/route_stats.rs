//! Per-route request counts for the metrics: by method and status class,
//! and a latency histogram to the response's head.
//!
//! Owns [`RouteStats`], one per route of the config, preallocated when a
//! snapshot is built and kept across reloads by the route's label (its
//! `name`, else its position). Recording is two relaxed atomic additions
//! into fixed arrays: it must never lock, allocate, read the clock or log
//! (the caller passes the latency). Every label value comes from the config
//! or from the fixed lists here, never from a request: a method outside
//! the list is `other`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};

/// The methods counted by name; every other one is `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// The status classes, by the first digit of the status.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The finite upper bounds of the latency histograms, in microseconds:
/// powers of two from 64 µs to 2²⁵ µs (about 33.6 s); slower is only in
/// `+Inf`. They are also bucket boundaries of the pools' finer histograms,
/// so both are exposed with the same `le` values.
pub const LE_MICROS: [u64; 20] = {
    let mut out = [0u64; 20];
    let mut i = 0;
    while i < out.len() {
        out[i] = 1 << (6 + i);
        i += 1;
    }
    out
};

/// The live counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// By method ([`METHODS`]) and status class ([`STATUS_CLASSES`]).
    counts: [[AtomicU64; STATUS_CLASSES.len()]; METHODS.len()],
    /// Requests whose head took at most `LE_MICROS[i]` (and more than the
    /// bound before), then `+Inf`: not cumulative.
    buckets: [AtomicU64; LE_MICROS.len() + 1],
}

/// The counts of a [`RouteStats`] at one moment. Plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// By method and status class, indexed like [`METHODS`] and
    /// [`STATUS_CLASSES`].
    pub counts: [[u64; STATUS_CLASSES.len()]; METHODS.len()],
    /// Per bucket (not cumulative): `LE_MICROS`'s, then `+Inf`.
    pub buckets: [u64; LE_MICROS.len() + 1],
}

impl RouteStats {
    /// Counts one request of method `method` ([`method_index`]) answered
    /// `status` after `latency`.
    pub(crate) fn record(&self, method: usize, status: StatusCode, latency: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.counts[method.min(METHODS.len() - 1)][class].fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted so far, of every method and status.
    pub(crate) fn total(&self) -> u64 {
        self.counts
            .iter()
            .flatten()
            .map(|n| n.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The counts now.
    pub fn counts(&self) -> RouteCounts {
        RouteCounts {
            counts: std::array::from_fn(|m| {
                std::array::from_fn(|c| self.counts[m][c].load(Ordering::Relaxed))
            }),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
    }
}

/// The index of `method` in [`METHODS`].
pub(crate) fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The bucket of `latency`: the first bound at or above it.
fn bucket_of(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if micros <= LE_MICROS[0] {
        return 0;
    }
    // ⌈log2(micros)⌉ for micros ≥ 2.
    let ceil_log2 = 64 - (micros - 1).leading_zeros() as usize;
    (ceil_log2 - 6).min(LE_MICROS.len())
}

/// The label of route `index` (0-based, file order): its name, else its
/// position from 1 as `#N`.
pub(crate) fn label(route: &config::Route, index: usize) -> String {
    match &route.name {
        Some(name) => name.clone(),
        None => format!("#{}", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bound_at_or_above_them() {
        let us = Duration::from_micros;
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(us(64)), 0);
        assert_eq!(bucket_of(us(65)), 1);
        assert_eq!(bucket_of(us(128)), 1);
        assert_eq!(bucket_of(us(129)), 2);
        assert_eq!(bucket_of(us(1 << 25)), 19);
        assert_eq!(bucket_of(us((1 << 25) + 1)), 20);
        assert_eq!(bucket_of(Duration::MAX), 20);
        for micros in [1u64, 63, 64, 65, 1000, 123_456, 1 << 24, (1 << 25) - 1] {
            let b = bucket_of(us(micros));
            assert!(micros <= LE_MICROS[b], "{micros} in {b}");
            assert!(b == 0 || micros > LE_MICROS[b - 1], "{micros} in {b}");
        }
    }

    #[test]
    fn methods_and_statuses_are_counted_by_class() {
        let stats = RouteStats::default();
        let ms = Duration::from_millis(1);
        let purge = Method::from_bytes(b"PURGE").unwrap();
        stats.record(method_index(&Method::GET), StatusCode::OK, ms);
        stats.record(method_index(&Method::GET), StatusCode::NO_CONTENT, ms);
        stats.record(method_index(&Method::POST), StatusCode::BAD_GATEWAY, ms);
        stats.record(method_index(&purge), StatusCode::NOT_FOUND, ms);
        let c = stats.counts();
        assert_eq!(c.counts[0][1], 2);
        assert_eq!(c.counts[2][4], 1);
        assert_eq!(c.counts[7][3], 1);
        assert_eq!(c.counts.iter().flatten().sum::<u64>(), 4);
        assert_eq!(c.buckets[bucket_of(ms)], 4);
        assert_eq!(stats.total(), 4);
    }
}
