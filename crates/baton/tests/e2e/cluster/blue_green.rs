//! Blue-green deploys across three nodes, each in its own network
//! namespace, under keep-alive, new-connection, POST and slow load through
//! the front doors of two different nodes, with `strategy = "blue_green"`:
//!
//! - `baton deploy web --version v2` sent to one node starts a whole v2 set
//!   on every node, registered `standby`, then switches every front door at
//!   once; recorded from every registry event (`etcdctl watch` of the
//!   service's keys from the first revision, the active version included)
//!   and routed by the documented rule, the front doors route to one version
//!   only at every revision — all v1, then all v2 from the switch on — and
//!   never to fewer instances than the cluster-wide bound allows;
//! - a version whose new set fails on one node only (its node runs the app
//!   with the version's tags as faults) is given up on every node: no
//!   instance of it is ever routed to, none is left registered, and the
//!   deploy says which node failed and why;
//! - no request fails meanwhile;
//! - a node started afterwards at v1 converges to the active v2 (its v1
//!   instances are never routed to);
//! - a deploying node that dies before the switch does not keep the others
//!   waiting: they stop their new sets once its lock goes with its lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use super::net::{Etcd, Net};
use super::{
    Node, mixed_load_through, run_on, start_node_with, stop_without_failures, web_service,
};
use crate::support::{Proc, TempDir, field};

/// The nodes that run `web`, on hosts 0, 1 and 2.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Instances of `web` per node.
const INSTANCES: usize = 2;
/// The service's keys in the registry.
const KEYS: &str = "/e2e/services/web/";

/// The registry as front doors read it after one event: every instance
/// ((node, id) → (version, state)) and the active version.
#[derive(Debug, Clone, Default)]
pub(super) struct Registry {
    pub(super) instances: BTreeMap<(String, String), (String, String)>,
    pub(super) active: Option<String>,
}

impl Registry {
    /// The versions of the instances a front door routes to, by the rule of
    /// docs/cluster.md: with an active version, its `ready` and `standby`
    /// instances; without, every `ready` one.
    pub(super) fn routed(&self) -> Vec<&str> {
        self.instances
            .values()
            .filter(|(version, state)| match &self.active {
                Some(active) => version == active && state != "draining",
                None => state == "ready",
            })
            .map(|(version, _)| version.as_str())
            .collect()
    }

    /// Every registered instance of `version`, whatever its state.
    pub(super) fn registered(&self, version: &str) -> usize {
        self.instances
            .values()
            .filter(|(v, _)| v == version)
            .count()
    }
}

/// Every event under the service's keys, from the first revision on.
pub(super) struct Events {
    pub(super) watch: Proc,
}

impl Events {
    pub(super) fn watch(etcd: &Etcd) -> Events {
        let watch = etcd.ctl_running(&["watch", "--prefix", "--rev=1", KEYS]);
        Events { watch }
    }

