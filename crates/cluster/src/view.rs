//! The whole cluster as one read of the registry shows it: the nodes alive
//! (their keys are under their leases), each node's registered instances,
//! and each service's deploy state — the desired version, every node's
//! report, the holder of the deploy lock and of each slot of the rolling
//! bounds. Built from the keys under the prefix, all read at one revision
//! (`Etcd::view`), so that the parts agree with each other. The JSON of
//! [`View`] is what `GET /v1/cluster` answers. No I/O here; an entry that
//! is not valid is left out and listed in [`View::invalid`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::etcd::{DesiredAt, Holder, NodeReport};
use crate::instance::{Instance, service_prefix};
use crate::name::Name;

/// At most this many invalid entries are listed; the rest are counted.
const MAX_INVALID: usize = 16;

/// The cluster as the registry holds it at [`View::revision`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct View {
    /// The key prefix of the cluster (`prefix` of `[cluster]`).
    pub prefix: String,
    /// The node that read it.
    pub read_by: String,
    /// etcd's revision of the read.
    pub revision: i64,
    /// Whether the read stopped at its bound of keys (the view is then
    /// partial).
    #[serde(default)]
    pub truncated: bool,
    /// Every node with a key in the registry (a record, an instance or a
    /// deploy report), by name.
    pub nodes: Vec<NodeView>,
    /// Every service with instances or a deploy state, by name.
    pub services: Vec<ServiceView>,
    /// Entries left out because they are not valid, with why (at most 16,
    /// then a count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<String>,
}

/// One node: alive while its lease is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeView {
    /// Its name.
    pub node: String,
    /// Whether it keeps a node record (`{prefix}/nodes/{node}`): every baton
    /// node does; a program that registers itself need not.
    pub record: bool,
    /// The lease its keys are under (its record's, else its first
    /// instance's), in hexadecimal as `etcdctl` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// The seconds left on that lease when read (it is renewed every third
    /// of its TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_left_s: Option<i64>,
    /// Its record's registry revision applied by its front door, by
    /// discovered service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, i64>,
    /// The instances it registered.
    pub instances: Vec<InstanceView>,
}

/// One registered instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// Its service.
    pub service: String,
    /// Its id among its node's instances of the service.
    pub id: String,
    /// The version it runs.
    pub version: String,
    /// Where front doors reach it.
    pub address: String,
    /// `ready` or `draining`.
    pub state: String,
}

/// One service's deploy state across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceView {
    /// Its name.
    pub service: String,
    /// The version every node converges to, and its revision; none before
    /// the first cluster deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredAt>,
    /// The version front doors route to since a blue-green switch, if its
    /// `active` key names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<crate::Active>,
    /// Who holds its deploy lock (a deploy or rollback runs); none when
    /// free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<Holder>,
    /// The held slots of its rolling bounds, by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotView>,
    /// Each node's report on it, by node.
    pub nodes: Vec<NodeReport>,
    /// Its ready instances on every node, counted by version.
    pub ready: BTreeMap<String, u32>,
}

/// A held slot of a service's rolling bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    /// Which slot.
    pub index: u32,
    /// Its holder.
    #[serde(flatten)]
    pub holder: Holder,
}

/// One key read: its name, value, lease (0: none) and mod revision.
pub(crate) struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub lease: i64,
    pub revision: i64,
}

impl View {
    /// The view of the entries read under `prefix` (no trailing `/`) at
    /// `revision`; the leases' TTLs are left for the caller to fill.
    pub(crate) fn build<'a>(
        prefix: &str,
        read_by: &str,
        revision: i64,
        entries: impl IntoIterator<Item = Entry<'a>>,
    ) -> View {
        let mut view = Builder::default();
        let root = format!("{prefix}/");
        for entry in entries {
            let key = String::from_utf8_lossy(entry.key);
            let Some(rest) = key.strip_prefix(&root) else {
                continue;
            };
            if let Err(why) = view.add(prefix, rest, &entry) {
                view.invalid(format!("{key}: {why}"));
            }
        }
        view.finish(prefix, read_by, revision)
    }
}

#[derive(Default)]
struct Builder {
    nodes: BTreeMap<String, NodeView>,
    services: BTreeMap<String, ServiceView>,
    invalid: Vec<String>,
    invalid_count: usize,
}

impl Builder {
    fn invalid(&mut self, why: String) {
        self.invalid_count += 1;
        if self.invalid.len() < MAX_INVALID {
            self.invalid.push(why);
        }
    }

    fn node(&mut self, node: &str, lease: i64) -> &mut NodeView {
        let view = self
            .nodes
            .entry(node.to_owned())
            .or_insert_with(|| NodeView {
                node: node.to_owned(),
                ..NodeView::default()
            });
        if view.lease.is_none() && lease != 0 {
            view.lease = Some(format!("{lease:x}"));
        }
        view
    }

