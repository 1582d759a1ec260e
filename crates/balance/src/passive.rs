//! Passive health: ejecting a member after consecutive failed requests, with
//! exponential backoff.
//!
//! Owns the pure state machine ([`PassiveState`]) and its configuration. It
//! must never read the clock, lock, log or touch an atomic: the caller passes
//! `now` and applies the returned [`PassiveTransition`], which keeps the
//! backoff testable with injected instants.

use std::time::Duration;

use handoff::time::SaturatingAdd;
use tokio::time::Instant;

/// How a request sent to a member ended, as far as the member's health is
/// concerned. The proxy reports it through [`Picked::report`](crate::Picked::report).
///
/// The member's [`Stats`](crate::Stats) follow the same judgement: every
/// outcome but [`Cancelled`](Outcome::Cancelled) is a request, and the
/// [failures](Outcome::is_failure) are failed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The member answered (any status below 500, 4xx included: the member
    /// works, the request was wrong). Resets the failure streak and the
    /// ejection backoff.
    Success,
    /// The TCP connection (or the TLS handshake) to the member failed.
    ConnectFailure,
    /// The member answered with a 5xx status.
    ServerError,
    /// The member did not answer within the proxy's timeout.
    Timeout,
    /// The client went away before the member answered, the client broke
    /// the exchange itself (a malformed or abandoned request body), or the
    /// request was never sent: says nothing about the member, so it is
    /// neutral, and not counted in the member's stats at all.
    Cancelled,
}

impl Outcome {
    /// Whether this outcome counts towards a passive ejection.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::ConnectFailure | Outcome::ServerError | Outcome::Timeout
        )
    }
}

/// When to eject a member passively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Failed requests in a row that eject the member (0 is treated as 1).
    pub consecutive_failures: u32,
    /// Length of the first ejection; the n-th ejection in a row lasts
    /// `ejection_time × 2^(n-1)`.
    pub ejection_time: Duration,
    /// Upper bound of any ejection.
    pub max_ejection_time: Duration,
}

impl PassiveConfig {
    /// Length of the `ejection`-th ejection in a row (counted from 1):
    /// `ejection_time × 2^(ejection-1)`, capped at `max_ejection_time`.
    pub fn ejection_duration(&self, ejection: u32) -> Duration {
        let doublings = ejection.saturating_sub(1);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.ejection_time
            .checked_mul(factor)
            .unwrap_or(self.max_ejection_time)
            .min(self.max_ejection_time)
    }
}

/// A change of passive state worth acting on (and logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveTransition {
    /// The member is ejected until `until`.
    Ejected {
        /// When the member becomes available again.
        until: Instant,
        /// How long this ejection lasts.
        duration: Duration,
        /// How many ejections in a row, this one included.
        ejection: u32,
        /// The failure streak that caused it.
        failures: u32,
    },
    /// The failure threshold is reached but the caller refused the ejection
    /// (the member is the last available one of its pool). The streak is kept,
    /// so the next failure asks again.
    Withheld {
        /// The current failure streak.
        failures: u32,
    },
    /// A success after one or more ejections: the backoff starts over.
    Recovered {
        /// How many ejections in a row preceded the success.
        ejections: u32,
    },
}

/// The passive state of one member: failure streak, ejections in a row, and
/// the end of the current ejection.
///
/// Outcomes reported while the member is ejected are ignored: they belong to
/// requests sent before the ejection and say nothing new. When an ejection
/// ends, the streak starts from zero but the ejection count keeps growing (and
/// each ejection doubles) until a success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassiveState {
    streak: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

impl PassiveState {
    /// A member with no failure history.
    pub fn new() -> PassiveState {
        PassiveState::default()
    }

    /// A state taken over from another process: `streak` failures in a
    /// row, `ejections` in a row, ejected until `ejected_until`.
    pub fn resumed(streak: u32, ejections: u32, ejected_until: Option<Instant>) -> PassiveState {
        PassiveState {
            streak,
            ejections,
            ejected_until,
        }
    }

    /// Records one outcome at `now`. `may_eject` is asked only when the
    /// threshold is reached; returning `false` withholds the ejection.
    pub fn record(
        &mut self,
        outcome: Outcome,
        now: Instant,
        config: &PassiveConfig,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<PassiveTransition> {
        if let Some(until) = self.ejected_until {
            if now < until {
                return None;
            }
            self.ejected_until = None;
        }
        match outcome {
            Outcome::Cancelled => None,
            Outcome::Success => {
                self.streak = 0;
                let ejections = std::mem::take(&mut self.ejections);
                (ejections > 0).then_some(PassiveTransition::Recovered { ejections })
            }
            Outcome::ConnectFailure | Outcome::ServerError | Outcome::Timeout => {
                self.streak = self.streak.saturating_add(1);
                if self.streak < config.consecutive_failures.max(1) {
                    return None;
                }
                if !may_eject() {
                    return Some(PassiveTransition::Withheld {
                        failures: self.streak,
                    });
                }
                let failures = std::mem::take(&mut self.streak);
                self.ejections = self.ejections.saturating_add(1);
                let duration = config.ejection_duration(self.ejections);
                let until = now.saturating_add(duration);
                self.ejected_until = Some(until);
                Some(PassiveTransition::Ejected {
                    until,
                    duration,
                    ejection: self.ejections,
                    failures,
                })
            }
        }
    }

    /// The end of the current ejection, if the member is ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|&until| now < until)
    }

