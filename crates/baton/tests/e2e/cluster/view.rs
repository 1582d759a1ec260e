//! The whole cluster in `baton status` (`GET /v1/cluster`), read on one
//! node of three, each in its own network namespace:
//!
//! - before any cluster deploy: every node alive under its lease, with its
//!   instance at v1 and the address of its host, no desired version, each
//!   node's report `converged v1` on no revision, the lock free;
//! - after `baton deploy web --version v2` sent to another node: every
//!   instance at v2, the desired version v2 (previous v1, written by that
//!   node) and every node's report `converged v2` on its revision;
//! - a deploy lock held (taken by hand with etcdctl, under a lease) is
//!   shown with its holder, and a deploy meanwhile is refused with exit 75;
//! - the table of `baton status` has the same.

use serde_json::Value;

use super::net::{Etcd, Net};
use super::{Node, deploy, start_node_with, web_service};
use crate::support::{TempDir, run_baton};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// The node entry `name` of a view.
fn node<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {view}"))
}

/// The service entry `web` of a view.
fn web(view: &Value) -> &Value {
    view["services"]
        .as_array()
        .and_then(|services| services.iter().find(|s| s["service"] == "web"))
        .unwrap_or_else(|| panic!("no service web in {view}"))
}

/// Checks that every node is alive with one instance of `web` at `version`
/// on its host's address.
fn every_node_runs(view: &Value, net: &Net, version: &str) {
    let names: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, NODES, "{view}");
    for (i, name) in NODES.iter().enumerate() {
        let entry = node(view, name);
        assert_eq!(entry["record"], true, "{entry}");
        let lease = entry["lease"].as_str().unwrap_or_default();
        assert!(i64::from_str_radix(lease, 16).is_ok(), "{entry}");
        let left = entry["lease_ttl_left_s"].as_i64().unwrap_or(-1);
        assert!((0..=super::TTL_SECS as i64).contains(&left), "{entry}");
        let instances = entry["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 1, "{entry}");
        let instance = &instances[0];
        assert_eq!(instance["service"], "web", "{entry}");
        assert_eq!(instance["version"], version, "{entry}");
        assert_eq!(instance["state"], "ready", "{entry}");
        let host = format!("{}:", net.address(i));
        let address = instance["address"].as_str().unwrap_or_default();
        assert!(address.starts_with(&host), "{entry}");
        let port = address.trim_start_matches(&host);
        assert_eq!(instance["id"], format!("{version}-{port}"), "{entry}");
    }
    assert_eq!(
        web(view)["ready"],
        serde_json::json!({ version: 3 }),
        "{view}"
    );
}

/// Checks every node's report on `web`: `state` at `version`, on the
/// desired revision `revision`.
fn every_report(view: &Value, state: &str, version: &str, revision: i64) {
    let reports = web(view)["nodes"].as_array().unwrap();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, NODES, "{view}");
    for report in reports {
        assert_eq!(report["state"], state, "{report}");
        assert_eq!(report["version"], version, "{report}");
        assert_eq!(report["desired"], revision, "{report}");
        assert_eq!(report["instances"], 1, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_whole_cluster_its_versions_reports_and_lock_after_a_deploy() {
    let net = Net::new(3);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-view");
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let service = web_service(1, false, "");
        nodes.push(start_node_with(&net, &etcd, &dir, i, name, &service).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len()).await;
    }
    // Each node reports on `web` as soon as it follows the desired version.
    let mut reports =
        etcd.ctl_running(&["watch", "--prefix", "--rev=1", "/e2e/deploys/web/nodes/"]);
    for name in NODES {
        let key = format!("/e2e/deploys/web/nodes/{name}");
        reports.wait_count(&key, 1).await;
    }

    let view = nodes[0].cluster().await;
    assert_eq!(view["prefix"], "/e2e", "{view}");
    assert_eq!(view["read_by"], "node-a", "{view}");
    assert!(view["revision"].as_i64().unwrap_or_default() > 0, "{view}");
    assert_eq!(view["truncated"], false, "{view}");
    every_node_runs(&view, &net, "v1");
    let service = web(&view);
    assert!(service.get("desired").is_none(), "{service}");
    assert!(service.get("lock").is_none(), "{service}");
    every_report(&view, "converged", "v1", 0);

    // A cluster deploy sent to node B, seen from node A.
    let (code, out) = deploy(&nodes[1], "v2").await;
    assert_eq!(code, 0, "{out}\n{}", nodes[1].process.dump());
    let view = nodes[0].cluster().await;
    every_node_runs(&view, &net, "v2");
    let service = web(&view);
    let desired = &service["desired"];
    assert_eq!(desired["version"], "v2", "{service}");
    assert_eq!(desired["previous"], "v1", "{service}");
    assert_eq!(desired["by"], "node-b", "{service}");
    assert!(desired.get("rollback_of").is_none(), "{service}");
    let revision = desired["revision"].as_i64().unwrap_or_default();
    assert!(revision > 0, "{service}");
    every_report(&view, "converged", "v2", revision);
    assert!(service.get("lock").is_none(), "{service}");
    assert!(service.get("slots").is_none(), "{service}");
    assert!(view.get("invalid").is_none(), "{view}");

    // The deploy lock, held by someone else (under a lease, as a node
    // holds it): shown with its holder; a deploy is refused meanwhile.
    let grant = etcd.ctl(&["lease", "grant", "60"]).await;
    let lease = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    let holder = r#"{"node":"ops-host","acquired_at":"2026-12-02T15:04:05Z"}"#;
    etcd.ctl(&["put", "--lease", &lease, "/e2e/locks/deploy/web", holder])
        .await;
    let view = nodes[2].cluster().await;
    assert_eq!(view["read_by"], "node-c", "{view}");
    let lock = &web(&view)["lock"];
    assert_eq!(lock["node"], "ops-host", "{view}");
    assert_eq!(lock["acquired_at"], "2026-12-02T15:04:05Z", "{view}");
    let (code, out) = deploy(&nodes[2], "v3").await;
    assert_eq!(code, 75, "{out}");

    // The table says the same.
    let control = nodes[0].control.to_str().unwrap();
    let (code, table) = run_baton(&["status", "--control", control]).await;
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("CLUSTER /e2e at revision "), "{table}");
    assert!(
        table.contains("held by ops-host since 2026-12-02T15:04:05Z"),
        "{table}"
    );
    for (i, name) in NODES.iter().enumerate() {
        let row = table
            .lines()
            .find(|l| {
                l.trim_start_matches("[out] ")
                    .starts_with(&format!("{name} "))
            })
            .unwrap_or_else(|| panic!("no row of {name}: {table}"));
        assert!(
            row.contains(&format!("web v2 {}:", net.address(i))),
            "{row}"
        );
        let report = format!("  {name:<14} converged v2 (rev {revision}, 1 instance(s))");
        assert!(table.contains(&report), "{report:?} not in {table}");
    }
    etcd.ctl(&["lease", "revoke", &lease]).await;
}
