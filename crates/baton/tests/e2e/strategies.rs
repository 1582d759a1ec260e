//! The deploy strategies end to end: blue-green (smoke checks, an instant
//! rollback within the window), canary (steps judged on the proxy's own
//! measurements, a version with errors caught and rolled back), broken
//! versions of every kind rolled back, deploy timeout, external services
//! deployed by new targets, pause/resume, `baton reload`, a supervised
//! instance killed with SIGKILL — all under load where it matters, counting
//! failed requests. The app is `baton demo-app` (hello in-process) with
//! faults chosen by the version (`v3_errors-1.0`, `v5_never-ready`, …).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use crate::support::{self, TempDir, baton_serve_with, get, wait_version};

/// A supervised `web` of `baton demo-app` instances; `extra` is appended
/// to the `[service.web]` table.
fn config(dir: &TempDir, extra: &str) -> PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{baton}", "demo-app", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}", "--faults-from-version"]
version = "v1"
instances = 2
ready_timeout = "3s"
retry_server_errors = true
{extra}

[service.web.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 2
unhealthy_threshold = 2

[service.web.blue_green]
smoke = ["/", "/users/7"]
rollback_window = "60s"

[service.web.canary]
steps = [20, 100]
pause = "300ms"
min_requests = 30
max_error_rate = 0.01
# The load has 150 ms requests: on thirty samples the p99 is decided by
# whether one of them landed there. The latency gate has its unit tests.
p99_floor = "250ms"

[[route]]
service = "web"
"#,
            baton = support::baton().display()
        ),
    )
    .unwrap();
    path
}

async fn deploy(control: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["deploy", "web", "--control", control.to_str().unwrap()];
    all.extend_from_slice(args);
    support::run_baton(&all).await
}

