//! Request statistics: how many requests ended, how many failed, and how
//! long they took, as a latency histogram.
//!
//! Owns [`Stats`] (the live counters, written on the request path) and
//! [`StatsSnapshot`] (plain numbers read from them, with the arithmetic the
//! deploy engine needs: windows, sums, error rate, quantiles). Recording is
//! two or three relaxed-ish atomic additions: it must never lock, allocate,
//! read the clock or log. Whoever records passes the latency.
//!
//! The histogram has fixed log-scale buckets in microseconds: one per
//! microsecond below 4 µs, then 4 linear sub-buckets per power of two up to
//! 2²⁶ µs (about 67 s). A bucket is 1/4 to 1/7 of its lower bound wide
//! (about 20 % on average), which is as precise as [`StatsSnapshot::quantile`]
//! can be.

use std::iter::Sum;
use std::ops::AddAssign;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of latency buckets.
pub const BUCKETS: usize = 100;

/// Sub-buckets per power of two, as a power of two (2² = 4).
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;

/// Live request counters, shared by whoever records and whoever reads.
///
/// Every request counted lands in exactly one latency bucket; the number of
/// requests is the sum of the buckets, so the histogram and the count never
/// disagree.
#[derive(Debug)]
pub struct Stats {
    failures: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    /// Counters at zero.
    pub fn new() -> Stats {
        Stats {
            failures: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one request that took `latency`; `failed` counts it as a
    /// failure as well.
    pub fn record(&self, latency: Duration, failed: bool) {
        // The bucket first, the failure after with `Release`, and
        // `snapshot` reads in the opposite order with `Acquire`: a snapshot
        // that sees a failure also sees its request.
        self.buckets[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Release);
        }
    }

    /// The counters now. Requests recorded while the snapshot is taken may
    /// be partly in it, but never a failure without its request.
    pub fn snapshot(&self) -> StatsSnapshot {
        let failures = self.failures.load(Ordering::Acquire);
        StatsSnapshot {
            failures,
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
    }
}

/// The counters of a [`Stats`] at one moment, or the difference or sum of
/// such snapshots. Plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    failures: u64,
    buckets: [u64; BUCKETS],
}

impl Default for StatsSnapshot {
    fn default() -> StatsSnapshot {
        StatsSnapshot {
            failures: 0,
            buckets: [0; BUCKETS],
        }
    }
}

impl StatsSnapshot {
    /// Requests counted.
    pub fn requests(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Failed requests counted (never more than [`requests`](Self::requests)
    /// for a snapshot taken from one [`Stats`]).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Requests per latency bucket; bucket `i` holds latencies below
    /// [`bucket_upper_bound(i)`](Self::bucket_upper_bound) and at or above
    /// the previous bucket's bound.
    pub fn buckets(&self) -> &[u64; BUCKETS] {
        &self.buckets
    }

    /// The exclusive upper bound of bucket `index` (the last bucket also
    /// holds everything slower, so its bound is a lower bound for those).
    /// Indices past the end answer the last bucket's bound.
    pub fn bucket_upper_bound(index: usize) -> Duration {
        let index = index.min(BUCKETS - 1) as u64;
        if index < SUB {
            return Duration::from_micros(index + 1);
        }
        let rest = index - SUB;
        let shift = rest / SUB;
        let sub = rest % SUB;
        Duration::from_micros((SUB + sub + 1) << shift)
    }

    /// What happened between `earlier` and `self`, two snapshots of the same
    /// [`Stats`]. Saturating: a counter that went backwards (`earlier` is not
    /// earlier, or comes from other stats) counts as 0.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        let buckets: [u64; BUCKETS] =
            std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i]));
        let requests: u64 = buckets.iter().sum();
        StatsSnapshot {
            // Requests caught mid-record by `earlier` may show their failure
            // only in `self`: never report more failures than requests.
            failures: self.failures.saturating_sub(earlier.failures).min(requests),
            buckets,
        }
    }

    /// Adds `other` to `self` (several members into one pool, say).
    pub fn merge(&mut self, other: &StatsSnapshot) {
        self.failures = self.failures.saturating_add(other.failures);
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// Failures per request, from 0 to 1; `None` when no request was counted.
    pub fn error_rate(&self) -> Option<f64> {
        let requests = self.requests();
        if requests == 0 {
            return None;
        }
        // Counts below 2⁵³ are exact in f64.
        let rate = self.failures as f64 / requests as f64;
        Some(rate.min(1.0))
    }

    /// The latency under which a share `q` (0 to 1, clamped) of the requests
    /// ended: the upper bound of the bucket that holds the ⌈q·n⌉-th fastest
    /// request (the fastest for `q` = 0). `None` when no request was counted
    /// or `q` is NaN.
    ///
    /// Precision: never below the true latency, and above it by at most the
    /// bucket's width — 1 µs below 4 µs, then 25 % to 14 % of the latency
    /// (about 20 % on average). Latencies over about 67 s are all in the
    /// last bucket and reported as [`bucket_upper_bound(BUCKETS - 1)`]
    /// (≈ 67.1 s).
    ///
    /// [`bucket_upper_bound(BUCKETS - 1)`]: Self::bucket_upper_bound
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if q.is_nan() {
            return None;
        }
        let requests = self.requests();
        if requests == 0 {
            return None;
        }
        // The float-to-int cast saturates; the rank is then kept in range.
        let rank = ((q.clamp(0.0, 1.0) * requests as f64).ceil() as u64).clamp(1, requests);
        let mut seen = 0u64;
        for (index, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(StatsSnapshot::bucket_upper_bound(index));
            }
        }
        Some(StatsSnapshot::bucket_upper_bound(BUCKETS - 1))
    }
}

