//! Active health checks: their configuration and the threshold state machine.
//!
//! Owns [`ActiveCheck`] and [`ActiveState`], which turns probe results into
//! healthy/unhealthy transitions: never on a single probe unless a threshold
//! is 1 (a flapping health endpoint must not flip the member back and forth,
//! nor a single good probe cut traffic over to an instance not yet ready).
//! It also says whether a failure streak is made of timeouts only, which
//! the checker does not let take the last available member of a pool out.
//! It must never perform I/O, read the clock or log; the probing task lives
//! in `probe`.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::probe::ProbeError;

/// What one probe returned: the response status, or why there was none.
pub type ProbeResult = Result<u16, ProbeError>;

/// How to check a member actively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    /// Request path (and query), e.g. `/healthz`.
    pub path: String,
    /// `Host` header; the member's `host:port` when `None`.
    pub host: Option<String>,
    /// Time between the starts of two probes. The first probe is immediate.
    pub interval: Duration,
    /// Time allowed for one probe: resolve, connect, request, response head.
    pub timeout: Duration,
    /// Passed probes in a row that make an unhealthy member healthy (0 is
    /// treated as 1).
    pub healthy_threshold: u32,
    /// Failed probes in a row that make a healthy member unhealthy (0 is
    /// treated as 1).
    pub unhealthy_threshold: u32,
    /// Statuses that pass, e.g. `200..=399`.
    pub expect: RangeInclusive<u16>,
}

/// A change of the active health flag, with what caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTransition {
    /// The flag before.
    pub from: bool,
    /// The flag after.
    pub to: bool,
    /// Why, in words: the streak and the last probe's result.
    pub reason: String,
}

/// Consecutive probe results against thresholds, for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveState {
    healthy: bool,
    successes: u32,
    failures: u32,
    /// Timeouts among the `failures`.
    timeouts: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    expect: RangeInclusive<u16>,
}

impl ActiveState {
    /// A state starting from `healthy` with no streak.
    pub fn new(healthy: bool, check: &ActiveCheck) -> ActiveState {
        ActiveState {
            healthy,
            successes: 0,
            failures: 0,
            timeouts: 0,
            healthy_threshold: check.healthy_threshold.max(1),
            unhealthy_threshold: check.unhealthy_threshold.max(1),
            expect: check.expect.clone(),
        }
    }

    /// Adopts a flag set by someone else (the control plane); a streak
    /// counted towards the old flag no longer means anything.
    pub fn sync(&mut self, healthy: bool) {
        if self.healthy != healthy {
            self.healthy = healthy;
            self.successes = 0;
            self.failures = 0;
            self.timeouts = 0;
        }
    }

    /// Goes on from streaks counted by another process (an upgrade of
    /// baton), towards the flag [`sync`](Self::sync) set.
    pub fn resume(&mut self, successes: u32, failures: u32) {
        self.successes = successes;
        self.failures = failures;
        self.timeouts = 0;
    }

    /// Records one probe result; returns the transition it causes, if any.
    pub fn record(&mut self, result: &ProbeResult) -> Option<HealthTransition> {
        let passed = matches!(result, Ok(status) if self.expect.contains(status));
        if passed {
            self.failures = 0;
            self.timeouts = 0;
            self.successes = self.successes.saturating_add(1);
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if matches!(result, Err(ProbeError::TimedOut)) {
                self.timeouts = self.timeouts.saturating_add(1);
            }
        }
        let to = match (self.healthy, passed) {
            (false, true) if self.successes >= self.healthy_threshold => true,
            (true, false) if self.failures >= self.unhealthy_threshold => false,
            _ => return None,
        };
        self.healthy = to;
        let (streak, verdict) = if to {
            (self.successes, "passed")
        } else {
            (self.failures, "failed")
        };
        let last = match result {
            Ok(status) => format!("status {status}, expected {:?}", self.expect),
            Err(error) => error.to_string(),
        };
        Some(HealthTransition {
            from: !to,
            to,
            reason: format!("{streak} probe(s) in a row {verdict}; last: {last}"),
        })
    }