    fn service(&mut self, service: &str) -> &mut ServiceView {
        self.services
            .entry(service.to_owned())
            .or_insert_with(|| ServiceView {
                service: service.to_owned(),
                ..ServiceView::default()
            })
    }

    /// Adds the entry at `rest` (its key after `{prefix}/`); says why it is
    /// not valid. A key of a shape the registry does not define is skipped.
    fn add(&mut self, prefix: &str, rest: &str, entry: &Entry<'_>) -> Result<(), Invalid> {
        let parts: Vec<&str> = rest.split('/').collect();
        let name = |text: &str| text.parse::<Name>();
        match parts.as_slice() {
            ["nodes", node] => {
                name(node)?;
                let record: NodeRecord = parse(entry.value)?;
                if record.node != *node {
                    return Err(Invalid::OtherNode(record.node));
                }
                let view = self.node(node, 0);
                view.record = true;
                // The record's lease is the node's.
                view.lease = Some(format!("{:x}", entry.lease)).filter(|_| entry.lease != 0);
                view.applied = record.applied;
            }
            ["services", service, "instances", ..] => {
                let service = name(service)?;
                let under = service_prefix(prefix, &service);
                let key = format!("{prefix}/{rest}");
                let (key, instance) =
                    Instance::parse(&under, &service, key.as_bytes(), entry.value)?;
                let ready = instance.state == crate::State::Ready;
                let version = instance.version.to_string();
                self.node(key.node.as_str(), entry.lease)
                    .instances
                    .push(InstanceView {
                        service: service.to_string(),
                        id: key.id.to_string(),
                        version: version.clone(),
                        address: instance.address.authority.clone(),
                        state: instance.state.to_string(),
                    });
                let counts = &mut self.service(service.as_str()).ready;
                let count = counts.entry(version).or_default();
                *count += u32::from(ready);
            }
            ["services", service, "active"] => {
                name(service)?;
                let active = crate::Active::parse(entry.value).map_err(|_| Invalid::Active)?;
                self.service(service).active = Some(active);
            }
            ["deploys", service, "desired"] => {
                name(service)?;
                let desired = crate::etcd::Desired::parse(entry.value).ok_or(Invalid::Desired)?;
                self.service(service).desired = Some(DesiredAt {
                    desired,
                    revision: entry.revision,
                });
            }
            ["deploys", service, "nodes", node] => {
                name(service)?;
                name(node)?;
                let report: NodeReport = parse(entry.value)?;
                if report.node != *node {
                    return Err(Invalid::OtherNode(report.node));
                }
                self.node(node, entry.lease);
                self.service(service).nodes.push(report);
            }
            ["deploys", service, "slots", index] => {
                name(service)?;
                let index = index.parse().map_err(|_| Invalid::SlotIndex)?;
                let holder = parse(entry.value)?;
                self.service(service).slots.push(SlotView { index, holder });
            }
            ["locks", "deploy", service] => {
                name(service)?;
                self.service(service).lock = Some(parse(entry.value)?);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self, prefix: &str, read_by: &str, revision: i64) -> View {
        if self.invalid_count > self.invalid.len() {
            let more = self.invalid_count - self.invalid.len();
            self.invalid.push(format!("… and {more} more"));
        }
        let mut services: Vec<ServiceView> = self.services.into_values().collect();
        for service in &mut services {
            service.slots.sort_by_key(|s| s.index);
        }
        View {
            prefix: prefix.to_owned(),
            read_by: read_by.to_owned(),
            revision,
            truncated: false,
            nodes: self.nodes.into_values().collect(),
            services,
            invalid: self.invalid,
        }
    }
}

/// A node record, as `nodes` writes it.
#[derive(Deserialize)]
struct NodeRecord {
    node: String,
    #[serde(default)]
    applied: BTreeMap<String, i64>,
}

/// Why an entry of the registry is not valid (it is listed in the view's
/// `invalid`, and otherwise left out).
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// A service or node name in the key is not a name.
    #[error(transparent)]
    Name(#[from] crate::InvalidName),
    /// An instance's key or value.
    #[error(transparent)]
    Instance(#[from] crate::InvalidInstance),
    /// A value longer than the registry's bound.
    #[error("{0} bytes, more than the bound")]
    TooLong(usize),
    /// A value that is not the JSON its key calls for.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A record or report naming another node than its key.
    #[error("{0:?} is not the key's node")]
    OtherNode(String),
    /// A desired version that is not one.
    #[error("not a desired version's JSON object")]
    Desired,
    /// An active version's value.
    #[error("not an active version's JSON object")]
    Active,
    /// A slot key whose last part is not a number.
    #[error("not a slot index")]
    SlotIndex,
}

/// A JSON value of at most [`crate::instance::MAX_VALUE_BYTES`] bytes.
fn parse<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, Invalid> {
    if value.len() > crate::instance::MAX_VALUE_BYTES {
        return Err(Invalid::TooLong(value.len()));
    }
    Ok(serde_json::from_slice(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(key: &'a str, value: &'a str, lease: i64) -> Entry<'a> {
        Entry {
            key: key.as_bytes(),
            value: value.as_bytes(),
            lease,
            revision: 3,
        }
    }

    fn instance(node: &str, version: &str, port: u16, state: &str) -> String {
        format!(
            r#"{{"service":"web","version":"{version}","address":"10.0.0.1:{port}","node":"{node}","state":"{state}","registered_at":"2026-12-02T15:04:05Z"}}"#
        )
    }

    /// Every kind of key lands in its place; the ready instances are
    /// counted by version; an invalid entry is left out and said.
    #[test]
    fn the_keys_of_a_cluster_make_its_view() {
        let a1 = instance("node-a", "v2", 1, "ready");
        let a2 = instance("node-a", "v2", 2, "draining");
        let app = instance("app-host", "v7", 3, "ready");
        let bad = instance("node-b", "v2", 4, "ready");
        let entries = [
            entry(
                "/p/nodes/node-a",
                r#"{"node":"node-a","applied":{"web":7}}"#,
                0x1a,
            ),
            entry("/p/services/web/instances/node-a/v2-1", &a1, 0x1a),
            entry("/p/services/web/instances/node-a/v2-2", &a2, 0x1a),
            entry("/p/services/web/instances/app-host/app", &app, 0x2b),
            // The value names another node than the key.
            entry("/p/services/web/instances/node-c/v2-4", &bad, 0x3c),
            entry(
                "/p/deploys/web/desired",
                r#"{"version":"v2","previous":"v1","by":"node-a","at":"t"}"#,
                0,
            ),
            entry(
                "/p/deploys/web/nodes/node-a",
                r#"{"node":"node-a","version":"v2","state":"converged","desired":5,"instances":2,"at":"t"}"#,
                0x1a,
            ),
            entry(
                "/p/deploys/web/slots/1",
                r#"{"node":"node-a","acquired_at":"t"}"#,
                0x1a,
            ),
            entry(
                "/p/locks/deploy/web",
                r#"{"node":"node-a","acquired_at":"t"}"#,
                0x1a,
            ),
            entry("/p/something/else", "x", 0),
            entry("/other/nodes/node-z", "{}", 0),
        ];
        let view = View::build("/p", "node-a", 9, entries);
        let nodes: Vec<(&str, bool, Option<&str>)> = view
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.record, n.lease.as_deref()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("app-host", false, Some("2b")),
                ("node-a", true, Some("1a"))
            ]
        );
        let a = &view.nodes[1];
        assert_eq!(a.applied, BTreeMap::from([("web".to_owned(), 7)]));
        let ids: Vec<&str> = a.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["v2-1", "v2-2"]);
        assert_eq!(a.instances[1].state, "draining");
        assert_eq!(a.instances[0].address, "10.0.0.1:1");
        let [web] = view.services.as_slice() else {
            panic!("{view:?}")
        };
        let desired = web.desired.as_ref().unwrap();
        assert_eq!(desired.desired.version.as_str(), "v2");
        assert_eq!(desired.desired.previous.as_ref().unwrap().as_str(), "v1");
        assert_eq!(desired.revision, 3);
        assert_eq!(web.lock.as_ref().unwrap().node, "node-a");
        assert_eq!(web.slots[0].index, 1);
        assert_eq!(web.nodes[0].desired, 5);
        assert_eq!(
            web.ready,
            BTreeMap::from([("v2".to_owned(), 1), ("v7".to_owned(), 1)])
        );
        assert_eq!(view.invalid.len(), 1, "{:?}", view.invalid);
        assert!(view.invalid[0].contains("node-c"), "{:?}", view.invalid);
        // The JSON reads back as written.
        let json = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<View>(&json).unwrap(), view);
    }

    #[test]
    fn invalid_entries_are_listed_up_to_a_bound_then_counted() {
        let keys: Vec<String> = (0..20).map(|i| format!("/p/nodes/n{i}")).collect();
        let entries = keys.iter().map(|k| entry(k, "not json", 1));
        let view = View::build("/p", "n0", 1, entries);
        assert!(view.nodes.is_empty());
        assert_eq!(view.invalid.len(), MAX_INVALID + 1);
        assert_eq!(view.invalid[MAX_INVALID], "… and 4 more");
    }
}
