//! The deploy state of a service in the cluster, under
//! `{prefix}/deploys/{service}/`:
//!
//! - `desired`: the version every node that runs the service converges to
//!   ([`Desired`]); written by the node that runs a cluster deploy, kept
//!   without a lease (it outlives every node). Its mod revision names the
//!   deploy.
//! - `nodes/{node}`: each node's report of where it is ([`NodeReport`]),
//!   under its lease: a node that dies stops being waited for.
//! - `slots/{i}`: the semaphore bounding how many nodes replace instances
//!   at once (`semaphore`).
//!
//! Values are checked when read; an invalid one is skipped (and logged).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::SystemTime;

use config::Version;
use etcd_client::GetOptions;
use serde::{Deserialize, Serialize};

use super::Etcd;
use super::follow::{Following, Keys, follow};
use super::request::retrying;
use crate::error::{Action, RegisterError, RequestError};
use crate::name::Name;

/// The largest value read, in bytes; a larger one is skipped unparsed.
const MAX_VALUE_BYTES: usize = 4096;

/// The version a service should run on every node; its JSON is the value
/// of the `desired` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DesiredWire", into = "DesiredWire")]
pub struct Desired {
    /// The version.
    pub version: Version,
    /// The version before it, for `baton rollback` and for undoing a
    /// deploy that failed on some node.
    pub previous: Option<Version>,
    /// Set because a deploy of this version failed: the nodes go back.
    pub rollback_of: Option<Version>,
    /// How the nodes get there: rolling (each node within a slot of the
    /// cluster's bounds), or blue-green (every node starts a whole new set
    /// on standby, and the service's active version switches them all).
    pub strategy: config::Strategy,
    /// The node that wrote it.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
}

/// The desired version and the revision it was written at (the deploy's
/// number: every node's report says which one it acted on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredAt {
    /// What is desired.
    #[serde(flatten)]
    pub desired: Desired,
    /// Its mod revision.
    pub revision: i64,
}

#[derive(Serialize, Deserialize)]
struct DesiredWire {
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollback_of: Option<String>,
    /// Absent: rolling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<String>,
    by: String,
    at: String,
}

/// Where a node is with the desired version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Converge {
    /// Waiting for a slot of the cluster's bound.
    Waiting,
    /// Replacing its instances.
    Deploying,
    /// Its instances run the version.
    Converged,
    /// Its deploy failed and was undone there: it runs the version before.
    Failed,
    /// Blue-green: its new set is ready and registered as `standby`; it
    /// waits for the switch.
    Standby,
}

impl Converge {
    /// The word in the JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Converge::Waiting => "waiting",
            Converge::Deploying => "deploying",
            Converge::Converged => "converged",
            Converge::Failed => "failed",
            Converge::Standby => "standby",
        }
    }

    /// Whether the node is done with the desired revision it names.
    pub fn settled(self) -> bool {
        matches!(self, Converge::Converged | Converge::Failed)
    }
}

impl std::fmt::Display for Converge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's report on one service (the JSON value of its
/// `nodes/{node}` key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// The version its instances run (the one it was deploying, while
    /// `deploying`).
    pub version: String,
    /// Where it is.
    pub state: Converge,
    /// The revision of the desired version it acted on (0: none yet).
    pub desired: i64,
    /// How many instances of the service it runs.
    pub instances: u32,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it wrote this, RFC 3339.
    pub at: String,
}

fn deploys(prefix: &str, service: &Name) -> String {
    format!("{prefix}/deploys/{service}/")
}

/// Now, as the values say it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Why a `desired` value is not valid.
#[derive(Debug, thiserror::Error)]
pub enum InvalidDesired {
    /// A version is not valid.
    #[error(transparent)]
    Version(#[from] config::InvalidVersion),
    /// The strategy is not one of baton's.
    #[error(transparent)]
    Strategy(#[from] config::UnknownStrategy),
}

impl TryFrom<DesiredWire> for Desired {
    type Error = InvalidDesired;

    fn try_from(wire: DesiredWire) -> Result<Desired, InvalidDesired> {
        let version = |v: Option<String>| v.map(|v| Version::from_str(&v)).transpose();
        Ok(Desired {
            version: Version::from_str(&wire.version)?,
            previous: version(wire.previous)?,
            rollback_of: version(wire.rollback_of)?,
            strategy: match wire.strategy {
                None => config::Strategy::Rolling,
                Some(name) => name.parse()?,
            },
            by: wire.by,
            at: wire.at,
        })
    }
}

impl From<Desired> for DesiredWire {
    fn from(desired: Desired) -> DesiredWire {
        DesiredWire {
            version: desired.version.to_string(),
            previous: desired.previous.as_ref().map(ToString::to_string),
            rollback_of: desired.rollback_of.as_ref().map(ToString::to_string),
            strategy: (desired.strategy != config::Strategy::Rolling)
                .then(|| desired.strategy.to_string()),
            by: desired.by,
            at: desired.at,
        }
    }
}

impl Desired {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a desired version serialises")
    }

    /// The value of a `desired` key; `None` if it is not one.
    pub(crate) fn parse(value: &[u8]) -> Option<Desired> {
        if value.len() > MAX_VALUE_BYTES {
            return None;
        }
        serde_json::from_slice(value).ok()
    }
}

fn desired_of(key: &str, keys: &Keys) -> Option<DesiredAt> {
    let (value, revision) = keys.get(key)?;
    match Desired::parse(value) {
        Some(desired) => Some(DesiredAt {
            desired,
            revision: *revision,
        }),
        None => {
            tracing::warn!(%key, "ignoring an invalid desired version");
            None
        }
    }
}

fn reports_of(prefix: &str, keys: &Keys) -> BTreeMap<String, NodeReport> {
    let mut out = BTreeMap::new();
    for (key, (value, _)) in keys {
        let Some(node) = key.strip_prefix(prefix) else {
            continue;
        };
        let report = (value.len() <= MAX_VALUE_BYTES)
            .then(|| serde_json::from_slice::<NodeReport>(value).ok())
            .flatten();
        match report {
            Some(r) if r.node == node => {
                out.insert(node.to_owned(), r);
            }
            _ => tracing::warn!(%key, "ignoring an invalid node report"),
        }
    }
    out
}

impl Etcd {
    /// The name of the semaphore bounding `service`'s deploys, for
    /// [`Etcd::acquire`].
    pub fn deploy_slots(&self, service: &Name) -> String {
        format!("deploys/{service}/slots")
    }

