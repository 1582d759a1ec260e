//! A reload in cluster mode: a `version` changed in the file of one node
//! only is a cluster-wide deploy of that version (the desired version in
//! etcd, written by that node), never a deploy on that node alone — every
//! node converges to it, and `baton status` shows it desired, with the
//! version before as `previous`.

use super::net::{Etcd, Net};
use super::{Node, start_node_with, web_service};
use crate::support::{TempDir, field, run_baton};

const NODES: [&str; 2] = ["node-a", "node-b"];

/// Waits until `node` has completed a deploy of `version`.
async fn deployed(node: &mut Node, version: &str) {
    let complete = |l: &str| l.contains("deploy complete") && field(l, "version") == Some(version);
    if let Err(e) = node.process.wait_from(0, "a deploy", complete).await {
        panic!("{e}\n{}", node.process.dump());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_changed_in_one_nodes_file_and_reloaded_is_deployed_on_every_node() {
    let net = Net::new(2);
    let etcd = Etcd::start(net.gateway()).await;
    let dir = TempDir::new("cluster-reload");
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let service = web_service(1, false, "");
        nodes.push(start_node_with(&net, &etcd, &dir, i, name, &service).await);
    }
    for node in &mut nodes {
        node.routes_to(0, NODES.len()).await;
    }

    // Only node A's file changes.
    let file = dir.join("node-a.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("version = \"v1\""), "{text}");
    std::fs::write(&file, text.replace("version = \"v1\"", "version = \"v2\"")).unwrap();
    let control = nodes[0].control.to_str().unwrap();
    let (code, out) = run_baton(&["reload", "--control", control]).await;
    assert_eq!(code, 0, "{out}");

    // Node B, whose file still says v1, converges to v2 too.
    for node in &mut nodes {
        deployed(node, "v2").await;
    }
    let view = nodes[1].cluster().await;
    let web = view["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "web"))
        .unwrap_or_else(|| panic!("{view}"));
    assert_eq!(web["desired"]["version"], "v2", "{web}");
    assert_eq!(web["desired"]["previous"], "v1", "{web}");
    assert_eq!(web["desired"]["by"], "node-a", "{web}");
    assert_eq!(web["ready"], serde_json::json!({ "v2": 2 }), "{web}");
    // Every node reports v2 on that revision (a report is written once its
    // deploy is done: wait for both).
    let revision = web["desired"]["revision"].clone();
    let mut reports =
        etcd.ctl_running(&["watch", "--prefix", "--rev=1", "/e2e/deploys/web/nodes/"]);
    reports
        .wait_count(
            &format!("\"state\":\"converged\",\"desired\":{revision}"),
            NODES.len(),
        )
        .await;
}