impl AddAssign<&StatsSnapshot> for StatsSnapshot {
    fn add_assign(&mut self, other: &StatsSnapshot) {
        self.merge(other);
    }
}

impl AddAssign for StatsSnapshot {
    fn add_assign(&mut self, other: StatsSnapshot) {
        self.merge(&other);
    }
}

impl<'a> Sum<&'a StatsSnapshot> for StatsSnapshot {
    fn sum<I: Iterator<Item = &'a StatsSnapshot>>(iter: I) -> StatsSnapshot {
        iter.fold(StatsSnapshot::default(), |mut total, s| {
            total.merge(s);
            total
        })
    }
}

impl Sum for StatsSnapshot {
    fn sum<I: Iterator<Item = StatsSnapshot>>(iter: I) -> StatsSnapshot {
        iter.fold(StatsSnapshot::default(), |mut total, s| {
            total.merge(&s);
            total
        })
    }
}

/// The bucket of a latency: its microseconds themselves below 4, else 4 per
/// power of two, by the two bits after the leading one.
fn bucket_of(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if micros < SUB {
        return micros as usize;
    }
    let log2 = u64::from(63 - micros.leading_zeros());
    let shift = log2 - u64::from(SUB_BITS);
    let sub = (micros >> shift) & (SUB - 1);
    let index = SUB + shift * SUB + sub;
    usize::try_from(index).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_are_contiguous_and_hold_their_latencies() {
        let mut lower = Duration::ZERO;
        for index in 0..BUCKETS {
            let upper = StatsSnapshot::bucket_upper_bound(index);
            assert!(upper > lower, "bucket {index}: {lower:?}..{upper:?}");
            assert_eq!(bucket_of(lower), index, "lower bound of {index}");
            assert_eq!(bucket_of(upper - us(1)), index, "last µs of {index}");
            if index + 1 < BUCKETS {
                assert_eq!(bucket_of(upper), index + 1, "upper bound of {index}");
            }
            lower = upper;
        }
        // The last bucket ends at 2²⁶ µs and takes everything slower.
        assert_eq!(lower, us(1 << 26));
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(Duration::from_nanos(999)), 0);
    }

    #[test]
    fn bucket_width_is_at_most_a_quarter_of_the_latency() {
        for index in 4..BUCKETS {
            let lower = StatsSnapshot::bucket_upper_bound(index - 1);
            let upper = StatsSnapshot::bucket_upper_bound(index);
            let width = upper - lower;
            assert!(width * 4 <= lower, "bucket {index}: {lower:?}..{upper:?}");
            assert!(width * 7 >= lower, "bucket {index}: {lower:?}..{upper:?}");
        }
    }

    #[test]
    fn counts_requests_and_failures() {
        let stats = Stats::new();
        assert_eq!(stats.snapshot(), StatsSnapshot::default());
        assert_eq!(stats.snapshot().error_rate(), None);
        assert_eq!(stats.snapshot().quantile(0.5), None);
        stats.record(ms(1), false);
        stats.record(ms(2), true);
        stats.record(ms(3), false);
        stats.record(ms(4), true);
        let s = stats.snapshot();
        assert_eq!((s.requests(), s.failures()), (4, 2));
        assert_eq!(s.error_rate(), Some(0.5));
    }

    #[test]
    fn quantiles_are_bucket_upper_bounds_within_a_quarter() {
        let stats = Stats::new();
        // 90 fast requests at 1 ms, 10 slow ones at 100 ms.
        for _ in 0..90 {
            stats.record(ms(1), false);
        }
        for _ in 0..10 {
            stats.record(ms(100), false);
        }
        let s = stats.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        let p90 = s.quantile(0.9).unwrap();
        let p99 = s.quantile(0.99).unwrap();
        assert!(p50 > ms(1) && p50 <= ms(1) * 5 / 4, "{p50:?}");
        assert_eq!(p90, p50, "the 90th request is still a fast one");
        assert!(p99 > ms(100) && p99 <= ms(125), "{p99:?}");
        assert_eq!(s.quantile(1.0), Some(p99));
        assert_eq!(s.quantile(7.0), Some(p99), "clamped to 1");
        assert_eq!(s.quantile(0.0), Some(p50), "the fastest request");
        assert_eq!(s.quantile(f64::NAN), None);
    }

    #[test]
    fn since_is_the_window_and_saturates() {
        let stats = Stats::new();
        stats.record(ms(1), true);
        let before = stats.snapshot();
        stats.record(ms(50), false);
        stats.record(ms(50), true);
        let after = stats.snapshot();
        let window = after.since(&before);
        assert_eq!((window.requests(), window.failures()), (2, 1));
        assert!(
            window.quantile(0.0).unwrap() > ms(50),
            "the 1 ms request is outside"
        );
        let backwards = before.since(&after);
        assert_eq!(backwards, StatsSnapshot::default());
    }

    #[test]
    fn merge_sums_members() {
        let (a, b) = (Stats::new(), Stats::new());
        a.record(ms(1), false);
        b.record(ms(1), true);
        b.record(ms(9), false);
        let mut total = a.snapshot();
        total.merge(&b.snapshot());
        assert_eq!((total.requests(), total.failures()), (3, 1));
        let mut added = a.snapshot();
        added += &b.snapshot();
        assert_eq!(added, total);
        let summed: StatsSnapshot = [a.snapshot(), b.snapshot()].iter().sum();
        assert_eq!(summed, total);
        assert_eq!(summed.buckets()[bucket_of(ms(1))], 2);
    }
}
