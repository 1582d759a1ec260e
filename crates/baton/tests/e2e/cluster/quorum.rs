//! Cluster mode on a three-member etcd, under load through two front doors
//! on different hosts:
//!
//! - the etcd leader killed (two members left: quorum kept): no failed
//!   request, no member lost from a front door's pool meanwhile, and an
//!   instance registered after the kill is routed to by both front doors;
//! - then the two other members killed (no etcd at all): both front doors
//!   keep serving the last members they read, with no failed request; a
//!   deploy is refused at once, with exit 75 and a reason that names the
//!   registry; once the three members are back, both front doors follow
//!   the registry again (a deletion reaches them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loadgen::{Load, LoadConfig};

use super::net::{Etcd, Net};
use super::{Node, Spec, deploy, instance_json, start_node};
use crate::support::{self, Proc, TempDir, field};

/// A failure-counting load through `node`'s front door.
fn load_through(node: &Node) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(node.addr.parse::<SocketAddr>().unwrap())
    })
}

/// Waits until both loads have had `n` more successful requests.
async fn both_go_on(loads: &[&Load], n: u64) {
    for load in loads {
        // `wait_for_requests` counts from now.
        let went_on = tokio::time::timeout(Duration::from_secs(30), load.wait_for_requests(n));
        if !matches!(went_on.await, Ok(true)) {
            panic!(
                "the load did not go on: {}",
                load.snapshot().failure_description()
            );
        }
    }
}

/// Asserts that no pool size below `min` was applied from output line
/// `from` on: no member left a front door's pool.
fn never_fewer(node: &Node, from: usize, min: usize) {
    let lines = node.process.lines();
    for line in &lines[from.min(lines.len())..] {
        if !line.contains("discovered members applied") {
            continue;
        }
        let members: usize = field(line, "members").and_then(|m| m.parse().ok()).unwrap();
        assert!(members >= min, "{line}\n{}", node.process.dump());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_an_etcd_member_then_all_of_them_fails_no_request_under_load() {
    let _heavy = support::heavy().await;
    let net = Net::new(3);
    let mut etcd = Etcd::start_members(net.gateway(), 3).await;
    let dir = TempDir::new("cluster-quorum");
    let spec = |name: &'static str| Spec { name, instances: 1 };
    let mut a = start_node(&net, &etcd, &dir, 0, spec("node-a")).await;
    let mut b = start_node(&net, &etcd, &dir, 1, spec("node-b")).await;
    a.routes_to(0, 2).await;
    b.routes_to(0, 2).await;
    let through_a = load_through(&a);
    let through_b = load_through(&b);
    assert!(through_a.wait_for_requests(200).await);
    assert!(through_b.wait_for_requests(200).await);

    // The leader killed: the two others elect a new one.
    let (from_a, from_b) = (a.process.lines().len(), b.process.lines().len());
    etcd.kill_leader().await;
    // Registration and discovery go on: an app on host 2 registers itself
    // through the members left, and both front doors route to it.
    let mut hello = net.command(2, support::hello());
    hello.args([
        "--listen",
        &format!("{}:0", net.address(2)),
        "--app-version",
        "v7",
    ]);
    let (app, app_addr) = Proc::spawn_listening(&mut hello).await;
    let grant = etcd.ctl(&["lease", "grant", "60"]).await;
    let lease = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    let key = "/e2e/services/web/instances/app-host/app-1";
    let value = instance_json("app-host", &app_addr);
    etcd.ctl(&["put", "--lease", &lease, key, &value]).await;
    let _keep_alive = etcd.ctl_running(&["lease", "keep-alive", &lease]);
    let after_a = a.routes_to(from_a, 3).await;
    let after_b = b.routes_to(from_b, 3).await;
    both_go_on(&[&through_a, &through_b], 300).await;
    // The nodes kept their leases: no instance left a pool meanwhile.
    never_fewer(&a, from_a, 2);
    never_fewer(&b, from_b, 2);
    let app_instance = format!("v7/{}", app.pid);
    for load in [&through_a, &through_b] {
        let answered = load.snapshot().instances;
        assert!(answered.contains_key(&app_instance), "{answered:?}");
    }

    // Every member down: the front doors keep their last members.
    etcd.kill().await;
    let unreachable = |l: &str| l.contains("registry unreachable; keeping the last known members");
    let mut outage = Vec::new();
    for (node, from) in [(&mut a, after_a), (&mut b, after_b)] {
        match node
            .process
            .wait_from(from, "the outage", unreachable)
            .await
        {
            Ok((next, _)) => outage.push(next),
            Err(e) => panic!("{e}\n{}", node.process.dump()),
        }
        let web = node.discovered().await;
        assert_eq!(web["members"].as_array().map(Vec::len), Some(3), "{web}");
    }
    both_go_on(&[&through_a, &through_b], 300).await;
    // A deploy cannot take the cluster-wide lock: refused at once, nothing
    // changed.
    let asked = Instant::now();
    let (code, out) = deploy(&a, "v2").await;
    let refused_after = asked.elapsed();
    eprintln!("a deploy with etcd down was refused after {refused_after:?}: {out}");
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("etcd gave no answer"), "{out}");
    let web = a.discovered().await;
    assert_eq!(web["members"].as_array().map(Vec::len), Some(3), "{web}");
    both_go_on(&[&through_a, &through_b], 200).await;

    // etcd back: both front doors follow the registry again.
    etcd.restart().await;
    let again = |l: &str| l.contains("registry reachable again");
    for (node, from) in [(&mut a, outage[0]), (&mut b, outage[1])] {
        if let Err(e) = node.process.wait_from(from, "etcd back", again).await {
            panic!("{e}\n{}", node.process.dump());
        }
    }
    let (from_a, from_b) = (a.process.lines().len(), b.process.lines().len());
    etcd.ctl(&["del", key]).await;
    a.routes_to(from_a, 2).await;
    b.routes_to(from_b, 2).await;
    for node in [&a, &b] {
        let web = node.discovered().await;
        assert!(web.get("registry_unreachable").is_none(), "{web}");
    }
    both_go_on(&[&through_a, &through_b], 300).await;
    for (name, load) in [("A", through_a), ("B", through_b)] {
        let report = load.stop().await;
        eprintln!(
            "through {name}: {} requests, {} failed",
            report.requests, report.failures
        );
        report.assert_no_failures();
    }
}