    /// Failed requests in a row since the last success or ejection.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Ejections in a row since the last success.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// No streak, no ejection, no backoff: a success would change nothing.
    pub fn is_at_rest(&self) -> bool {
        self.streak == 0 && self.ejections == 0 && self.ejected_until.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PassiveConfig {
        PassiveConfig {
            consecutive_failures: 3,
            ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(60),
        }
    }

    fn fail(state: &mut PassiveState, now: Instant) -> Option<PassiveTransition> {
        state.record(Outcome::ServerError, now, &config(), || true)
    }

    #[test]
    fn ejects_after_the_threshold_and_only_then() {
        let now = Instant::now();
        let mut state = PassiveState::new();
        assert_eq!(fail(&mut state, now), None);
        assert_eq!(fail(&mut state, now), None);
        let Some(PassiveTransition::Ejected {
            until,
            ejection: 1,
            failures: 3,
            ..
        }) = fail(&mut state, now)
        else {
            panic!("third failure must eject")
        };
        assert_eq!(until, now + Duration::from_secs(10));
        assert_eq!(state.ejected_until(now), Some(until));
        assert_eq!(state.ejected_until(until), None);
    }

    #[test]
    fn an_ejection_as_long_as_a_duration_holds_does_not_overflow_the_clock() {
        let now = Instant::now();
        let cfg = PassiveConfig {
            consecutive_failures: 1,
            ejection_time: Duration::MAX,
            max_ejection_time: Duration::MAX,
        };
        let mut state = PassiveState::new();
        let ejected = state.record(Outcome::ServerError, now, &cfg, || true);
        let Some(PassiveTransition::Ejected { until, .. }) = ejected else {
            panic!("one failure must eject: {ejected:?}")
        };
        assert_eq!(until, now + handoff::time::HORIZON);
        assert_eq!(state.ejected_until(now), Some(until));
    }

    #[test]
    fn success_resets_the_streak_and_cancelled_is_neutral() {
        let now = Instant::now();
        let mut state = PassiveState::new();
        fail(&mut state, now);
        fail(&mut state, now);
        assert_eq!(
            state.record(Outcome::Cancelled, now, &config(), || true),
            None
        );
        assert_eq!(state.streak(), 2);
        assert_eq!(
            state.record(Outcome::Success, now, &config(), || true),
            None
        );
        assert!(state.is_at_rest());
        fail(&mut state, now);
        fail(&mut state, now);
        assert_eq!(state.ejected_until(now), None);
    }

    #[test]
    fn backoff_doubles_until_the_cap_and_resets_on_success() {
        let mut now = Instant::now();
        let mut state = PassiveState::new();
        let mut durations = Vec::new();
        for _ in 0..5 {
            for _ in 0..3 {
                if let Some(PassiveTransition::Ejected { duration, .. }) = fail(&mut state, now) {
                    durations.push(duration.as_secs());
                    now += duration;
                }
            }
        }
        assert_eq!(durations, [10, 20, 40, 60, 60]);
        assert_eq!(
            state.record(Outcome::Success, now, &config(), || true),
            Some(PassiveTransition::Recovered { ejections: 5 })
        );
        for _ in 0..2 {
            fail(&mut state, now);
        }
        let Some(PassiveTransition::Ejected { duration, .. }) = fail(&mut state, now) else {
            panic!("must eject again")
        };
        assert_eq!(duration, Duration::from_secs(10));
    }

    #[test]
    fn outcomes_during_an_ejection_are_ignored() {
        let now = Instant::now();
        let mut state = PassiveState::new();
        for _ in 0..3 {
            fail(&mut state, now);
        }
        let later = now + Duration::from_secs(5);
        assert_eq!(fail(&mut state, later), None);
        assert_eq!(
            state.record(Outcome::Success, later, &config(), || true),
            None
        );
        assert_eq!((state.streak(), state.ejections()), (0, 1));
    }

    #[test]
    fn a_withheld_ejection_keeps_the_streak() {
        let now = Instant::now();
        let mut state = PassiveState::new();
        let cfg = config();
        for _ in 0..2 {
            state.record(Outcome::Timeout, now, &cfg, || false);
        }
        assert_eq!(
            state.record(Outcome::ConnectFailure, now, &cfg, || false),
            Some(PassiveTransition::Withheld { failures: 3 })
        );
        assert!(matches!(
            state.record(Outcome::ConnectFailure, now, &cfg, || true),
            Some(PassiveTransition::Ejected { failures: 4, .. })
        ));
    }

    #[test]
    fn extreme_ejection_counts_saturate_at_the_cap() {
        let cfg = config();
        assert_eq!(cfg.ejection_duration(0), Duration::from_secs(10));
        assert_eq!(cfg.ejection_duration(40), Duration::from_secs(60));
        assert_eq!(cfg.ejection_duration(u32::MAX), Duration::from_secs(60));
    }
}
