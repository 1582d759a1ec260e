//! One registered instance: its key (`{prefix}/services/{service}/instances/
//! {node}/{id}`), its JSON value, and the member set of a service that
//! discovery publishes. The format is public (`docs/cluster.md`): anything
//! read from the registry is checked here and refused whole when invalid;
//! nothing here talks to the registry.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use config::{UpstreamAddr, Version};
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// The largest value read from the registry, in bytes; a larger one is
/// refused without being parsed.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The largest `weight` an instance may have: front doors send it that many
/// times the requests of an instance of weight 1.
pub const MAX_WEIGHT: u32 = 1000;

/// Whether an instance takes new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Ready: front doors route to it.
    Ready,
    /// About to stop: front doors stop routing to it, its in-flight requests
    /// finish.
    Draining,
    /// Ready, but held back: the new set of a blue-green deploy before the
    /// switch. Front doors route to it only once the service's active
    /// version ([`Members::active`]) names its version.
    Standby,
}

impl State {
    /// The word in the JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Draining => "draining",
            State::Standby => "standby",
        }
    }

    fn parse(text: &str) -> Option<State> {
        [State::Ready, State::Draining, State::Standby]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an instance is in the registry: its service, the node that
/// registered it, and its id among that node's instances of the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// The service the instance belongs to.
    pub service: Name,
    /// The node that registered it.
    pub node: Name,
    /// Unique among the node's instances of the service.
    pub id: Name,
}

impl InstanceKey {
    /// The etcd key under `prefix` (which has no trailing `/`).
    pub fn key(&self, prefix: &str) -> String {
        let (node, id) = (&self.node, &self.id);
        format!("{}{node}/{id}", service_prefix(prefix, &self.service))
    }

