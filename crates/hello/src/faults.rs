//! Faults on demand: what misbehaviour is switched on, from the flags and,
//! with `--faults-from-version`, from tags carried by the version itself
//! (`v4_errors`, `v5_never-ready`, `v7_slow-200ms`), so that deploying a
//! "broken version" needs no change to the command or the config. Owns the
//! tag syntax and the schedule that picks which ordinary requests fail;
//! never binds, signals or decides when the process stops.
//!
//! Tags follow the version's name, each after a [`TAG_SEPARATOR`]. The
//! separator is `_`, not `+`: baton's version syntax (`config::Version`)
//! accepts only letters, digits, `.`, `_` and `-`, and a broken version
//! must be deployable with `baton deploy --version`. For the same reason a
//! tag's value follows a `-` (`errors-0.2`); `=` (`errors=0.2`) is accepted
//! too for a `hello` started by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Separates the version's name from its fault tags, and the tags.
pub const TAG_SEPARATOR: char = '_';

/// `crash` without a value: how long after becoming ready the process dies.
const DEFAULT_CRASH_AFTER: Duration = Duration::from_millis(200);
/// `errors` without a value: the share of ordinary requests answered 500.
const DEFAULT_ERROR_RATE: f64 = 0.5;
/// `slow` without a value: the latency added to ordinary requests.
const DEFAULT_ADDED_LATENCY: Duration = Duration::from_millis(50);

/// The error rate is kept in parts per million so the schedule is integer
/// arithmetic, exact over any number of requests.
const PER_MILLION: u64 = 1_000_000;

/// What misbehaviour is switched on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// Never accept nor report readiness.
    pub never_ready: bool,
    /// Answer `/healthz` with 503.
    pub fail_health: bool,
    /// Exit abruptly this long after becoming ready.
    pub exit_after: Option<Duration>,
    /// Share of ordinary requests answered 500, in `0..=1`.
    pub error_rate: f64,
    /// Latency added to ordinary requests.
    pub added_latency: Option<Duration>,
}

/// A version whose fault tags cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Nothing before the first separator (`_errors`).
    #[error("version {version:?} has no name before its fault tags")]
    NoName { version: String },
    /// A tag that is not one of the known ones.
    #[error(
        "unknown fault tag {tag:?} in version {version:?}: expected never-ready, fail-health, crash[-DUR], errors[-RATE] or slow[-DUR], separated by '{TAG_SEPARATOR}' (e.g. v4{TAG_SEPARATOR}errors-0.2)"
    )]
    Unknown { version: String, tag: String },
    /// A known tag with a value it cannot take.
    #[error("invalid fault tag {tag:?} in version {version:?}: {reason}")]
    BadValue {
        version: String,
        tag: String,
        reason: String,
    },
}

/// One fault tag, with its value resolved.
#[derive(Debug, Clone, PartialEq)]
enum Tag {
    NeverReady,
    FailHealth,
    Crash(Duration),
    Errors(f64),
    Slow(Duration),
}

impl Faults {
    /// Switches on the faults tagged in `version` on top of `self`. A tag
    /// turns its switch on, and a tag's value replaces the flag's: the
    /// version is the more specific statement. A version without tags
    /// changes nothing.
    pub fn with_version_tags(mut self, version: &str) -> Result<Faults, TagError> {
        for tag in parse_tags(version)? {
            match tag {
                Tag::NeverReady => self.never_ready = true,
                Tag::FailHealth => self.fail_health = true,
                Tag::Crash(after) => self.exit_after = Some(after),
                Tag::Errors(rate) => self.error_rate = rate,
                Tag::Slow(latency) => self.added_latency = Some(latency),
            }
        }
        Ok(self)
    }
}

/// The tags after the version's name, in order.
fn parse_tags(version: &str) -> Result<Vec<Tag>, TagError> {
    let mut parts = version.split(TAG_SEPARATOR);
    if parts.next().is_some_and(str::is_empty) && version.contains(TAG_SEPARATOR) {
        return Err(TagError::NoName {
            version: version.to_owned(),
        });
    }
    parts.map(|tag| parse_tag(version, tag)).collect()
}

