//! Deadlines from durations that users write (timeouts, grace periods): an
//! `Instant + Duration` that never panics. `Instant`'s `+` panics when the
//! sum leaves the clock's range, which a duration read from a file or a
//! command line can make it do. Owns this one addition; never reads the
//! clock itself.

use std::time::Duration;

/// How far ahead a deadline can be: 1,000 years. A deadline this far ahead
/// is never reached, so a longer duration is the same as this one; and an
/// instant this far ahead stays well inside the range of the clocks
/// (`CLOCK_MONOTONIC` counts `i64` seconds since boot) and of tokio's timer,
/// which itself adds a millisecond to a deadline and would panic on an
/// instant at the very end of the clock.
pub const HORIZON: Duration = Duration::from_secs(1000 * 365 * 86_400);

/// An instant to which a duration of any length can be added.
pub trait SaturatingAdd: Copy {
    /// `self + duration`, with a duration longer than [`HORIZON`] taken as
    /// `HORIZON` (the deadline is then never reached).
    fn saturating_add(self, duration: Duration) -> Self;
}

impl SaturatingAdd for std::time::Instant {
    fn saturating_add(self, duration: Duration) -> Self {
        self.checked_add(duration.min(HORIZON))
            .expect("an instant 1,000 years after a reading of the clock is in its range")
    }
}

#[cfg(feature = "runtime")]
impl SaturatingAdd for tokio::time::Instant {
    fn saturating_add(self, duration: Duration) -> Self {
        tokio::time::Instant::from_std(self.into_std().saturating_add(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_like_plus_up_to_the_horizon() {
        let now = std::time::Instant::now();
        for d in [Duration::ZERO, Duration::from_millis(1500), HORIZON] {
            assert_eq!(now.saturating_add(d), now + d);
        }
    }

    #[test]
    fn longer_durations_stop_at_the_horizon() {
        let now = std::time::Instant::now();
        for d in [
            HORIZON + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            assert_eq!(now.saturating_add(d), now + HORIZON);
        }
    }

    #[cfg(feature = "runtime")]
    #[tokio::test(start_paused = true)]
    async fn a_timer_at_the_horizon_is_never_due() {
        let now = tokio::time::Instant::now();
        let never = tokio::time::sleep_until(now.saturating_add(Duration::MAX));
        let later = tokio::time::sleep(Duration::from_secs(10 * 365 * 86_400));
        tokio::select! {
            () = never => panic!("a deadline at the horizon passed"),
            () = later => {}
        }
    }
}
