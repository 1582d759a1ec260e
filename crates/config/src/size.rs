//! Byte sizes as users write them: `65536`, `"64KiB"`, `"10MiB"`, `"1GB"`.
//! Pure parsing; range checks belong to the caller.

/// Parses a size: digits, optional spaces, then an optional unit.
///
/// Units (case-insensitive): `B`; `KB`, `MB`, `GB` (powers of 1000);
/// `KiB`, `MiB`, `GiB` (powers of 1024). No fractions, no sign.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a number of bytes, optionally followed by a unit".into());
    }
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}; expected B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn plain_numbers_and_units() {
        for (text, bytes) in [
            ("0", 0),
            ("65536", 65536),
            ("12B", 12),
            ("64KiB", 64 * 1024),
            ("64 KiB", 64 * 1024),
            ("10MiB", 10 * 1024 * 1024),
            ("1GiB", 1 << 30),
            ("2KB", 2000),
            ("3mb", 3_000_000),
            ("1GB", 1_000_000_000),
            ("5kib", 5120),
            (" 7 ", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_junk_fractions_signs_and_overflow() {
        for (text, why) in [
            ("", "expected a number"),
            ("KiB", "expected a number"),
            ("-1", "expected a number"),
            ("1.5MiB", "unknown unit \".5MiB\""),
            ("10 MiBs", "unknown unit \"MiBs\""),
            ("1TiB", "unknown unit"),
            ("99999999999999999999", "too large"),
            ("18446744073709551615GiB", "too large"),
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
