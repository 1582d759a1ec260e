//! A service's active version: the value of `{prefix}/services/{service}/
//! active`, written by the node that runs a blue-green deploy across the
//! cluster at the moment of its switch. Discovery reads it with the
//! service's instances (one prefix, one watch, one order of events), so
//! that a front door moves from one version to the other in one change of
//! its member set ([`crate::Members::routed`]). No I/O here.

use config::Version;
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// The largest value read, in bytes; a larger one is refused unparsed.
const MAX_VALUE_BYTES: usize = 4096;

/// The value of the `active` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct Active {
    /// The version front doors route to (its `ready` and `standby`
    /// instances, and no other).
    pub version: Version,
    /// The node that wrote it.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    version: String,
    by: String,
    at: String,
}

impl TryFrom<Wire> for Active {
    type Error = config::InvalidVersion;

    fn try_from(wire: Wire) -> Result<Active, config::InvalidVersion> {
        Ok(Active {
            version: wire.version.parse()?,
            by: wire.by,
            at: wire.at,
        })
    }
}

impl From<Active> for Wire {
    fn from(active: Active) -> Wire {
        Wire {
            version: active.version.to_string(),
            by: active.by,
            at: active.at,
        }
    }
}

/// An `active` value that is not valid; discovery then routes as if there
/// were none (to every `ready` instance).
#[derive(Debug, thiserror::Error)]
pub enum InvalidActive {
    /// Larger than 4096 bytes.
    #[error("the active version's value has {0} bytes, more than {MAX_VALUE_BYTES}")]
    TooLarge(usize),
    /// Not the documented JSON object, or its version is not valid.
    #[error("the active version's value is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

impl Active {
    /// The JSON value to store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an active version serialises")
    }

    /// Checks a value read from the registry.
    pub fn parse(value: &[u8]) -> Result<Active, InvalidActive> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(InvalidActive::TooLarge(value.len()));
        }
        Ok(serde_json::from_slice(value)?)
    }
}

/// The key of `service`'s active version under `prefix` (no trailing `/`).
pub(crate) fn active_key(prefix: &str, service: &Name) -> String {
    format!("{prefix}/services/{service}/active")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_version_reads_back_as_written_and_junk_is_refused() {
        let active = Active {
            version: "v2".parse().unwrap(),
            by: "node-a".into(),
            at: "2026-12-02T15:04:05Z".into(),
        };
        let json = active.to_json();
        assert_eq!(
            json,
            r#"{"version":"v2","by":"node-a","at":"2026-12-02T15:04:05Z"}"#
        );
        assert_eq!(Active::parse(json.as_bytes()).unwrap(), active);
        for junk in [
            &br#"{"version":"../x","by":"a","at":"b"}"#[..],
            br#"{"version":"v2"}"#,
            br#"{"version":2,"by":"a","at":"b"}"#,
            b"v2",
        ] {
            assert!(Active::parse(junk).is_err(), "{junk:?}");
        }
        let large = vec![b' '; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            Active::parse(&large),
            Err(InvalidActive::TooLarge(_))
        ));
        let prefix = "/baton";
        assert_eq!(
            active_key(prefix, &"web".parse().unwrap()),
            "/baton/services/web/active"
        );
    }
}
