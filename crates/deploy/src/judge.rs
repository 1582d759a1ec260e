//! The canary's gates: a pure verdict on what the proxy measured for the
//! canary and for the stable version over the same step.

use std::time::Duration;

/// Requests of one side over one step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Window {
    pub requests: u64,
    pub failures: u64,
    pub p99: Option<Duration>,
}

impl Window {
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

/// A canary gate the canary breached over one step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Breach {
    /// Too many of its requests failed.
    #[error(
        "canary error rate {:.2}% is above {:.2}% ({failures} failed of {requests} requests)",
        .rate * 100.0,
        .max * 100.0
    )]
    ErrorRate {
        /// Its failed share.
        rate: f64,
        /// The gate's `max_error_rate`.
        max: f64,
        /// Its failed requests.
        failures: u64,
        /// Its requests.
        requests: u64,
    },
    /// Its p99 latency is too far above the stable version's.
    #[error(
        "canary p99 {:.1} ms is {ratio:.2}× the stable version's {:.1} ms (at most {max}× allowed)",
        .canary.as_secs_f64() * 1000.0,
        .stable.as_secs_f64() * 1000.0
    )]
    Latency {
        /// The canary's p99, raised to the floor.
        canary: Duration,
        /// The stable version's p99, raised to the floor.
        stable: Duration,
        /// Their ratio.
        ratio: f64,
        /// The gate's `max_p99_ratio`.
        max: f64,
    },
}

/// `Ok` when the canary may go on; `Err` says which gate it breached.
pub(crate) fn judge(
    canary: &Window,
    stable: &Window,
    gates: &config::Canary,
) -> Result<(), Breach> {
    let rate = canary.error_rate();
    if rate > gates.max_error_rate {
        return Err(Breach::ErrorRate {
            rate,
            max: gates.max_error_rate,
            failures: canary.failures,
            requests: canary.requests,
        });
    }
    if let (Some(c), Some(s)) = (canary.p99, stable.p99) {
        let (c, s) = (c.max(gates.p99_floor), s.max(gates.p99_floor));
        let ratio = c.as_secs_f64() / s.as_secs_f64().max(1e-9);
        if ratio > gates.max_p99_ratio {
            return Err(Breach::Latency {
                canary: c,
                stable: s,
                ratio,
                max: gates.max_p99_ratio,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates() -> config::Canary {
        config::Canary {
            steps: vec![10, 100],
            pause: Duration::from_secs(1),
            max_error_rate: 0.01,
            max_p99_ratio: 2.0,
            p99_floor: Duration::from_millis(5),
            min_requests: 10,
        }
    }

    fn w(requests: u64, failures: u64, p99_ms: Option<u64>) -> Window {
        Window {
            requests,
            failures,
            p99: p99_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn error_rate_gate() {
        assert!(judge(&w(100, 1, None), &w(900, 0, None), &gates()).is_ok());
        let e = judge(&w(100, 2, None), &w(900, 0, None), &gates()).unwrap_err();
        assert!(
            matches!(
                e,
                Breach::ErrorRate {
                    failures: 2,
                    requests: 100,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "canary error rate 2.00% is above 1.00% (2 failed of 100 requests)"
        );
    }

    #[test]
    fn p99_gate_with_floor() {
        // Both under the floor: equal, whatever the raw ratio.
        assert!(judge(&w(100, 0, Some(4)), &w(900, 0, Some(1)), &gates()).is_ok());
        // 12 ms against a stable side raised to 5 ms: 2.4×.
        let e = judge(&w(100, 0, Some(12)), &w(900, 0, Some(1)), &gates()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "canary p99 12.0 ms is 2.40× the stable version's 5.0 ms (at most 2× allowed)"
        );
        assert!(judge(&w(100, 0, Some(40)), &w(900, 0, Some(20)), &gates()).is_ok());
        // Without a stable measurement there is nothing to compare.
        assert!(judge(&w(100, 0, Some(400)), &w(0, 0, None), &gates()).is_ok());
    }

    #[test]
    fn gates_are_inclusive() {
        // Exactly at the maximum error rate and exactly at the maximum ratio.
        assert!(judge(&w(100, 1, Some(10)), &w(900, 0, Some(5)), &gates()).is_ok());
        assert!(judge(&w(1000, 11, None), &w(900, 0, None), &gates()).is_err());
    }

    #[test]
    fn no_requests_breach_nothing() {
        // `min_requests` keeps a step from being judged this early; the
        // verdict alone never divides by zero.
        assert!(judge(&w(0, 0, None), &w(0, 0, None), &gates()).is_ok());
        assert_eq!(w(0, 0, None).error_rate(), 0.0);
        // A stable side at 0 ms is raised to the floor, not divided by.
        let e = judge(&w(10, 0, Some(50)), &w(10, 0, Some(0)), &gates()).unwrap_err();
        assert!(
            matches!(e, Breach::Latency { ratio, .. } if (ratio - 10.0).abs() < 1e-9),
            "{e:?}"
        );
    }
}
