//! `Name`: a service, node or instance id as it appears in a registry key.
//! One syntax for all three, checked here, so that a key splits back into
//! its parts unambiguously. Pure.

use std::fmt;
use std::str::FromStr;

/// 1 to 128 ASCII letters, digits, `-`, `_` or `.`, neither `.` nor `..`:
/// never contains `/`, so a key splits back into its segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// A string that is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {0:?}: use 1 to 128 letters, digits, '-', '_' or '.'")]
pub struct InvalidName(pub String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = InvalidName;

    fn from_str(text: &str) -> Result<Name, InvalidName> {
        let valid = (1..=128).contains(&text.len())
            && text != "."
            && text != ".."
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        match valid {
            true => Ok(Name(text.to_owned())),
            false => Err(InvalidName(text.to_owned())),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Name;

    #[test]
    fn letters_digits_dashes_underscores_dots_only() {
        for good in ["web", "node-1", "a_b.c", "v2-41234", &"x".repeat(128)] {
            assert_eq!(good.parse::<Name>().unwrap().as_str(), good);
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", "*", &"x".repeat(129)] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?}");
        }
    }
}