    /// Writes the desired version of `service` (no lease: it outlives the
    /// node); returns its revision.
    pub async fn set_desired(
        &self,
        service: &Name,
        desired: &Desired,
    ) -> Result<i64, RequestError> {
        let key = format!("{}desired", deploys(&self.inner.prefix, service));
        let revision = self.put_durable(key, desired.to_json()).await?;
        tracing::info!(%service, version = %desired.version, revision, "desired version set");
        Ok(revision)
    }

    /// The desired version of `service` now, if any.
    pub async fn desired(&self, service: &Name) -> Result<Option<DesiredAt>, RequestError> {
        let inner = &self.inner;
        let key = format!("{}desired", deploys(&inner.prefix, service));
        let client = &inner.client;
        let response = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let key = key.clone();
            async move { client.get(key, None::<GetOptions>).await }
        })
        .await?;
        let keys: Keys = response
            .kvs()
            .iter()
            .map(|kv| {
                let name = String::from_utf8_lossy(kv.key()).into_owned();
                (name, (kv.value().to_vec(), kv.mod_revision()))
            })
            .collect();
        Ok(desired_of(&key, &keys))
    }

    /// Follows the desired version of `service`.
    pub fn follow_desired(&self, service: &Name) -> Following<Option<DesiredAt>> {
        let inner = &self.inner;
        let key = format!("{}desired", deploys(&inner.prefix, service));
        let timeout = inner.options.request_timeout;
        let followed = key.clone();
        follow(inner.client.clone(), key, false, timeout, move |keys| {
            desired_of(&followed, keys)
        })
    }

    /// Writes this node's report on `service`, under its lease.
    pub async fn report(&self, service: &Name, report: &NodeReport) -> Result<(), RegisterError> {
        let inner = &self.inner;
        let key = format!("{}nodes/{}", deploys(&inner.prefix, service), inner.node);
        let value = serde_json::to_string(report).expect("a report serialises");
        inner
            .session
            .put(key.clone(), value)
            .await
            .map_err(|source| RegisterError {
                action: Action::Register,
                key,
                source,
            })
    }

    /// Follows every node's report on `service`, by node.
    pub fn follow_reports(&self, service: &Name) -> Following<BTreeMap<String, NodeReport>> {
        let inner = &self.inner;
        let prefix = format!("{}nodes/", deploys(&inner.prefix, service));
        let timeout = inner.options.request_timeout;
        let followed = prefix.clone();
        follow(inner.client.clone(), prefix, true, timeout, move |keys| {
            reports_of(&followed, keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_desired_version_reads_back_as_written_and_a_bad_one_is_refused() {
        let d = Desired {
            version: "v2".parse().unwrap(),
            previous: Some("v1".parse().unwrap()),
            rollback_of: None,
            strategy: config::Strategy::Rolling,
            by: "node-a".into(),
            at: "2026-12-02T15:04:05Z".into(),
        };
        assert_eq!(Desired::parse(d.to_json().as_bytes()), Some(d.clone()));
        assert!(!d.to_json().contains("strategy"), "{}", d.to_json());
        let blue_green = Desired {
            strategy: config::Strategy::BlueGreen,
            ..d
        };
        let json = blue_green.to_json();
        assert!(json.contains(r#""strategy":"blue_green""#), "{json}");
        assert_eq!(Desired::parse(json.as_bytes()), Some(blue_green));
        assert_eq!(
            Desired::parse(br#"{"version":"v1","strategy":"sideways","by":"a","at":"b"}"#),
            None
        );
        assert_eq!(
            Desired::parse(br#"{"version":"../x","by":"a","at":"b"}"#),
            None
        );
        assert_eq!(
            Desired::parse(br#"{"version":"v1","previous":"-x","by":"a","at":"b"}"#),
            None
        );
        assert_eq!(Desired::parse(&vec![b' '; MAX_VALUE_BYTES + 1]), None);
    }

    #[test]
    fn a_report_under_another_nodes_key_is_skipped() {
        let report = |node: &str| NodeReport {
            node: node.into(),
            version: "v1".into(),
            state: Converge::Converged,
            desired: 3,
            instances: 2,
            reason: None,
            at: "t".into(),
        };
        let json = |r: &NodeReport| serde_json::to_vec(r).unwrap();
        let mut keys = Keys::new();
        keys.insert("/p/nodes/a".into(), (json(&report("a")), 1));
        keys.insert("/p/nodes/b".into(), (json(&report("a")), 1));
        keys.insert("/p/nodes/c".into(), (b"{".to_vec(), 1));
        let reports = reports_of("/p/nodes/", &keys);
        assert_eq!(reports.keys().collect::<Vec<_>>(), ["a"]);
    }
}
