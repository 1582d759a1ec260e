//! Human duration syntax for the command line: `500ms`, `10s`, `2m`, `1.5s`.
//!
//! Owns only parsing; it knows nothing about what the durations are used for.

use std::time::Duration;

/// Parses a duration written as a number followed by a unit: `us`, `ms`, `s`, `m` or `h`.
///
/// The number is a non-negative decimal (`10`, `1.5`); the unit is required so that `10` is never silently read as
/// seconds when milliseconds were meant. Examples: `500ms`, `10s`, `2m`, `0.25s`, `1h`.
///
/// # Errors
///
/// Returns a one-line explanation naming the input when it is empty, has no or an unknown unit, has a malformed
/// number, or does not fit in a [`Duration`].
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let hint = "expected a number followed by us, ms, s, m or h, e.g. 500ms or 10s";
    if number.is_empty() {
        return Err(format!("invalid duration {input:?}: {hint}"));
    }
    let unit_secs: f64 = match unit.trim_start() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("invalid duration {input:?}: missing unit; {hint}")),
        other => {
            return Err(format!(
                "invalid duration {input:?}: unknown unit {other:?}; {hint}"
            ));
        }
    };
    if !is_plain_decimal(number) {
        return Err(format!(
            "invalid duration {input:?}: malformed number {number:?}; {hint}"
        ));
    }
    // Integers are converted exactly; only fractional inputs go through floating point.
    if let Ok(whole) = number.parse::<u64>() {
        let nanos_per_unit = (unit_secs * 1e9).round() as u64;
        return whole
            .checked_mul(nanos_per_unit)
            .map(Duration::from_nanos)
            .ok_or_else(|| format!("invalid duration {input:?}: too large"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {input:?}: malformed number {number:?}; {hint}"))?;
    Duration::try_from_secs_f64(value * unit_secs)
        .map_err(|_| format!("invalid duration {input:?}: too large"))
}

/// `digits` or `digits.digits`; rejects what `f64::from_str` would also accept (`inf`, `1e3`, `.5`, `5.`).
fn is_plain_decimal(number: &str) -> bool {
    let mut parts = number.split('.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    parts.next().is_none() && digits(whole) && fraction.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn accepts_fractions_and_surrounding_space() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration(" 10 ms "), Ok(Duration::from_millis(10)));
    }

    #[test]
    fn rejects_a_missing_unit_instead_of_guessing_seconds() {
        let err = parse_duration("10").unwrap_err();
        assert!(err.contains("missing unit"), "{err}");
    }

    #[test]
    fn rejects_malformed_input_with_the_input_in_the_message() {
        for bad in [
            "", "s", "ms", "-1s", "1.s", ".5s", "1.2.3s", "1e3ms", "infs", "10 sec", "5d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
    }
}
