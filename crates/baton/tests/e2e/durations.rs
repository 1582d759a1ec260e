//! Durations at the largest value the config accepts (100 years) are safe:
//! `baton serve` proxies with them and stops on SIGTERM without a panic.
//! A deadline computed from one of them once overflowed the clock.

use crate::support::{self, TempDir, baton_serve_with, get, run_baton, start_hello, wait_version};

/// Every timeout and grace period that a plain proxy, a supervised service
/// and a rolling deploy of it use at once, each at the maximum (a health check's `timeout`
/// must stay below its `interval`, and a supervised instance is only ready
/// once a check passes, so the service checks often).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_durations_proxy_and_stop_without_a_panic() {
    let (_upstream, upstream) = start_hello(&["--app-version", "pool"]).await;
    let dir = TempDir::new("max-durations");
    let path = dir.path().join("baton.toml");
    let config = format!(
        r#"[proxy]
drain_timeout = "100y"
idle_grace = "100y"

[[listener]]
address = "127.0.0.1:0"
header_read_timeout = "100y"
keepalive_timeout = "100y"

[pool.app]
members = [{{ address = "{upstream}" }}]
connect_timeout = "100y"
header_timeout = "100y"
idle_timeout = "100y"
total_timeout = "100y"

[pool.app.health]
path = "/healthz"
interval = "100y"
timeout = "99y"

[pool.app.passive]
ejection_time = "100y"
max_ejection_time = "100y"

[service.web]
command = ["{hello}", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "svc"
ready_timeout = "100y"
drain_timeout = "100y"
deploy_timeout = "100y"
connect_timeout = "100y"
header_timeout = "100y"
idle_timeout = "100y"
total_timeout = "100y"

[service.web.health]
path = "/healthz"
interval = "100ms"
timeout = "99ms"

[service.web.passive]
ejection_time = "100y"
max_ejection_time = "100y"

[[route]]
path = "/healthz"
pool = "app"

[[route]]
service = "web"
"#,
        hello = support::hello().display()
    );
    std::fs::write(&path, config).unwrap();
    let control = dir.path().join("control.sock");
    let control = control.to_str().unwrap();
    let (mut baton, addr) = baton_serve_with(&path, &["--control", control]).await;
    baton.wait_for("instance joined the pool").await;
    // A member serves once the proxy's own first check has passed.
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    for (path, version) in [("/healthz", "pool"), ("/", "svc")] {
        loop {
            assert!(tokio::time::Instant::now() < deadline, "{}", baton.dump());
            let r = get(&addr, path).await;
            if r.status == 200 {
                assert_eq!(r.instance_version(), version);
                break;
            }
        }
    }
    // A rolling deploy under the same deadlines.
    let (code, out) =
        run_baton(&["deploy", "web", "--version", "svc2", "--control", control]).await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    wait_version(&addr, "svc2").await;
    baton.signal(libc::SIGTERM);
    let status = baton.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", baton.dump());
    assert!(
        !baton.lines().iter().any(|l| l.contains("panicked")),
        "{}",
        baton.dump()
    );
}

/// One nanosecond past the maximum is refused before anything starts, with
/// its position and the maximum, and exit 64: `baton check` once accepted
/// `"18446744073709551615s"`, on which `baton serve` then panicked.
#[tokio::test]
async fn a_duration_past_the_maximum_is_refused_with_its_position() {
    let dir = TempDir::new("huge-duration");
    let path = dir.path().join("baton.toml");
    for (value, column) in [("18446744073709551615s", 18), ("100y 1ns", 18)] {
        let config = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[pool.app]\nmembers = [{{ address = \"127.0.0.1:9\" }}]\nheader_timeout = \"{value}\"\n[[route]]\npool = \"app\"\n"
        );
        std::fs::write(&path, config).unwrap();
        let file = path.display();
        let path = path.to_string_lossy();
        for command in [&["check", &path][..], &["serve", "--config", &path]] {
            let (code, out) = run_baton(command).await;
            assert_eq!(code, 64, "{command:?}: {out}");
            let want = format!(
                "{file}:5:{column}: error: `header_timeout` must be at most 100y (100 years), not \"{value}\""
            );
            assert!(out.contains(&want), "{command:?}: want {want:?} in:\n{out}");
        }
    }
}
