//! `baton deploy` against a running `baton serve`: a rolling deploy of a
//! supervised service under load fails no request; a version that never
//! becomes healthy is abandoned with the old one still serving; an unknown
//! service changes nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use crate::support::{self, TempDir, baton_serve_with, get, wait_version};

fn service_config(dir: &TempDir) -> std::path::PathBuf {
    service_config_with(dir, 2, "50ms")
}

pub(crate) fn service_config_with(
    dir: &TempDir,
    instances: u32,
    interval: &str,
) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    let script = support::app_script(dir);
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{}", "127.0.0.1:{{port}}", "{{version}}"]
version = "v1"
instances = {instances}
ready_timeout = "5s"
[service.web.health]
path = "/healthz"
interval = "{interval}"
timeout = "40ms"
healthy_threshold = 2
unhealthy_threshold = 2

[[route]]
service = "web"
"#,
            script.display()
        ),
    )
    .unwrap();
    path
}

async fn deploy(control: &Path, service: &str, version: &str) -> (i32, String) {
    support::run_baton(&[
        "deploy",
        service,
        "--version",
        version,
        "--control",
        control.to_str().unwrap(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploy_under_load_fails_nothing() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("deploy");
    let control = dir.path().join("control.sock");
    let state = dir.path().join("state");
    let config = service_config(&dir);
    let serve_args = [
        "--control",
        control.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let (mut baton, addr) = baton_serve_with(&config, &serve_args).await;
    wait_version(&addr, "v1").await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");

    let load = Load::start(LoadConfig {
        keepalive_workers: 3,
        fresh_workers: 2,
        post_workers: 2,
        slow_workers: 2,
        slow_ms: 200,
        max_duration: Duration::from_secs(90),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(200).await);

    let (code, out) = deploy(&control, "web", "v2").await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    assert!(out.contains("deployed web v2"), "{out}");
    wait_version(&addr, "v2").await;
    assert!(load.wait_for_requests(300).await);

    // A release that never passes its health check: abandoned, v2 serves.
    let (code, out) = deploy(&control, "web", "v3-broken").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deploy failed and was rolled back"), "{out}");
    assert!(load.wait_for_requests(300).await);
    assert_eq!(get(&addr, "/").await.instance_version(), "v2");

    // Nothing to deploy: a clear error, exit 64, nothing changed.
    let (code, out) = deploy(&control, "nope", "v9").await;
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("unknown service"), "{out}");
    let (code, out) = deploy(&control, "web", "../etc").await;
    assert_eq!(code, 64, "{out}");

    // Back to the version before v2, still under load.
    let (code, out) =
        support::run_baton(&["rollback", "web", "--control", control.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rolled back web v1"), "{out}");
    wait_version(&addr, "v1").await;
    assert!(load.wait_for_requests(300).await);

    let (code, out) =
        support::run_baton(&["status", "--json", "--control", control.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    let status: serde_json::Value = serde_json::from_str(out.trim_start_matches("[out] ")).unwrap();
    let web = &status["services"][0];
    assert_eq!(web["version"], "v1");
    assert_eq!(web["members"].as_array().unwrap().len(), 2);
    let outcomes: Vec<&str> = web["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes[0], "initial");
    assert_eq!(outcomes[1], "deployed");
    assert!(outcomes[2].starts_with("failed: "), "{outcomes:?}");
    assert_eq!(outcomes[3], "rolled back");

    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    // Out of the pool, requests finished, then SIGTERM: no instance began
    // its drain with a slow request still being served.
    assert!(support::assert_no_sigterm_in_flight(&baton) > 0);
    assert!(report.instances.keys().any(|k| k.starts_with("v1/")));
    assert!(report.instances.keys().any(|k| k.starts_with("v2/")));
    assert!(!report.instances.keys().any(|k| k.starts_with("v3")));
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());

    // Deploy v2 again, restart baton with the same state: v2 comes back,
    // although the file still says v1.
    let (mut baton, addr) = baton_serve_with(&config, &serve_args).await;
    wait_version(&addr, "v1").await;
    let (code, out) = deploy(&control, "web", "v2").await;
    assert_eq!(code, 0, "{out}");
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
    let (mut baton, addr) = baton_serve_with(&config, &serve_args).await;
    baton
        .wait_for("version restored from the state directory")
        .await;
    wait_version(&addr, "v2").await;
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}

/// Regression: with one instance, the old one leaves the pool as soon as the
/// new one is ready. The new one had passed the very health check the pool
/// uses, so it must take traffic at once — not wait for the proxy's own
/// checks to pass again while the pool has no healthy member (503s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_instance_deploy_under_load_never_empties_the_pool() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("deploy-one");
    let control = dir.path().join("control.sock");
    let config = service_config_with(&dir, 1, "300ms");
    let (mut baton, addr) =
        baton_serve_with(&config, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 2,
        post_workers: 1,
        slow_workers: 0,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(100).await);
    let (code, out) = deploy(&control, "web", "v2").await;
    assert_eq!(code, 0, "{out}");
    wait_version(&addr, "v2").await;
    assert!(load.wait_for_requests(100).await);
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}

/// A starting instance is checked `start_interval` apart, not `interval`
/// apart: with a one-minute interval and two checks needed, baton starts
/// and deploys well within the 5 s `ready_timeout`, which a second check a
/// minute after the first would exceed (the deploy would fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_instances_are_checked_start_interval_apart() {
    let dir = TempDir::new("deploy-start-interval");
    let control = dir.path().join("control.sock");
    let config = service_config_with(&dir, 2, "60s");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "interval = \"60s\"\ntimeout = \"40ms\"",
        "interval = \"60s\"\ntimeout = \"1s\"\nstart_interval = \"20ms\"",
    );
    assert!(text.contains("start_interval"), "{text}");
    std::fs::write(&config, text).unwrap();
    let (mut baton, addr) =
        baton_serve_with(&config, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    let (code, out) = deploy(&control, "web", "v2").await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    wait_version(&addr, "v2").await;
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}
