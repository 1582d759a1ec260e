//! Cluster mode across hosts: a real etcd, `baton serve` nodes each in its
//! own network namespace (another network stack: "another host"), joined by
//! a bridge; the load client and etcd in the test's own namespace. Needs root
//! (`ip netns`) and the `cluster` feature.
//!
//! - an app that registers itself with `etcdctl` (a lease and a key in the
//!   documented format) gets traffic through a pool with `discover`, and
//!   none once its key is deleted;
//! - node B's instances are reached through node A's front door, and a
//!   `kill -9` of node B (baton and its instances) under load through A
//!   takes them out of A's pool within the lease's TTL, without a failed
//!   idempotent request;
//! - with etcd down, A keeps routing to the last members it read (no failed
//!   request), `baton status` says the registry is unreachable, and it
//!   follows the registry again once etcd is back;
//! - two deploys of one service sent to two nodes at once: one runs, the
//!   other is refused with exit 75;
//! - a node cut off for longer than the TTL leaves the other's pool, and
//!   comes back into it once the network is healed;
//! - `deploy`: cluster-wide deploys across three nodes under load;
//! - `blue_green`: a blue-green deploy across three nodes under load, the
//!   switch seen in the registry, and one given up on every node;
//! - `canary`: canaries across three nodes under load, one promoted, one
//!   judged bad and rolled back;
//! - `quorum`: on a three-member etcd, the loss of one member, then of all
//!   of them, under load through two front doors;
//! - `startup`: a wrong endpoint or password stops `baton serve` at start;
//! - `view`: the whole cluster in `baton status`;
//! - `reload`: a version changed in one node's file is deployed on every
//!   node;
//! - `upgrade`: a node that upgrades itself keeps its instances in every
//!   other node's pool, under load.

mod blue_green;
mod canary;
mod deploy;
mod net;
mod quorum;
mod reload;
mod startup;
mod upgrade;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use loadgen::{Load, LoadConfig};
use net::{Etcd, Net};

use crate::support::{self, Proc, TempDir, field, get};

/// The lease of every node: short, so that a dead node leaves quickly.
const TTL_SECS: u64 = 3;

/// A `baton serve` node in a namespace.
struct Node {
    process: Proc,
    /// Its front door.
    addr: String,
    control: PathBuf,
}

/// What a node runs.
struct Spec<'a> {
    name: &'a str,
    /// Supervised instances of `web` (0: none).
    instances: u32,
}

/// Writes the node's config and starts it on host `i`, ready.
async fn start_node(net: &Net, etcd: &Etcd, dir: &TempDir, i: usize, spec: Spec<'_>) -> Node {
    let service = match spec.instances {
        0 => String::new(),
        n => web_service(n, true, ""),
    };
    start_node_with(net, etcd, dir, i, spec.name, &service).await
}

/// The `[service.web]` section of a node: `instances` of `hello` at v1;
/// with `faults`, a version's tags are faults (`v2_never-ready` never gets
/// ready), without, only a name; `extra` lines go into the section.
fn web_service(instances: u32, faults: bool, extra: &str) -> String {
    let faults = if faults {
        ", \"--faults-from-version\""
    } else {
        ""
    };
    format!(
        r#"
[service.web]
command = ["{hello}", "--app-version", "{{version}}"{faults}]
socket = "inherit"
version = "v1"
instances = {instances}
ready_timeout = "3s"
{extra}
[service.web.health]
path = "/healthz"
interval = "100ms"
timeout = "50ms"
healthy_threshold = 1
"#,
        hello = support::hello().display()
    )
}

/// Writes the config of node `name` with `service` (a `[service.web]`
/// section, or nothing) and starts it on host `i`, ready.
async fn start_node_with(
    net: &Net,
    etcd: &Etcd,
    dir: &TempDir,
    i: usize,
    name: &str,
    service: &str,
) -> Node {
    start_node_pooled(net, etcd, dir, i, name, service, "").await
}

