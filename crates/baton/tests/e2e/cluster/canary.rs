//! Canaries across three nodes, each in its own network namespace, under
//! keep-alive, new-connection, POST and slow load through the front doors
//! of two different nodes, with `strategy = "canary"` (steps 20 % and
//! 100 %), sent to node A: the canary is one instance on node A, registered
//! `ready` with the weight that gives it the step's share of every front
//! door (6 stable instances, 20 %: weight 2, 25 %), judged on node A's
//! front door's requests:
//!
//! - v2, healthy: judged, promoted, then deployed on every node (rolling);
//! - v3, answering 500 to half its pages: judged bad (its errors are
//!   retried on other members, so no client sees one), taken out of the
//!   registry and stopped, exit 1; v2 everywhere, no v3 left;
//! - no request fails meanwhile.

use super::blue_green::Events;
use super::net::{Etcd, Net};
use super::{
    Node, mixed_load_through, run_on, start_node_pooled, stop_without_failures, web_service,
};
use crate::support::TempDir;

/// The nodes that run `web`, on hosts 0, 1 and 2.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Instances of `web` per node.
const INSTANCES: usize = 2;

/// Every node's config: `web` canary, a version's tags as faults.
fn web() -> String {
    let canary = r#"strategy = "canary"

[service.web.canary]
steps = [20, 100]
pause = "300ms"
min_requests = 30
max_error_rate = 0.01
# Slow requests are in the load: the latency gate has its unit tests.
p99_floor = "1s"
"#;
    web_service(INSTANCES as u32, true, canary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_across_the_cluster_is_promoted_when_healthy_and_rolled_back_everywhere_when_it_fails_under_load()
 {
    let _heavy = crate::support::heavy().await;
    let net = Net::new(3);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-canary");
    let mut events = Events::watch(&etcd);
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let pool = "retry_server_errors = true\n";
        nodes.push(start_node_pooled(&net, &etcd, &dir, i, name, &web(), pool).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len() * INSTANCES).await;
    }
    events.settled_at("v1", NODES.len()).await;
    let loads = [mixed_load_through(&nodes[0]), mixed_load_through(&nodes[1])];
    for l in &loads {
        assert!(l.wait_for_requests(100).await);
    }

    // v2: judged at 20 %, promoted, deployed everywhere.
    let (code, out) = run_on(&nodes, 0, &["deploy", "web", "--version", "v2"]).await;
    assert_eq!(code, 0, "{out}\n{}", nodes[0].process.dump());
    assert!(out.contains("step 20% passed"), "{out}");
    let judged: Vec<&str> = out.lines().filter(|l| l.contains("step 20%")).collect();
    eprintln!("v2: {}", judged.join(" "));
    for name in NODES {
        assert!(
            out.contains(&format!("node {name}: converged v2")),
            "no progress of {name}: {out}"
        );
    }
    let after_v2 = events.settled_at("v2", NODES.len()).await;

    // v3 answers 500 to half its pages: judged bad, rolled back.
    let (code, out) = run_on(&nodes, 0, &["deploy", "web", "--version", "v3_errors-0.5"]).await;
    assert_eq!(code, 1, "{out}\n{}", nodes[0].process.dump());
    assert!(out.contains("canary error rate"), "{out}");
    let judged: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("canary error rate"))
        .collect();
    eprintln!("v3: {}", judged.join(" "));
    let after_v3 = events.settled_at("v2", NODES.len()).await;

    stop_without_failures(loads, &nodes[0].process).await;

    // Each canary was one instance on node A, registered with weight 2,
    // and v3 ran nowhere else.
    let lines = events.watch.lines();
    for version in ["v2", "v3_errors-0.5"] {
        let weighted = lines.iter().any(|l| {
            l.contains(&format!(r#""version":"{version}""#))
                && l.contains(r#""node":"node-a""#)
                && l.contains(r#""weight":2"#)
        });
        assert!(weighted, "no canary of {version} with weight 2");
    }
    let history = events.history();
    for registry in &history[after_v2..after_v3] {
        let v3: Vec<_> = registry
            .instances
            .iter()
            .filter(|(_, (v, _))| v == "v3_errors-0.5")
            .collect();
        assert!(v3.len() <= 1, "{registry:?}");
        assert!(
            v3.iter().all(|((node, _), _)| node == "node-a"),
            "{registry:?}"
        );
    }
}