fn parse_tag(version: &str, tag: &str) -> Result<Tag, TagError> {
    let bad = |reason: String| TagError::BadValue {
        version: version.to_owned(),
        tag: tag.to_owned(),
        reason,
    };
    match tag {
        "never-ready" => return Ok(Tag::NeverReady),
        "fail-health" => return Ok(Tag::FailHealth),
        "crash" => return Ok(Tag::Crash(DEFAULT_CRASH_AFTER)),
        "errors" => return Ok(Tag::Errors(DEFAULT_ERROR_RATE)),
        "slow" => return Ok(Tag::Slow(DEFAULT_ADDED_LATENCY)),
        _ => {}
    }
    // Only tags without a `-` in their name take a value, so the first `-`
    // (or `=`) is where the value starts.
    let Some((name, value)) = tag.split_once(['-', '=']) else {
        return Err(unknown(version, tag));
    };
    let duration = |value: &str| {
        humantime::parse_duration(value)
            .map_err(|e| bad(format!("{value:?} is not a duration ({e}), e.g. 200ms")))
    };
    match name {
        "crash" => Ok(Tag::Crash(duration(value)?)),
        "slow" => Ok(Tag::Slow(duration(value)?)),
        "errors" => Ok(Tag::Errors(parse_rate(value).map_err(bad)?)),
        _ => Err(unknown(version, tag)),
    }
}

fn unknown(version: &str, tag: &str) -> TagError {
    TagError::Unknown {
        version: version.to_owned(),
        tag: tag.to_owned(),
    }
}

/// Parses a share of requests: a number from 0 to 1.
pub fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{value:?} is not an error rate: expected a number from 0 to 1, e.g. 0.2"
        )),
    }
}

/// What happens to the ordinary requests (`GET /`, `GET /users/{id}`):
/// added latency, and the schedule of those answered 500.
#[derive(Debug)]
pub struct RequestFaults {
    added_latency: Option<Duration>,
    per_million: u64,
    served: AtomicU64,
}

impl RequestFaults {
    /// The request-level part of `faults`.
    pub fn new(faults: &Faults) -> RequestFaults {
        // The rate was checked to be in 0..=1, so this fits and is exact
        // to a millionth.
        let per_million = (faults.error_rate * PER_MILLION as f64).round() as u64;
        RequestFaults {
            added_latency: faults.added_latency.filter(|d| !d.is_zero()),
            per_million: per_million.min(PER_MILLION),
            served: AtomicU64::new(0),
        }
    }

    /// Applies the faults to one ordinary request: waits the added latency,
    /// then returns the 500 to send instead of the real answer, if this
    /// request is one of those that fail.
    pub async fn inject(&self, version: &str) -> Option<Response> {
        if let Some(latency) = self.added_latency {
            tokio::time::sleep(latency).await;
        }
        if !self.next_fails() {
            return None;
        }
        let body = format!("injected error ({version})\n");
        Some((StatusCode::INTERNAL_SERVER_ERROR, body).into_response())
    }