/// [`start_node_with`], with `pool` lines in the `[pool.everywhere]`
/// section.
async fn start_node_pooled(
    net: &Net,
    etcd: &Etcd,
    dir: &TempDir,
    i: usize,
    name: &str,
    service: &str,
    pool: &str,
) -> Node {
    let ip = net.address(i);
    let config = format!(
        r#"[[listener]]
name = "http"
address = "{ip}:0"

[cluster]
endpoints = [{endpoints}]
prefix = "/e2e"
node = "{name}"
advertise = "{ip}"
lease_ttl = "{TTL_SECS}s"
{service}
[pool.everywhere]
discover = "web"
{pool}
[[route]]
pool = "everywhere"
"#,
        endpoints = etcd.toml_endpoints(),
    );
    let path = dir.join(&format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let control = dir.join(&format!("{name}.sock"));
    let mut command = net.command(i, support::baton());
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--control")
        .arg(&control);
    let (mut process, addr) = Proc::spawn_listening(&mut command).await;
    process.wait_for(" ready").await;
    Node {
        process,
        addr,
        control,
    }
}

impl Node {
    /// Waits (from output line `from` on) until the node's pool routes to
    /// `n` discovered members; returns the index after that line.
    async fn routes_to(&mut self, from: usize, n: usize) -> usize {
        let count = n.to_string();
        let pred = |l: &str| {
            l.contains("discovered members applied") && field(l, "members") == Some(&count)
        };
        match self
            .process
            .wait_from(from, "the discovered members", pred)
            .await
        {
            Ok((next, _)) => next,
            Err(e) => panic!("{e}: never routed to {n} members\n{}", self.process.dump()),
        }
    }

    /// `baton status --json` of this node, parsed.
    async fn status_json(&self) -> serde_json::Value {
        let control = self.control.to_str().unwrap();
        let (code, out) = support::run_baton(&["status", "--json", "--control", control]).await;
        assert_eq!(code, 0, "{out}");
        let json = out
            .lines()
            .map(|l| l.trim_start_matches("[out] "))
            .collect::<String>();
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The services of `baton status --json` of this node.
    async fn status(&self) -> serde_json::Value {
        self.status_json().await["services"].take()
    }

    /// The cluster of `baton status --json` of this node.
    async fn cluster(&self) -> serde_json::Value {
        let mut status = self.status_json().await;
        let cluster = status["cluster"].take();
        assert!(cluster.is_object(), "{status}");
        cluster
    }

    /// The entry of the discovered service `web` in its status.
    async fn discovered(&self) -> serde_json::Value {
        let status = self.status().await;
        let all = status.as_array().expect("a list of services");
        all.iter()
            .find(|s| s["kind"] == "discovered" && s["name"] == "web")
            .unwrap_or_else(|| panic!("no discovered web in {status}"))
            .clone()
    }
}

/// The pids (`x-instance: VERSION/PID`) that answer `n` requests through
/// `addr`.
async fn answering(addr: &str, n: usize) -> std::collections::BTreeSet<u32> {
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..n {
        let r = get(addr, "/").await;
        assert_eq!(r.status, 200, "{r:?}");
        pids.insert(r.instance_pid());
    }
    pids
}

/// An instance value in the format of docs/cluster.md.
fn instance_json(node: &str, address: &str) -> String {
    format!(
        r#"{{"service":"web","version":"v7","address":"{address}","node":"{node}","state":"ready","registered_at":"2026-12-02T15:04:05Z"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_registered_with_etcdctl_receives_traffic_through_discover() {
    let net = Net::new(2);
    let mut etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-etcdctl");
    let mut a = start_node(
        &net,
        &etcd,
        &dir,
        0,
        Spec {
            name: "node-a",
            instances: 0,
        },
    )
    .await;
    // No instance anywhere yet: the pool is empty.
    assert_eq!(get(&a.addr, "/").await.status, 503);

    // The app, on host 1, registers itself by hand.
    let mut hello = net.command(1, support::hello());
    hello.args([
        "--listen",
        &format!("{}:0", net.address(1)),
        "--app-version",
        "v7",
    ]);
    let (app, app_addr) = Proc::spawn_listening(&mut hello).await;
    let grant = etcd.ctl(&["lease", "grant", "10"]).await;
    let lease = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    let key = "/e2e/services/web/instances/app-host/app-1";
    etcd.ctl(&[
        "put",
        "--lease",
        &lease,
        key,
        &instance_json("app-host", &app_addr),
    ])
    .await;
    let _keep_alive = etcd.ctl_running(&["lease", "keep-alive", &lease]);
    let after = a.routes_to(0, 1).await;
    let pids = answering(&a.addr, 3).await;
    assert_eq!(pids, [app.pid].into(), "{}", a.process.dump());
    let web = a.discovered().await;
    assert_eq!(web["members"], serde_json::json!([app_addr]), "{web}");
    assert!(web.get("registry_unreachable").is_none(), "{web}");

    // Deleted: no longer routed to.
    etcd.ctl(&["del", key]).await;
    a.routes_to(after, 0).await;
    assert_eq!(get(&a.addr, "/").await.status, 503);
    etcd.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_the_pools_within_the_ttl_under_load() {
    let _heavy = support::heavy().await;
    let net = Net::new(2);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-kill");
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
    a.routes_to(0, 4).await;
    b.routes_to(0, 4).await;
    // Node B's instances answer through node A's front door.
    let b_pids = b.process.instance_pids();
    let pids = answering(&a.addr, 8).await;
    assert!(
        pids.iter().any(|p| b_pids.contains(p)),
        "{pids:?} {b_pids:?}\n{}",
        a.process.dump()
    );
    assert!(pids.iter().any(|p| !b_pids.contains(p)), "{pids:?}");

    let load = Load::start(LoadConfig {
        keepalive_workers: 3,
        fresh_workers: 2,
        post_workers: 1,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(a.addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(300).await);

    // kill -9 of the whole node: baton, then its instances.
    let from = a.process.lines().len();
    let killed = Instant::now();
    let _ = b.process.child.kill().await;
    for pid in &b_pids {
        support::signal(*pid, 9);
    }
    b.process.instances_stopped();
    a.routes_to(from, 2).await;
    let gone_after = killed.elapsed();
    // 300 more successful requests (counted from now).
    assert!(load.wait_for_requests(300).await);
    let report = load.stop().await;
    let post = report.workers.get("post").copied().unwrap_or_default();
    eprintln!(
        "node B left A's pool {:.2} s after kill -9 (lease TTL {TTL_SECS} s); {} requests, {} failed ({} POST of {} failed)",
        gone_after.as_secs_f64(),
        report.requests,
        report.failures,
        post.failures,
        post.requests
    );
    // What took B's instances away is the expiry of its lease (which etcd
    // ends within the TTL): every key under it went at once, its node
    // record included, which nothing else deletes.
    let view = a.cluster().await;
    let nodes: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(nodes, ["node-a"], "{view}");
    let idempotent = report.failures - post.failures;
    assert_eq!(
        idempotent,
        0,
        "{}\n{}",
        report.failure_description(),
        a.process.dump()
    );
    let pids = answering(&a.addr, 6).await;
    assert!(pids.iter().all(|p| !b_pids.contains(p)), "{pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_doors_keep_the_last_members_while_etcd_is_down_under_load() {
    let _heavy = support::heavy().await;
    let net = Net::new(2);
    let mut etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-outage");
    let mut a = start_node(
        &net,
        &etcd,
        &dir,
        0,
        Spec {
            name: "node-a",
            instances: 1,
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
            instances: 1,
        },
    )
    .await;
    a.routes_to(0, 2).await;
    b.routes_to(0, 2).await;

    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 2,
        post_workers: 1,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(a.addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(200).await);

    let from = a.process.lines().len();
    etcd.kill().await;
    let unreachable = |l: &str| l.contains("registry unreachable; keeping the last known members");
    let (from, _) = a
        .process
        .wait_from(from, "the outage", unreachable)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.process.dump()));
    let web = a.discovered().await;
    assert_eq!(web["members"].as_array().map(Vec::len), Some(2), "{web}");
    let why = web["registry_unreachable"].as_str().unwrap_or_default();
    assert!(why.starts_with("since "), "{web}");
    let control = a.control.to_str().unwrap();
    let (_, table) = support::run_baton(&["status", "--control", control]).await;
    assert!(table.contains("registry unreachable"), "{table}");
    // Both nodes' instances keep serving through A meanwhile.
    // 300 more successful requests (counted from now).
    assert!(load.wait_for_requests(300).await);
    let answered = load.snapshot().instances.len();
    assert!(answered >= 2, "{:?}", load.snapshot().instances);

    etcd.restart().await;
    let again = |l: &str| l.contains("registry reachable again");
    if let Err(e) = a.process.wait_from(from, "etcd back", again).await {
        panic!("{e}\n{}", a.process.dump());
    }
    let web = a.discovered().await;
    assert!(web.get("registry_unreachable").is_none(), "{web}");
    // Following again: an instance registered now gets A's traffic.
    let from = a.process.lines().len();
    let mut hello = net.command(1, support::hello());
    hello.args([
        "--listen",
        &format!("{}:0", net.address(1)),
        "--app-version",
        "v7",
    ]);
    let (app, app_addr) = Proc::spawn_listening(&mut hello).await;
    let grant = etcd.ctl(&["lease", "grant", "30"]).await;
    let lease = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    let key = "/e2e/services/web/instances/app-host/app-1";
    etcd.ctl(&[
        "put",
        "--lease",
        &lease,
        key,
        &instance_json("app-host", &app_addr),
    ])
    .await;
    a.routes_to(from, 3).await;
    // 300 more successful requests (counted from now).
    assert!(load.wait_for_requests(300).await);
    let report = load.stop().await;
    let app_instance = format!("v7/{}", app.pid);
    assert!(
        report.instances.contains_key(&app_instance),
        "{:?}",
        report.instances
    );
    report.assert_no_failures();
}
/// Keep-alive, new-connection, POST and slow (300 ms) load through `node`'s
/// front door, for at most two minutes.
fn mixed_load_through(node: &Node) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        slow_workers: 1,
        slow_ms: 300,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(node.addr.parse::<SocketAddr>().unwrap())
    })
}

/// Lets the loads through nodes A and B each carry 100 more successful
/// requests, stops them and asserts that neither saw a failure (showing
/// `log`, the deploying node's, if one did).
async fn stop_without_failures(loads: [Load; 2], log: &Proc) {
    for l in &loads {
        let then = l.snapshot().requests;
        assert!(l.wait_for_requests(then + 100).await);
    }
    for (front, load) in ["A", "B"].into_iter().zip(loads) {
        let report = load.stop().await;
        eprintln!(
            "through node {front}'s front door: {} requests, {} failed",
            report.requests, report.failures
        );
        assert_eq!(
            report.failures,
            0,
            "{}\n{}",
            report.failure_description(),
            log.dump()
        );
    }
}

/// `baton deploy web --version VERSION` through `node`'s control socket.
async fn deploy(node: &Node, version: &str) -> (i32, String) {
    let control = node.control.to_str().unwrap();
    let args = ["deploy", "web", "--version", version, "--control", control];
    support::run_baton(&args).await
}

/// `baton ARGS` through the control socket of `nodes[via]`; if it does not
/// end, the failure shows what every node did meanwhile (its converger's
/// slots and reports), not only the client's progress.
async fn run_on(nodes: &[Node], via: usize, args: &[&str]) -> (i32, String) {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.extend([
        "--control".to_owned(),
        nodes[via].control.display().to_string(),
    ]);
    let shown = args.join(" ");
    let run = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::run_baton(&args).await
    });
    match run.await {
        Ok(ended) => ended,
        Err(e) => {
            let dumps: Vec<String> = nodes.iter().map(|n| n.process.dump()).collect();
            panic!("baton {shown} did not end: {e}\n{}", dumps.join("\n"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deploys_of_a_service_on_two_nodes_at_once_one_runs_the_other_exits_75() {
    let net = Net::new(2);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-lock");
    let mut a = start_node(
        &net,
        &etcd,
        &dir,
        0,
        Spec {
            name: "node-a",
            instances: 1,
        },
    )
    .await;
    let b = start_node(
        &net,
        &etcd,
        &dir,
        1,
        Spec {
            name: "node-b",
            instances: 1,
        },
    )
    .await;
    a.routes_to(0, 2).await;

    // A deploy on node A that lasts (its version never becomes ready; it
    // fails at the ready timeout and is rolled back).
    // From the first revision: the lock's creation is seen whenever the
    // watch starts.
    let mut lock = etcd.ctl_running(&["watch", "--rev=1", "/e2e/locks/deploy/web"]);
    let control = a.control.to_str().unwrap().to_owned();
    let on_a = tokio::spawn(async move {
        let args = [
            "deploy",
            "web",
            "--version",
            "v2_never-ready",
            "--control",
            &control,
        ];
        support::run_baton(&args).await
    });
    lock.wait_for("\"node\":\"node-a\"").await;
    let (code, out) = deploy(&b, "v3").await;
    assert_eq!(code, 75, "{out}");
    assert!(
        out.contains("a deploy of \"web\" is running on node node-a"),
        "{out}"
    );

    let (code, out) = on_a.await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    // The lock went with the deploy: node B's runs now.
    let (code, out) = deploy(&b, "v3").await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_past_the_ttl_leaves_the_pools_and_comes_back_when_healed() {
    let net = Net::new(2);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-cut");
    let mut a = start_node(
        &net,
        &etcd,
        &dir,
        0,
        Spec {
            name: "node-a",
            instances: 1,
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
            instances: 1,
        },
    )
    .await;
    let from = a.routes_to(0, 2).await;
    b.routes_to(0, 2).await;

    net.cut(1);
    // Its lease expires: its instance leaves A's pool.
    let from = a.routes_to(from, 1).await;
    let b_pids = b.process.instance_pids();
    let pids = answering(&a.addr, 4).await;
    assert!(pids.iter().all(|p| !b_pids.contains(p)), "{pids:?}");

    net.heal(1);
    // B finds its lease gone, takes a new one and registers again.
    let lost = |l: &str| l.contains("the registry lease expired; registering again");
    if let Err(e) = b.process.wait_from(0, "a new lease", lost).await {
        panic!("{e}\n{}", b.process.dump());
    }
    a.routes_to(from, 2).await;
    let pids = answering(&a.addr, 6).await;
    assert!(
        pids.iter().any(|p| b_pids.contains(p)),
        "{pids:?} {b_pids:?}"
    );
}
