//! Exponential restart backoff with a cap, reset once an instance has stayed
//! up long enough to count as healthy.

use std::time::Duration;

/// Delays between restarts of a crashing instance: `initial`, doubling, at
/// most `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// An instance that ran at least this long before dying restarts the
    /// sequence from `initial`.
    stable_after: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration, stable_after: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            stable_after,
            next: initial,
        }
    }

    /// The delay before restarting an instance that died after running for
    /// `uptime`.
    pub fn next_delay(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.stable_after {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets_after_a_stable_run() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(500),
            Duration::from_secs(10),
        );
        let quick = Duration::from_millis(5);
        let got: Vec<u64> = (0..5)
            .map(|_| b.next_delay(quick).as_millis() as u64)
            .collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(b.next_delay(Duration::from_secs(10)).as_millis(), 100);
        assert_eq!(b.next_delay(quick).as_millis(), 200);
    }
}