    /// Whether the next request fails. Request `n` (from 0) fails when
    /// `floor((n + 1) * rate)` passes `floor(n * rate)`: any run of
    /// consecutive requests fails in the given share, spread evenly (0.5
    /// fails every second one, 0.2 every fifth), and no randomness makes a
    /// test flaky.
    fn next_fails(&self) -> bool {
        if self.per_million == 0 {
            return false;
        }
        let n = u128::from(self.served.fetch_add(1, Ordering::Relaxed));
        let rate = u128::from(self.per_million);
        let million = u128::from(PER_MILLION);
        (n + 1) * rate / million > n * rate / million
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(version: &str) -> Result<Faults, TagError> {
        Faults::default().with_version_tags(version)
    }

    #[test]
    fn a_version_without_tags_changes_nothing() {
        for version in ["v1", "2.4.0-rc.1", "build-17", "1.0+meta"] {
            assert_eq!(tags(version), Ok(Faults::default()), "{version}");
        }
    }

    #[test]
    fn each_tag_switches_on_its_fault_with_its_default() {
        let ms = Duration::from_millis;
        let cases = [
            (
                "v5_never-ready",
                Faults {
                    never_ready: true,
                    ..Faults::default()
                },
            ),
            (
                "v5_fail-health",
                Faults {
                    fail_health: true,
                    ..Faults::default()
                },
            ),
            (
                "v6_crash",
                Faults {
                    exit_after: Some(ms(200)),
                    ..Faults::default()
                },
            ),
            (
                "v4_errors",
                Faults {
                    error_rate: 0.5,
                    ..Faults::default()
                },
            ),
            (
                "v7_slow",
                Faults {
                    added_latency: Some(ms(50)),
                    ..Faults::default()
                },
            ),
        ];
        for (version, faults) in cases {
            assert_eq!(tags(version), Ok(faults), "{version}");
        }
    }

    #[test]
    fn values_follow_a_dash_or_an_equals_sign_and_tags_combine() {
        let faults = tags("2.4.0-rc.1_errors-0.2_slow=200ms_crash-1s_fail-health").unwrap();
        assert_eq!(
            faults,
            Faults {
                never_ready: false,
                fail_health: true,
                exit_after: Some(Duration::from_secs(1)),
                error_rate: 0.2,
                added_latency: Some(Duration::from_millis(200)),
            }
        );
        assert_eq!(tags("v4_errors=0").unwrap().error_rate, 0.0);
        assert_eq!(tags("v4_errors-1").unwrap().error_rate, 1.0);
    }

    /// Every tagged version must be one `baton deploy --version` accepts
    /// (the rule of `config::Version`, restated here since hello does not
    /// depend on config).
    #[test]
    fn the_dash_form_fits_batons_version_syntax() {
        let baton_accepts = |v: &str| {
            (1..=64).contains(&v.len())
                && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        for version in [
            "v4_errors",
            "v4_errors-0.2",
            "v5_never-ready",
            "v6_crash-500ms",
            "v7_slow-200ms_fail-health",
        ] {
            assert!(baton_accepts(version), "{version}");
            assert!(tags(version).is_ok(), "{version}");
        }
    }

    #[test]
    fn tag_values_replace_flag_values_and_switches_add_up() {
        let flags = Faults {
            never_ready: false,
            fail_health: true,
            exit_after: Some(Duration::from_secs(9)),
            error_rate: 0.9,
            added_latency: Some(Duration::from_secs(9)),
        };
        let faults = flags
            .clone()
            .with_version_tags("v3_errors-0.1_slow-1ms_crash-2ms")
            .unwrap();
        assert_eq!(
            faults,
            Faults {
                never_ready: false,
                fail_health: true,
                exit_after: Some(Duration::from_millis(2)),
                error_rate: 0.1,
                added_latency: Some(Duration::from_millis(1)),
            }
        );
        assert_eq!(flags.clone().with_version_tags("v3"), Ok(flags));
    }

    #[test]
    fn unknown_tags_and_bad_values_are_errors_that_name_them() {
        let unknown = tags("v4_bogus").unwrap_err();
        assert!(matches!(unknown, TagError::Unknown { ref tag, .. } if tag == "bogus"));
        assert_eq!(
            unknown.to_string(),
            "unknown fault tag \"bogus\" in version \"v4_bogus\": expected never-ready, fail-health, crash[-DUR], errors[-RATE] or slow[-DUR], separated by '_' (e.g. v4_errors-0.2)"
        );
        for (version, tag) in [
            ("v4_", ""),
            ("v4__errors", ""),
            ("v4_errors_Errors", "Errors"),
            ("v4_never-ready-1s", "never-ready-1s"),
            ("build_17", "17"),
            ("v4_ready-x", "ready-x"),
        ] {
            match tags(version) {
                Err(TagError::Unknown { tag: t, .. }) => assert_eq!(t, tag, "{version}"),
                other => panic!("{version}: {other:?}"),
            }
        }
        for (version, needle) in [
            ("v4_errors-2", "from 0 to 1"),
            ("v4_errors--0.1", "from 0 to 1"),
            ("v4_errors-NaN", "from 0 to 1"),
            ("v4_errors-", "from 0 to 1"),
            ("v4_slow-200", "not a duration"),
            ("v4_crash-soon", "not a duration"),
        ] {
            match tags(version) {
                Err(e @ TagError::BadValue { .. }) => {
                    assert!(e.to_string().contains(needle), "{version}: {e}")
                }
                other => panic!("{version}: {other:?}"),
            }
        }
        assert_eq!(
            tags("_errors"),
            Err(TagError::NoName {
                version: "_errors".into()
            })
        );
    }

    fn schedule(rate: f64, requests: usize) -> String {
        let faults = RequestFaults::new(&Faults {
            error_rate: rate,
            ..Faults::default()
        });
        (0..requests)
            .map(|_| if faults.next_fails() { 'x' } else { '.' })
            .collect()
    }

    #[test]
    fn the_error_schedule_fails_the_exact_share_spread_evenly() {
        assert_eq!(schedule(0.0, 8), "........");
        assert_eq!(schedule(0.5, 8), ".x.x.x.x");
        assert_eq!(schedule(0.2, 10), "....x....x");
        assert_eq!(schedule(0.25, 8), "...x...x");
        assert_eq!(schedule(1.0, 4), "xxxx");
        let thousand = schedule(0.37, 1000);
        assert_eq!(thousand.matches('x').count(), 370);
    }
}