    /// The registry after each event, in order (`etcdctl watch` prints
    /// `PUT`, the key and the value, or `DELETE` and the key).
    pub(super) fn history(&self) -> Vec<Registry> {
        let lines: Vec<String> = self
            .watch
            .lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("[out] ").map(str::to_owned))
            .collect();
        let mut now = Registry::default();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let (op, key) = (lines[i].as_str(), lines.get(i + 1));
            let Some(rest) = key.and_then(|k| k.strip_prefix(KEYS)) else {
                i += 1;
                continue;
            };
            let instance = rest
                .strip_prefix("instances/")
                .and_then(|r| r.split_once('/'))
                .map(|(node, id)| (node.to_owned(), id.to_owned()));
            match op {
                "PUT" => {
                    let Some(value) = lines.get(i + 2) else { break };
                    let json: serde_json::Value =
                        serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}: {value}"));
                    let version = json["version"].as_str().unwrap_or_default().to_owned();
                    match instance {
                        Some(at) => {
                            let state = json["state"].as_str().unwrap_or_default().to_owned();
                            now.instances.insert(at, (version, state));
                        }
                        None if rest == "active" => now.active = Some(version),
                        None => {}
                    }
                    i += 3;
                }
                "DELETE" => {
                    match instance {
                        Some(at) => {
                            now.instances.remove(&at);
                        }
                        None if rest == "active" => now.active = None,
                        None => {}
                    }
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

    /// Waits until the registry's latest state routes to every node's
    /// instances of `version` only, with nothing else registered but
    /// instances of `others` (a late node's old ones); returns the number
    /// of events then.
    pub(super) async fn settled_at(&mut self, version: &str, nodes: usize) -> usize {
        loop {
            let history = self.history();
            let done = history.last().is_some_and(|r| {
                let routed = r.routed();
                routed.len() == nodes * INSTANCES
                    && routed.iter().all(|v| *v == version)
                    && r.registered(version) == routed.len()
                    && r.instances.len() == routed.len()
            });
            if done {
                return history.len();
            }
            let n = history.len() + 1;
            self.watch.wait_count(&format!("[out] {KEYS}"), n).await;
        }
    }
}

/// Every node's config: `web` blue-green, with the default bounds (one
/// extra instance, none missing); with `faults`, a version's tags are
/// faults on this node.
fn web(faults: bool) -> String {
    web_service(INSTANCES as u32, faults, "strategy = \"blue_green\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_cluster_deploy_switches_every_front_door_at_once_and_a_failure_on_one_node_leaves_blue_everywhere_under_load()
 {
    let _heavy = crate::support::heavy().await;
    let net = Net::new(4);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-blue-green");
    let mut events = Events::watch(&etcd);
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        // Only node C takes a version's tags as faults.
        nodes.push(start_node_with(&net, &etcd, &dir, i, name, &web(i == 2)).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len() * INSTANCES).await;
    }
    let before = events.settled_at("v1", NODES.len()).await;
    let loads = [mixed_load_through(&nodes[0]), mixed_load_through(&nodes[1])];
    for l in &loads {
        assert!(l.wait_for_requests(100).await);
    }

    // v2, sent to node B: every node starts a v2 set on standby, then the
    // switch.
    let (code, out) = run_on(&nodes, 1, &["deploy", "web", "--version", "v2"]).await;
    assert_eq!(code, 0, "{out}\n{}", nodes[1].process.dump());
    for name in NODES {
        for step in ["standby", "converged"] {
            assert!(
                out.contains(&format!("node {name}: {step} v2")),
                "no {step} of {name}: {out}"
            );
        }
    }
    let after_v2 = events.settled_at("v2", NODES.len()).await;
    let control = nodes[2].control.display().to_string();
    let (code, status) = crate::support::run_baton(&["status", "--control", &control]).await;
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("v2 (rev "), "{status}");
    assert!(status.contains(", blue_green)"), "{status}");
    assert!(
        status.contains("  active v2 (switched by node-b at "),
        "{status}"
    );

    // v3_never-ready: node C's new set never gets ready. Sent to node A;
    // every node stops its v3 set, and v2 serves throughout.
    let (code, out) = run_on(&nodes, 0, &["deploy", "web", "--version", "v3_never-ready"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains("on node node-c"), "{out}");
    let after_v3 = events.settled_at("v2", NODES.len()).await;

    stop_without_failures(loads, &nodes[0].process).await;

    // At every revision the front doors route to one version, never to
    // fewer instances than the bound allows (none missing); v1 before the
    // switch, v2 from it on, v3 never.
    let history = events.history();
    let all = NODES.len() * INSTANCES;
    let mut switch = None;
    for (i, registry) in history[before..after_v3].iter().enumerate() {
        let routed = registry.routed();
        let versions: BTreeSet<&str> = routed.iter().copied().collect();
        assert_eq!(versions.len(), 1, "event {i}: {registry:?}");
        assert!(routed.len() >= all, "event {i}: {registry:?}");
        match (versions.contains("v2"), switch) {
            (true, None) => switch = Some(i),
            (false, Some(at)) => panic!("back to {versions:?} at {i} after the switch at {at}"),
            _ => {}
        }
    }
    let switch = switch.expect("a switch to v2");
    assert!(switch < after_v2 - before, "{switch}");
    // The switch is the write of the active version, and every node's v2
    // set was registered (on standby) before it.
    let at_switch = &history[before + switch];
    assert_eq!(at_switch.active.as_deref(), Some("v2"), "{at_switch:?}");
    assert_eq!(at_switch.registered("v2"), all, "{at_switch:?}");
    assert_eq!(at_switch.registered("v1"), all, "{at_switch:?}");
    let standby = history[before..before + switch]
        .iter()
        .map(|r| {
            r.instances
                .values()
                .filter(|(v, s)| v == "v2" && s == "standby")
                .count()
        })
        .max();
    assert_eq!(standby, Some(all), "{:?}", &history[before..after_v2]);
    // The failed version was started somewhere (on standby), never routed.
    let v3 = history[after_v2..after_v3]
        .iter()
        .map(|r| r.registered("v3_never-ready"))
        .max();
    assert!(v3.is_some_and(|n| n >= 1), "{v3:?}");
    eprintln!(
        "{} registry events: switch at {}, v3 on standby at most {v3:?}",
        after_v3 - before,
        switch
    );

    // A node that starts now, at v1, converges to the active v2, and its
    // v1 instances are never routed to.
    let mut late = start_node_with(&net, &etcd, &dir, 3, "node-d", &web(false)).await;
    let converged = |l: &str| l.contains("deploy complete") && field(l, "version") == Some("v2");
    if let Err(e) = late
        .process
        .wait_from(0, "converged to v2", converged)
        .await
    {
        panic!("{e}\n{}", late.process.dump());
    }
    let end = events.settled_at("v2", NODES.len() + 1).await;
    for registry in &events.history()[after_v3..end] {
        assert!(registry.routed().iter().all(|v| *v == "v2"), "{registry:?}");
    }
}

/// The deploying node dies (`kill -9` of baton and its instances) while the
/// others wait for the switch — node B with its new set on standby, node C
/// still starting one that never gets ready: its lock goes with its lease,
/// and node B stops its new set on its own instead of waiting for a switch
/// that will never come. The old version serves throughout (idempotent
/// load through B's front door, none failed: A's instances are retried
/// elsewhere until its lease expires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_cluster_deploy_whose_deploying_node_dies_before_the_switch_is_given_up_on_every_node_under_load()
 {
    let _heavy = crate::support::heavy().await;
    let net = Net::new(3);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-blue-green-dead");
    let mut events = Events::watch(&etcd);
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        nodes.push(start_node_with(&net, &etcd, &dir, i, name, &web(i == 2)).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len() * INSTANCES).await;
    }
    events.settled_at("v1", NODES.len()).await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 0,
        slow_workers: 0,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(nodes[1].addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(100).await);

    // Sent to node A, which dies once node B's new set is on standby.
    let control = nodes[0].control.display().to_string();
    let deploy = tokio::spawn(async move {
        let args = ["deploy", "web", "--version", "v2_never-ready"];
        let args = [&args[..], &["--control", &control]].concat();
        crate::support::run_baton(&args).await
    });
    loop {
        let history = events.history();
        let standby = history.last().is_some_and(|r| {
            r.instances
                .iter()
                .filter(|((node, _), (v, s))| {
                    node == "node-b" && v == "v2_never-ready" && s == "standby"
                })
                .count()
                == INSTANCES
        });
        if standby {
            break;
        }
        let n = history.len() + 1;
        events.watch.wait_count(&format!("[out] {KEYS}"), n).await;
    }
    let a_pids = nodes[0].process.instance_pids();
    let _ = nodes[0].process.child.kill().await;
    for pid in &a_pids {
        crate::support::signal(*pid, 9);
    }
    nodes[0].process.instances_stopped();
    let (code, out) = deploy.await.unwrap();
    assert_ne!(code, 0, "{out}");
    let mut b_reports = etcd.ctl_running(&["watch", "--rev=1", "/e2e/deploys/web/nodes/node-b"]);

    // B gives up on its own once A's lock is gone with its lease; only v1
    // is left, on B and C.
    let b = &mut nodes[1];
    let abandoned = |l: &str| l.contains("blue-green deploy abandoned");
    if let Err(e) = b
        .process
        .wait_from(0, "the new set given up", abandoned)
        .await
    {
        panic!("{e}\n{}", b.process.dump());
    }
    events.settled_at("v1", NODES.len() - 1).await;
    b_reports.wait_for(r#""state":"failed""#).await;
    let view = b.cluster().await;
    let web = view["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "web"))
        .unwrap_or_else(|| panic!("{view}"));
    let report = web["nodes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["node"] == "node-b"))
        .unwrap_or_else(|| panic!("{web}"));
    assert_eq!(report["state"], "failed", "{web}");
    assert_eq!(report["version"], "v1", "{web}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("without switching"),
        "{web}"
    );
    assert!(web.get("active").is_none(), "{web}");

    let then = load.snapshot().requests;
    assert!(load.wait_for_requests(then + 100).await);
    let report = load.stop().await;
    eprintln!(
        "through node B's front door: {} requests, {} failed",
        report.requests, report.failures
    );
    assert_eq!(
        report.failures,
        0,
        "{}\n{}",
        report.failure_description(),
        nodes[1].process.dump()
    );
}
