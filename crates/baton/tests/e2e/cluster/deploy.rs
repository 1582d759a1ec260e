//! Cluster-wide deploys across three nodes, each in its own network
//! namespace, under keep-alive, new-connection, POST and slow load through
//! the front doors of two different nodes:
//!
//! - `baton deploy web --version v2` sent to one node rolls v2 out on
//!   every node, and the number of instances missing in the whole cluster,
//!   recorded from every registry event (`etcdctl watch` from the first
//!   revision), never exceeds the cluster-wide `max_unavailable`;
//! - a version that fails on one node only (its node runs the app with the
//!   version's tags as faults) is rolled back on every node, within the
//!   same bound, and the deploy says which node failed and why;
//! - no request fails meanwhile;
//! - a node started afterwards at v1 converges to the desired v2 on its own;
//! - `baton rollback web` sent to a third node after a successful rolling
//!   deploy brings every node back to the version before, within the same
//!   bound, without a failed request, and `baton status` shows it.

use std::collections::BTreeMap;

use super::net::{Etcd, Net};
use super::{
    Node, mixed_load_through, run_on, start_node_with, stop_without_failures, web_service,
};
use crate::support::{Proc, TempDir, field};

/// The nodes that run `web`, on hosts 0, 1 and 2.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Instances of `web` per node.
const INSTANCES: usize = 2;
/// The cluster-wide bound: two instances missing at most, none extra, so
/// two nodes replace theirs at once, one instance each.
const MAX_UNAVAILABLE: usize = 2;

/// Every event of `web`'s instances in the registry, from the first
/// revision on.
struct Events {
    watch: Proc,
}

/// The ready instances of each node after one event: node → id → version.
type Snapshot = BTreeMap<String, BTreeMap<String, String>>;

impl Events {
    fn watch(etcd: &Etcd) -> Events {
        let watch = etcd.ctl_running(&[
            "watch",
            "--prefix",
            "--rev=1",
            "/e2e/services/web/instances/",
        ]);
        Events { watch }
    }

    /// The instances after each event, in order (`etcdctl watch` prints
    /// `PUT`, the key and the value, or `DELETE` and the key).
    fn history(&self) -> Vec<Snapshot> {
        let lines: Vec<String> = self
            .watch
            .lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("[out] ").map(str::to_owned))
            .collect();
        let mut now = Snapshot::new();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let (op, key) = (lines[i].as_str(), lines.get(i + 1));
            let Some((node, id)) = key.and_then(|k| instance_of(k)) else {
                i += 1;
                continue;
            };
            match op {
                "PUT" => {
                    let Some(value) = lines.get(i + 2) else { break };
                    let json: serde_json::Value =
                        serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}: {value}"));
                    let ids = now.entry(node).or_default();
                    match json["state"] == "ready" {
                        true => {
                            let version = json["version"].as_str().unwrap_or_default();
                            ids.insert(id, version.to_owned());
                        }
                        false => {
                            ids.remove(&id);
                        }
                    }
                    i += 3;
                }
                "DELETE" => {
                    now.entry(node).or_default().remove(&id);
                    i += 2;
                }
                _ => {
                    i += 1;
                    continue;
                }
            }
            out.push(now.clone());
        }
        out
    }

    /// Waits until the registry has had `n` events in all.
    async fn wait_events(&mut self, n: usize) {
        self.watch
            .wait_count("[out] /e2e/services/web/instances/", n)
            .await;
    }
}

/// `(node, id)` of an instance key.
fn instance_of(key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix("/e2e/services/web/instances/")?;
    let (node, id) = rest.split_once('/')?;
    Some((node.to_owned(), id.to_owned()))
}

/// Instances missing below `INSTANCES` on the nodes of `NODES`, summed.
fn missing(snapshot: &Snapshot) -> usize {
    NODES
        .iter()
        .map(|n| INSTANCES.saturating_sub(snapshot.get(*n).map_or(0, BTreeMap::len)))
        .sum()
}

/// Whether every node of `NODES` runs `INSTANCES` instances of `version`.
fn all_at(snapshot: &Snapshot, version: &str) -> bool {
    NODES.iter().all(|n| {
        snapshot
            .get(*n)
            .is_some_and(|ids| ids.len() == INSTANCES && ids.values().all(|v| v == version))
    })
}

/// Waits until the registry's latest state has every node at `version`;
/// returns the number of events then.
async fn registry_at(events: &mut Events, version: &str) -> usize {
    loop {
        let history = events.history();
        if history.last().is_some_and(|s| all_at(s, version)) {
            return history.len();
        }
        let n = history.len() + 1;
        events.wait_events(n).await;
    }
}

