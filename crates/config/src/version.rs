//! Version labels of a service (`v1`, `2.4.0-rc.1`): what `{version}` is
//! replaced with and what `baton deploy --version` names. One syntax for the
//! file and the command line, checked here. Pure.

use std::fmt;
use std::str::FromStr;

/// A valid version: 1 to 64 ASCII letters, digits, `.`, `_` or `-`,
/// starting with a letter or a digit (so it is never an option such as
/// `-x`, nor `.` or `..` when used in a path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Version(String);

/// A string that is not a valid [`Version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid version {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
)]
pub struct InvalidVersion(pub String);

impl Version {
    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Version {
    type Err = InvalidVersion;

    fn from_str(text: &str) -> Result<Version, InvalidVersion> {
        let valid = (1..=64).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        match valid {
            true => Ok(Version(text.to_owned())),
            false => Err(InvalidVersion(text.to_owned())),
        }
    }
}

impl AsRef<str> for Version {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{InvalidVersion, Version};

    #[test]
    fn letters_digits_dots_dashes_underscores() {
        for good in ["v1", "1", "2.4.0-rc.1", "build_17", "A", &"x".repeat(64)] {
            assert_eq!(good.parse::<Version>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-v1",
            ".",
            "..",
            "_x",
            "v 1",
            "v1/x",
            "é",
            "{port}",
            &"x".repeat(65),
        ] {
            assert_eq!(
                bad.parse::<Version>(),
                Err(InvalidVersion(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            "v 1".parse::<Version>().unwrap_err().to_string(),
            "invalid version \"v 1\": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        );
    }
}
