//! The duration syntax of the command line: a whole number and a unit,
//! `250ms`, `2s`, `1m` (also `1h`). Owns parsing only; a bad value becomes a
//! clap error through [`parse`], never a panic.

use std::time::Duration;

/// Parses `250ms`, `2s`, `1m` or `1h` into a [`Duration`].
///
/// The unit is required: a bare `30` is ambiguous between seconds and
/// milliseconds, and a deploy tool's timeouts must not be guessed.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let bad = |why: &str| format!("invalid duration {input:?}: {why} (examples: 250ms, 2s, 1m)");
    if number.is_empty() {
        return Err(bad("expected a whole number followed by a unit"));
    }
    let n: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(bad("missing unit ms, s, m or h")),
        _ => return Err(bad("unknown unit, expected ms, s, m or h")),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| bad("the number is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse(" 30s "), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn rejects_junk_with_a_reason() {
        for (bad, why) in [
            ("", "expected a whole number"),
            ("ms", "expected a whole number"),
            ("-1s", "expected a whole number"),
            ("1.5s", "unknown unit"),
            ("30", "missing unit"),
            ("5x", "unknown unit"),
            ("2 s", "unknown unit"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615h", "too large"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("examples: 250ms"), "{bad:?}: {err}");
        }
    }
}