async fn status(control: &Path) -> serde_json::Value {
    let (code, out) =
        support::run_baton(&["status", "--json", "--control", control.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    let mut status: serde_json::Value =
        serde_json::from_str(out.trim_start_matches("[out] ")).unwrap();
    status["services"].take()
}

fn mixed_load(addr: &str) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 2,
        post_workers: 1,
        slow_workers: 1,
        slow_ms: 150,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_under_load_fail_nothing_and_roll_back_every_broken_version() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("strategies");
    let control = dir.path().join("control.sock");
    let path = config(&dir, "");
    let (mut baton, addr) =
        baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    let load = mixed_load(&addr);
    assert!(load.wait_for_requests(200).await);

    // Blue-green: smoke-checked, switched in one step, v1 kept on standby.
    let (code, out) = deploy(&control, &["--version", "v2", "--strategy", "blue_green"]).await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    assert!(out.contains("smoke check GET /users/7"), "{out}");
    assert!(out.contains("deployed web v2 (blue_green)"), "{out}");
    wait_version(&addr, "v2").await;
    let web = &status(&control).await[0];
    let sets = web["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{web}");
    assert!(
        sets.iter()
            .any(|s| s["version"] == "v1" && s["standby"] == true && s["share"] == 0),
        "{web}"
    );
    assert!(load.wait_for_requests(200).await);

    // Within the window, a rollback is a switch back to the standby set.
    let (code, out) =
        support::run_baton(&["rollback", "web", "--control", control.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("switch back"), "{out}");
    wait_version(&addr, "v1").await;
    assert!(load.wait_for_requests(200).await);

    // A version whose pages fail: caught by the smoke check, never routed.
    let (code, out) = deploy(
        &control,
        &["--version", "v3_errors-1.0", "--strategy", "blue_green"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("smoke check GET / on"), "{out}");
    assert!(out.contains("answered 500"), "{out}");

    // Canary: 20 %, judged, then 100 %.
    let (code, out) = deploy(&control, &["--version", "v4", "--strategy", "canary"]).await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    assert!(out.contains("step 20% passed"), "{out}");
    wait_version(&addr, "v4").await;
    assert!(load.wait_for_requests(200).await);

    // A canary that answers errors: the proxy retries them elsewhere (no
    // client sees one) and judges the canary on its own measurements.
    let (code, out) = deploy(
        &control,
        &["--version", "v5_errors-0.5", "--strategy", "canary"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("canary error rate"), "{out}");
    assert!(load.wait_for_requests(100).await);

    // Never healthy, and crashing at start: rolled back, v4 serves.
    let (code, out) = deploy(&control, &["--version", "v6_never-ready"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready within"), "{out}");
    let (code, out) = deploy(
        &control,
        &["--version", "v7_crash-1ms", "--strategy", "blue_green"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exited"), "{out}");
    assert!(load.wait_for_requests(200).await);
    assert_eq!(get(&addr, "/").await.instance_version(), "v4");

    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    // Stop routing, let requests in flight finish, then SIGTERM: no old
    // instance may begin its drain with a slow request (a client's) still
    // being served — an app that does not drain by itself would lose it.
    assert!(support::assert_no_sigterm_in_flight(&baton) > 0);
    for broken in ["v3", "v6", "v7"] {
        assert!(
            !report.instances.keys().any(|k| k.starts_with(broken)),
            "{broken} answered a client: {:?}",
            report.instances
        );
    }
    let history: Vec<String> = status(&control).await[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["version"], d["outcome"]))
        .collect();
    assert_eq!(history.len(), 8, "{history:?}");
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_timeout_rolls_back_a_canary_that_cannot_be_judged() {
    let dir = TempDir::new("deploy-timeout");
    let control = dir.path().join("control.sock");
    // No traffic: the canary step never reaches `min_requests`.
    let path = config(&dir, "deploy_timeout = \"1500ms\"");
    let (mut baton, addr) =
        baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    let (code, out) = deploy(
        &control,
        &["--version", "v2", "--strategy", "canary", "--json"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    let outcome: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap().trim_start_matches("[out] ")).unwrap();
    assert_eq!(outcome["ok"], false);
    let error = outcome["error"].as_str().unwrap();
    assert!(error.contains("deploy timeout"), "{error}");
    assert!(error.contains("of the 30 requests"), "{error}");
    wait_version(&addr, "v1").await;
    let web = &status(&control).await[0];
    assert_eq!(web["sets"].as_array().unwrap().len(), 1, "{web}");
    assert_eq!(web["version"], "v1");

    // Bad requests change nothing: exit 64.
    let (code, out) = deploy(&control, &["--target", "127.0.0.1:1"]).await;
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("supervised"), "{out}");
    let (code, out) = deploy(&control, &["--version", "../x"]).await;
    assert_eq!(code, 64, "{out}");
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_service_deploy_under_load_switches_targets() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("external");
    let control = dir.path().join("control.sock");
    let (mut v1, a1) = support::start_hello(&["--app-version", "v1"]).await;
    let (mut v2, a2) = support::start_hello(&["--app-version", "v2"]).await;
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.api]
targets = ["{a1}"]
strategy = "blue_green"
ready_timeout = "1s"
[service.api.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 2
[service.api.blue_green]
rollback_window = "0s"

[[route]]
service = "api"
"#
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let args = [
        "--control",
        control.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let (mut baton, addr) = baton_serve_with(&path, &args).await;
    wait_version(&addr, "v1").await;
    let load = mixed_load(&addr);
    assert!(load.wait_for_requests(200).await);

    let c = control.to_str().unwrap();
    let (code, out) = support::run_baton(&[
        "deploy",
        "api",
        "--target",
        &a2,
        "--version",
        "v2",
        "--control",
        c,
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    wait_version(&addr, "v2").await;
    assert!(load.wait_for_requests(200).await);

    // An unreachable target is refused; v2 keeps serving.
    let (code, out) =
        support::run_baton(&["deploy", "api", "--target", "127.0.0.1:1", "--control", c]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("was not healthy"), "{out}");

    let (code, out) = support::run_baton(&["rollback", "api", "--control", c]).await;
    assert_eq!(code, 0, "{out}");
    wait_version(&addr, "v1").await;
    assert!(load.wait_for_requests(200).await);
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();

    // The targets survive a restart of baton.
    let (code, out) = support::run_baton(&[
        "deploy",
        "api",
        "--target",
        &a2,
        "--version",
        "v2",
        "--control",
        c,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
    let (mut baton, addr) = baton_serve_with(&path, &args).await;
    wait_version(&addr, "v2").await;
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
    for p in [&mut v1, &mut v2] {
        p.signal(libc::SIGTERM);
        p.wait_exit().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_requests_until_resume_and_reload_reports_errors() {
    let dir = TempDir::new("pause");
    let control = dir.path().join("control.sock");
    let path = config(&dir, "");
    let (mut baton, addr) =
        baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    let c = control.to_str().unwrap();

    let (code, out) = support::run_baton(&["pause", "web", "--control", c]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&control).await[0]["paused"], true);
    let mut held = tokio::spawn({
        let addr = addr.clone();
        async move { get(&addr, "/").await }
    });
    // Held: no answer while paused (a bounded negative check).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut held)
            .await
            .is_err(),
        "a request was answered while the service was paused"
    );
    let (code, out) = support::run_baton(&["resume", "web", "--control", c]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(held.await.unwrap().status, 200);

    // Past the bound: 503 with Retry-After.
    let (code, out) =
        support::run_baton(&["pause", "web", "--max-wait", "100ms", "--control", c]).await;
    assert_eq!(code, 0, "{out}");
    let r = get(&addr, "/").await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some(), "{r:?}");
    let (code, _) = support::run_baton(&["resume", "web", "--control", c]).await;
    assert_eq!(code, 0);
    assert_eq!(get(&addr, "/").await.status, 200);

    let (code, out) = support::run_baton(&["pause", "nope", "--control", c, "--json"]).await;
    assert_eq!(code, 64, "{out}");

    // `baton reload`: a broken file is refused with its errors.
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("[[route]]", "[[route]]\nbogus = 1")).unwrap();
    let (code, out) = support::run_baton(&["reload", "--control", c]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bogus"), "{out}");
    std::fs::write(&path, good).unwrap();
    let (code, out) = support::run_baton(&["reload", "--control", c]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config reloaded"), "{out}");
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_under_load_is_restarted_and_nothing_fails() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("kill9");
    let control = dir.path().join("control.sock");
    let path = config(&dir, "");
    let (mut baton, addr) =
        baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    // Idempotent requests only: one in flight on the killed instance is
    // resent to the other by the proxy.
    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 2,
        post_workers: 0,
        slow_workers: 0,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(200).await);
    let victim = get(&addr, "/").await.instance_pid();
    support::signal(victim, libc::SIGKILL);
    baton.wait_for("instance died unexpectedly").await;
    // Back to two instances, the victim replaced.
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    loop {
        let web = status(&control).await;
        if web[0]["members"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{web}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(load.wait_for_requests(300).await);
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    assert!(
        report.instances.len() >= 3,
        "a new instance answered: {:?}",
        report.instances
    );
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_under_load_fails_nothing() {
    let _heavy = support::heavy().await;
    let (code, out) = support::run_baton(&["demo"]).await;
    assert_eq!(code, 0, "{out}");
    for needle in [
        "rolling update",
        "blue-green switch",
        "canary",
        "fails smoke check",
        "never healthy",
        "zero downtime",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}