    /// Whether the current failure streak is made of timeouts only: the
    /// member never answered, but never refused either, which a starved
    /// prober cannot tell from a slow member.
    pub fn timeouts_only(&self) -> bool {
        self.failures > 0 && self.timeouts == self.failures
    }

    /// The transition to unhealthy that [`record`](Self::record) returned
    /// was not applied: the flag is healthy again, and the failure streak
    /// is kept, so that the next failure tries the transition again.
    pub fn withhold(&mut self) {
        self.healthy = true;
    }

    /// The current flag.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Passed probes in a row.
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Failed probes in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(healthy_threshold: u32, unhealthy_threshold: u32) -> ActiveCheck {
        ActiveCheck {
            path: "/healthz".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold,
            unhealthy_threshold,
            expect: 200..=299,
        }
    }

    /// Feeds statuses (0 = a connection failure); returns the flag after each.
    fn run(state: &mut ActiveState, statuses: &[u16]) -> Vec<bool> {
        statuses
            .iter()
            .map(|&status| {
                let result = if status == 0 {
                    Err(ProbeError::TimedOut)
                } else {
                    Ok(status)
                };
                state.record(&result);
                state.is_healthy()
            })
            .collect()
    }

    #[test]
    fn becomes_healthy_only_after_the_threshold() {
        let mut state = ActiveState::new(false, &check(3, 2));
        assert_eq!(run(&mut state, &[200, 200]), [false, false]);
        let t = state.record(&Ok(204)).expect("third pass flips");
        assert!(!t.from && t.to, "{t:?}");
        assert!(t.reason.contains("3 probe(s) in a row passed"), "{t:?}");
    }

    #[test]
    fn becomes_unhealthy_only_after_the_threshold() {
        let mut state = ActiveState::new(true, &check(3, 2));
        assert_eq!(run(&mut state, &[503]), [true]);
        let t = state.record(&Err(ProbeError::TimedOut)).expect("flips");
        assert_eq!((t.from, t.to), (true, false));
        assert!(t.reason.contains("timed out"), "{t:?}");
    }

    #[test]
    fn a_flapping_endpoint_never_flips_the_flag() {
        for healthy in [false, true] {
            let mut state = ActiveState::new(healthy, &check(2, 2));
            let flapping = [200, 503, 200, 0, 204, 500, 200, 404, 200, 0];
            assert_eq!(run(&mut state, &flapping), [healthy; 10]);
        }
    }

    #[test]
    fn statuses_outside_expect_fail() {
        let mut state = ActiveState::new(true, &check(1, 1));
        assert_eq!(run(&mut state, &[299, 300]), [true, false]);
        assert_eq!(run(&mut state, &[199, 200]), [false, true]);
    }

    #[test]
    fn zero_thresholds_mean_one() {
        let mut state = ActiveState::new(false, &check(0, 0));
        assert_eq!(run(&mut state, &[200, 0, 200]), [true, false, true]);
    }

    #[test]
    fn a_streak_of_timeouts_only_is_told_apart_and_can_be_withheld() {
        let mut state = ActiveState::new(true, &check(2, 2));
        assert!(!state.timeouts_only());
        state.record(&Err(ProbeError::TimedOut));
        assert!(state.timeouts_only());
        let t = state.record(&Err(ProbeError::TimedOut)).expect("flips");
        assert!(!t.to && state.timeouts_only());
        state.withhold();
        assert!(state.is_healthy());
        assert_eq!(state.failures(), 2, "the streak is kept");
        // The next failure tries again.
        assert!(state.record(&Err(ProbeError::TimedOut)).is_some());
        state.withhold();
        // One definite answer in the streak: no longer timeouts only.
        assert_eq!(run(&mut state, &[503]), [false]);
        assert!(!state.timeouts_only());
        // A pass ends the streak.
        run(&mut state, &[200, 200]);
        assert!(!state.timeouts_only());
    }

    #[test]
    fn sync_drops_a_streak_counted_towards_the_old_flag() {
        let mut state = ActiveState::new(false, &check(2, 2));
        run(&mut state, &[200]);
        state.sync(true);
        assert_eq!((state.successes(), state.failures()), (0, 0));
        assert_eq!(run(&mut state, &[0, 0]), [true, false]);
    }
}
