//! A cluster node upgrades itself (`baton upgrade`) under load through
//! another node's front door: its instances stay registered the whole time
//! — through the handover, the old process's exit and the end of the old
//! process's lease — so no other front door ever loses them, and no request
//! fails.

use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use super::net::{Etcd, Net};
use super::{Spec, instance_json, start_node};
use crate::support::{self, TempDir, field};
use crate::upgrade::{new_pid, stopped, upgrade};

/// The lease of `node` in the cluster view of `from`.
async fn lease_of(from: &super::Node, node: &str) -> String {
    let view = from.cluster().await;
    let entry = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} not in {view}"));
    entry["lease"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_upgrading_itself_keeps_its_instances_in_every_pool_under_load() {
    let _heavy = support::heavy().await;
    let net = Net::new(2);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-upgrade");
    let mut a = start_node(
        &net,
        &etcd,
        &dir,
        0,
        Spec {
            name: "node-a",
            instances: 2,
        },
    )
    .await;
    let mut b = start_node(
        &net,
        &etcd,
        &dir,
        1,
        Spec {
            name: "node-b",
            instances: 2,
        },
    )
    .await;
    let from = a.routes_to(0, 4).await;
    b.routes_to(0, 4).await;
    let b_pids = b.process.instance_pids();
    let old_lease = lease_of(&a, "node-b").await;

    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(a.addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(200).await);

    let (code, out) = upgrade(&b.control, "30s").await;
    assert_eq!(code, 0, "{out}\n{}", b.process.dump());
    let new = new_pid(&mut b.process, 1).await;
    let old = b.process.pid;
    stopped(&mut b.process, old).await;
    assert_eq!(b.process.instance_pids(), b_pids, "{}", b.process.dump());

    // Whatever the old process held in etcd is gone: its lease revoked at
    // its exit, or expired (no one renews it any more).
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    loop {
        let ttl = etcd.ctl(&["lease", "timetolive", &old_lease]).await;
        if ttl.contains("already expired") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old lease {old_lease} outlived its process: {ttl}"
        );
    }
    // A marker instance written now reaches node A after every change the
    // old lease's end made (etcd's watch delivers in revision order): once
    // A routes to 5, it has seen them all.
    let marker = "/e2e/services/web/instances/node-z/marker";
    etcd.ctl(&["put", marker, &instance_json("node-z", "127.0.0.1:1")])
        .await;
    let after = a.routes_to(from, 5).await;
    etcd.ctl(&["del", marker]).await;
    a.routes_to(after, 4).await;
    // Between the first time A routed to all four and the marker, node B's
    // instances never left A's pool.
    let shrunk: Vec<String> = a.process.lines()[from..after]
        .iter()
        .filter(|l| l.contains("discovered members applied"))
        .filter(|l| field(l, "members").is_some_and(|m| m != "4" && m != "5"))
        .cloned()
        .collect();
    assert!(
        shrunk.is_empty(),
        "node B's instances left node A's pool during its upgrade:\n{}",
        shrunk.join("\n")
    );
    let new_lease = lease_of(&a, "node-b").await;
    assert_ne!(new_lease, old_lease);

    assert!(load.wait_for_requests(200).await);
    let report = load.stop().await;
    eprintln!(
        "node B upgraded to pid {new}: {} requests through node A, {} failed",
        report.requests, report.failures
    );
    assert_eq!(
        report.failures,
        0,
        "{}\n{}",
        report.failure_description(),
        a.process.dump()
    );
    let pids = super::answering(&a.addr, 12).await;
    assert!(
        pids.iter().any(|p| b_pids.contains(p)),
        "{pids:?} {b_pids:?}"
    );
}