    /// Splits a key found under `service_prefix(prefix, service)` back into
    /// its parts; `None` unless exactly `{node}/{id}` follows, both valid.
    fn parse(service_prefix: &str, service: &Name, key: &str) -> Option<InstanceKey> {
        let rest = key.strip_prefix(service_prefix)?;
        let (node, id) = rest.split_once('/')?;
        Some(InstanceKey {
            service: service.clone(),
            node: node.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// The prefix of every instance key of `service`, ending with `/`.
pub(crate) fn service_prefix(prefix: &str, service: &Name) -> String {
    format!("{prefix}/services/{service}/instances/")
}

/// One registered instance: the value of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The service (equal to the key's).
    pub service: Name,
    /// The version it runs.
    pub version: Version,
    /// Where front doors on any node reach it.
    pub address: UpstreamAddr,
    /// The node that registered it (equal to the key's).
    pub node: Name,
    /// Whether it takes new requests.
    pub state: State,
    /// Its share of the requests relative to the other members: 1 to
    /// [`MAX_WEIGHT`], 1 when the value has none.
    pub weight: u32,
    /// When it was registered (whole seconds, UTC).
    pub registered_at: SystemTime,
}

/// The JSON value as written, checked by [`Instance::parse`]. Unknown fields
/// are ignored, so that registrants may add their own. `weight` is read as
/// any JSON value so that a wrong one is refused with its own reason.
#[derive(Serialize, Deserialize)]
struct Wire {
    service: String,
    version: String,
    address: String,
    node: String,
    state: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    weight: Option<serde_json::Value>,
    registered_at: String,
}

/// A field that is present, whatever its value (`null` included, which is
/// then refused rather than taken for an absent field).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// A registry entry that is not a valid instance; discovery skips it.
#[derive(Debug, thiserror::Error)]
pub enum InvalidInstance {
    /// The key is not `{prefix}/services/{service}/instances/{node}/{id}`.
    #[error("key {key:?} is not {{prefix}}/services/{{service}}/instances/{{node}}/{{id}}")]
    Key {
        /// The key, lossily decoded.
        key: String,
    },
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("the value of {key:?} has {bytes} bytes, more than {MAX_VALUE_BYTES}")]
    TooLarge {
        /// The key.
        key: String,
        /// The value's size.
        bytes: usize,
    },
    /// The value is not the documented JSON object.
    #[error("the value of {key:?} is not an instance's JSON object: {source}")]
    Json {
        /// The key.
        key: String,
        /// What serde refused.
        source: serde_json::Error,
    },
    /// A field has an invalid value or disagrees with the key.
    #[error("the value of {key:?} has an invalid `{field}`: {reason}")]
    Field {
        /// The key.
        key: String,
        /// The field's name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

impl Instance {
    /// The JSON value to store.
    pub fn to_json(&self) -> String {
        let wire = Wire {
            service: self.service.to_string(),
            version: self.version.to_string(),
            address: self.address.authority.clone(),
            node: self.node.to_string(),
            state: self.state.as_str().to_owned(),
            // The default is left out: the value stays as it always was.
            weight: (self.weight != 1).then(|| self.weight.into()),
            registered_at: humantime::format_rfc3339_seconds(self.registered_at).to_string(),
        };
        serde_json::to_string(&wire).expect("a struct of strings serialises")
    }

    /// Checks a key and value read under `service`'s prefix.
    pub(crate) fn parse(
        service_prefix: &str,
        service: &Name,
        key: &[u8],
        value: &[u8],
    ) -> Result<(InstanceKey, Instance), InvalidInstance> {
        let key_text = String::from_utf8_lossy(key).into_owned();
        let Some(parsed_key) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| InstanceKey::parse(service_prefix, service, k))
        else {
            return Err(InvalidInstance::Key { key: key_text });
        };
        if value.len() > MAX_VALUE_BYTES {
            let bytes = value.len();
            return Err(InvalidInstance::TooLarge {
                key: key_text,
                bytes,
            });
        }
        let wire: Wire = serde_json::from_slice(value).map_err(|source| InvalidInstance::Json {
            key: key_text.clone(),
            source,
        })?;
        let field = |field: &'static str, reason: String| InvalidInstance::Field {
            key: key_text.clone(),
            field,
            reason,
        };
        if wire.service != parsed_key.service.as_str() {
            let reason = format!("{:?} is not the key's service", wire.service);
            return Err(field("service", reason));
        }
        if wire.node != parsed_key.node.as_str() {
            let reason = format!("{:?} is not the key's node", wire.node);
            return Err(field("node", reason));
        }
        let version = wire
            .version
            .parse::<Version>()
            .map_err(|e| field("version", e.to_string()))?;
        let address = wire
            .address
            .parse::<UpstreamAddr>()
            .map_err(|e| field("address", e.to_string()))?;
        let state = State::parse(&wire.state).ok_or_else(|| {
            field(
                "state",
                format!(
                    "{:?} is none of \"ready\", \"draining\" and \"standby\"",
                    wire.state
                ),
            )
        })?;
        let weight = match &wire.weight {
            None => 1,
            Some(value) => value
                .as_u64()
                .filter(|w| (1..=u64::from(MAX_WEIGHT)).contains(w))
                .and_then(|w| u32::try_from(w).ok())
                .ok_or_else(|| {
                    field(
                        "weight",
                        format!("{value} is not a whole number from 1 to {MAX_WEIGHT}"),
                    )
                })?,
        };
        let registered_at = humantime::parse_rfc3339(&wire.registered_at).map_err(|e| {
            let reason = format!(
                "{:?}: {e} (expected like \"2026-12-02T15:04:05Z\")",
                wire.registered_at
            );
            field("registered_at", reason)
        })?;
        let instance = Instance {
            service: parsed_key.service.clone(),
            version,
            address,
            node: parsed_key.node.clone(),
            state,
            weight,
            registered_at,
        };
        Ok((parsed_key, instance))
    }
}

/// The instances of one service as the registry holds them at `revision`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    /// The registry revision this set reflects (etcd's store revision); 0
    /// before the first read.
    pub revision: i64,
    /// Every valid instance, whatever its state, by key.
    pub instances: BTreeMap<InstanceKey, Instance>,
    /// The service's active version, when its `active` key names one (a
    /// blue-green deploy across the cluster switched to it).
    pub active: Option<Version>,
}

impl Members {
    /// The instances that take new requests: with an active version, those
    /// of that version that are `ready` or `standby` (and no other); without,
    /// every `ready` one. So the write of the active key moves every front
    /// door from one version to the other in one change of its set.
    pub fn routed(&self) -> impl Iterator<Item = (&InstanceKey, &Instance)> {
        self.instances.iter().filter(|(_, i)| match &self.active {
            Some(active) => i.version == *active && i.state != State::Draining,
            None => i.state == State::Ready,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn name(text: &str) -> Name {
        text.parse().unwrap()
    }

    fn web() -> (InstanceKey, Instance) {
        let key = InstanceKey {
            service: name("web"),
            node: name("node-a"),
            id: name("v2-1"),
        };
        let instance = Instance {
            service: name("web"),
            version: "v2".parse().unwrap(),
            address: "10.0.0.5:41234".parse().unwrap(),
            node: name("node-a"),
            state: State::Ready,
            weight: 1,
            registered_at: UNIX_EPOCH + Duration::from_secs(1_796_223_845),
        };
        (key, instance)
    }

    /// Parses `value` under `web()`'s key.
    fn parse(value: &str) -> Result<Instance, InvalidInstance> {
        let (key, _) = web();
        let prefix = service_prefix("/baton", &key.service);
        Instance::parse(
            &prefix,
            &key.service,
            key.key("/baton").as_bytes(),
            value.as_bytes(),
        )
        .map(|(_, instance)| instance)
    }

    #[test]
    fn standby_and_a_weight_read_back_as_written() {
        let (_, instance) = web();
        let standby = Instance {
            state: State::Standby,
            weight: MAX_WEIGHT,
            ..instance.clone()
        };
        let json = standby.to_json();
        assert!(
            json.contains(r#""state":"standby","weight":1000,"#),
            "{json}"
        );
        assert_eq!(parse(&json).unwrap(), standby);
        // No `weight`: 1, and 1 is not written.
        assert!(!instance.to_json().contains("weight"));
        assert_eq!(parse(&instance.to_json()).unwrap().weight, 1);
        let with = |weight: &str| {
            instance.to_json().replace(
                r#","registered_at""#,
                &format!(r#","weight":{weight},"registered_at""#),
            )
        };
        assert_eq!(parse(&with("1")).unwrap().weight, 1);
        assert_eq!(parse(&with("250")).unwrap().weight, 250);
        for junk in [
            "0",
            "1001",
            "-1",
            "1.5",
            "\"2\"",
            "null",
            "[1]",
            "4294967297",
        ] {
            let error = parse(&with(junk)).unwrap_err().to_string();
            assert!(
                error.contains("invalid `weight`") && error.contains("from 1 to 1000"),
                "{junk}: {error}"
            );
        }
    }

    /// Without an active version, front doors route to `ready` instances;
    /// with one, to that version's `ready` and `standby` instances only.
    #[test]
    fn the_active_version_decides_which_instances_are_routed() {
        let (key, instance) = web();
        let mut members = Members::default();
        let mut add = |id: &str, version: &str, state: State| {
            let key = InstanceKey {
                id: name(id),
                ..key.clone()
            };
            let instance = Instance {
                version: version.parse().unwrap(),
                state,
                ..instance.clone()
            };
            members.instances.insert(key, instance);
        };
        add("v1-1", "v1", State::Ready);
        add("v1-2", "v1", State::Draining);
        add("v2-1", "v2", State::Standby);
        add("v2-2", "v2", State::Ready);
        add("v3-1", "v3", State::Standby);
        let routed =
            |m: &Members| -> Vec<String> { m.routed().map(|(k, _)| k.id.to_string()).collect() };
        assert_eq!(routed(&members), ["v1-1", "v2-2"]);
        members.active = Some("v2".parse().unwrap());
        assert_eq!(routed(&members), ["v2-1", "v2-2"]);
        members.active = Some("v1".parse().unwrap());
        assert_eq!(routed(&members), ["v1-1"]);
        members.active = Some("v9".parse().unwrap());
        assert!(routed(&members).is_empty());
    }

    #[test]
    fn the_documented_value_round_trips() {
        let (key, instance) = web();
        let json = instance.to_json();
        assert_eq!(
            json,
            r#"{"service":"web","version":"v2","address":"10.0.0.5:41234","node":"node-a","state":"ready","registered_at":"2026-12-02T15:04:05Z"}"#
        );
        assert_eq!(
            key.key("/baton"),
            "/baton/services/web/instances/node-a/v2-1"
        );
        let prefix = service_prefix("/baton", &key.service);
        let parsed = Instance::parse(
            &prefix,
            &key.service,
            key.key("/baton").as_bytes(),
            json.as_bytes(),
        );
        assert_eq!(parsed.unwrap(), (key, instance));
    }

    #[test]
    fn a_value_with_extra_fields_and_fractional_seconds_is_accepted() {
        let (key, _) = web();
        let prefix = service_prefix("/baton", &key.service);
        let value = r#"{"service":"web","version":"v2","address":"app.internal:8080","node":"node-a","state":"draining","registered_at":"2026-12-02T15:04:05.250Z","owner":"ops"}"#;
        let (_, instance) = Instance::parse(
            &prefix,
            &key.service,
            key.key("/baton").as_bytes(),
            value.as_bytes(),
        )
        .unwrap();
        assert_eq!(instance.state, State::Draining);
        assert_eq!(instance.address.host, "app.internal");
    }

    #[test]
    fn invalid_entries_are_refused_with_the_reason() {
        let (key, instance) = web();
        let service = key.service.clone();
        let prefix = service_prefix("/baton", &service);
        let good_key = key.key("/baton");
        let good = instance.to_json();
        let cases: Vec<(String, String, &str)> = vec![
            (
                "/baton/services/web/instances/node-a".into(),
                good.clone(),
                "is not {prefix}",
            ),
            (
                "/baton/services/web/instances/node-a/x/y".into(),
                good.clone(),
                "is not {prefix}",
            ),
            (
                "/baton/services/web/instances/../v2-1".into(),
                good.clone(),
                "is not {prefix}",
            ),
            (
                good_key.clone(),
                "{".into(),
                "is not an instance's JSON object",
            ),
            (
                good_key.clone(),
                "x".repeat(MAX_VALUE_BYTES + 1),
                "more than 4096",
            ),
            (
                good_key.clone(),
                good.replace("\"web\"", "\"api\""),
                "invalid `service`",
            ),
            (
                good_key.clone(),
                good.replace("\"node-a\"", "\"node-b\""),
                "invalid `node`",
            ),
            (
                good_key.clone(),
                good.replace("\"v2\"", "\"-v\""),
                "invalid `version`",
            ),
            (
                good_key.clone(),
                good.replace("10.0.0.5:41234", "10.0.0.5"),
                "invalid `address`",
            ),
            (
                good_key.clone(),
                good.replace("ready", "up"),
                "invalid `state`",
            ),
            (
                good_key.clone(),
                good.replace("ready", "Standby"),
                "invalid `state`",
            ),
            (
                good_key.clone(),
                good.replace("2026-12-02T15:04:05Z", "yesterday"),
                "invalid `registered_at`",
            ),
        ];
        for (k, v, expected) in cases {
            let error = Instance::parse(&prefix, &service, k.as_bytes(), v.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(expected), "{k} {v}: {error}");
        }
    }
}