/// The first node's config: `web` with the cluster-wide bounds; with
/// `faults`, a version's tags are faults on this node.
fn web(faults: bool) -> String {
    let rolling = format!("max_surge = 0\nmax_unavailable = {MAX_UNAVAILABLE}\n");
    web_service(INSTANCES as u32, faults, &rolling)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_cluster_deploy_keeps_the_cluster_bound_and_a_failure_on_one_node_rolls_back_everywhere_under_load()
 {
    let _heavy = crate::support::heavy().await;
    let net = Net::new(4);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-deploy");
    let mut events = Events::watch(&etcd);
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        // Only node C takes a version's tags as faults.
        let faults = i == 2;
        nodes.push(start_node_with(&net, &etcd, &dir, i, name, &web(faults)).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len() * INSTANCES).await;
    }
    let before = registry_at(&mut events, "v1").await;

    let loads = [mixed_load_through(&nodes[0]), mixed_load_through(&nodes[1])];
    for l in &loads {
        assert!(l.wait_for_requests(100).await);
    }

    // v2, sent to node B: every node rolls it out.
    let (code, out) = run_on(&nodes, 1, &["deploy", "web", "--version", "v2"]).await;
    assert_eq!(code, 0, "{out}\n{}", nodes[1].process.dump());
    for name in NODES {
        assert!(
            out.contains(&format!("node {name}: converged v2")),
            "no progress of {name}: {out}"
        );
    }
    let after_v2 = registry_at(&mut events, "v2").await;

    // v3_fails: only node C takes the tag as a fault and never gets ready.
    // Sent to node A; every node ends at v2 again.
    let (code, out) = run_on(&nodes, 0, &["deploy", "web", "--version", "v3_never-ready"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains("on node node-c"), "{out}");
    let after_v3 = registry_at(&mut events, "v2").await;

    stop_without_failures(loads, &nodes[0].process).await;

    // Never more than the bound missing in the whole cluster.
    let history = events.history();
    let counts: Vec<usize> = history[before..after_v3].iter().map(missing).collect();
    let worst_v2 = counts[..after_v2 - before].iter().max().copied();
    let worst = counts.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} registry events during the deploys; at most {} instances missing cluster-wide (v2: {:?}), bound {MAX_UNAVAILABLE}",
        counts.len(),
        worst,
        worst_v2
    );
    assert!(
        worst <= MAX_UNAVAILABLE,
        "{worst} instances missing at once: {counts:?}"
    );
    // The record is real: the deploys did take instances out.
    assert!(worst >= 1, "{counts:?}");

    // A node that starts now, at v1, converges to the desired v2.
    let mut late = start_node_with(&net, &etcd, &dir, 3, "node-d", &web(false)).await;
    let converged = |l: &str| l.contains("deploy complete") && field(l, "version") == Some("v2");
    if let Err(e) = late
        .process
        .wait_from(0, "converged to v2", converged)
        .await
    {
        panic!("{e}\n{}", late.process.dump());
    }
    let control = late.control.to_str().unwrap();
    let (code, status) =
        crate::support::run_baton(&["status", "--json", "--control", control]).await;
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("\"version\":\"v2\""), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rollback_after_a_rolling_deploy_brings_every_node_back_under_load() {
    let _heavy = crate::support::heavy().await;
    let net = Net::new(3);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-rollback");
    let mut events = Events::watch(&etcd);
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        nodes.push(start_node_with(&net, &etcd, &dir, i, name, &web(false)).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len() * INSTANCES).await;
    }
    let before = registry_at(&mut events, "v1").await;
    let loads = [mixed_load_through(&nodes[0]), mixed_load_through(&nodes[1])];
    for l in &loads {
        assert!(l.wait_for_requests(100).await);
    }

    let (code, out) = run_on(&nodes, 0, &["deploy", "web", "--version", "v2"]).await;
    assert_eq!(code, 0, "{out}\n{}", nodes[0].process.dump());
    let after_v2 = registry_at(&mut events, "v2").await;

    // Back, sent to node C: every node returns to v1.
    let (code, out) = run_on(&nodes, 2, &["rollback", "web"]).await;
    assert_eq!(code, 0, "{out}\n{}", nodes[2].process.dump());
    for name in NODES {
        assert!(
            out.contains(&format!("node {name}: converged v1")),
            "no progress of {name}: {out}"
        );
    }
    let after_rollback = registry_at(&mut events, "v1").await;

    stop_without_failures(loads, &nodes[2].process).await;

    // Within the cluster's bound the whole time, and the rollback did
    // replace instances.
    let history = events.history();
    let counts: Vec<usize> = history[before..after_rollback]
        .iter()
        .map(missing)
        .collect();
    let worst = counts.iter().max().copied().unwrap_or_default();
    assert!(
        worst <= MAX_UNAVAILABLE,
        "{worst} missing at once: {counts:?}"
    );
    let back: Vec<usize> = history[after_v2..after_rollback]
        .iter()
        .map(missing)
        .collect();
    assert!(back.iter().any(|&m| m >= 1), "{back:?}");

    // The cluster, as node B sees it: v1 desired (v2 before it), every
    // node's report and instances at v1.
    let view = nodes[1].cluster().await;
    let web = view["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "web"))
        .unwrap_or_else(|| panic!("{view}"));
    assert_eq!(web["desired"]["version"], "v1", "{web}");
    assert_eq!(web["desired"]["previous"], "v2", "{web}");
    assert_eq!(web["desired"]["by"], "node-c", "{web}");
    let revision = &web["desired"]["revision"];
    for report in web["nodes"].as_array().unwrap() {
        assert_eq!(report["state"], "converged", "{web}");
        assert_eq!(report["version"], "v1", "{web}");
        assert_eq!(&report["desired"], revision, "{web}");
    }
    assert_eq!(web["nodes"].as_array().unwrap().len(), NODES.len(), "{web}");
    let all = (NODES.len() * INSTANCES) as u64;
    assert_eq!(web["ready"], serde_json::json!({ "v1": all }), "{web}");
    for node in view["nodes"].as_array().unwrap() {
        for instance in node["instances"].as_array().unwrap() {
            assert_eq!(instance["version"], "v1", "{node}");
        }
    }
}
