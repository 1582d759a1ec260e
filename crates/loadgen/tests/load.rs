//! End-to-end tests of the load client against a real (misbehaving on demand) server on 127.0.0.1:0.

#[path = "load/streams.rs"]
mod streams;
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use loadgen::{FailureKind, Load, LoadConfig, Phase, Report};
use support::{INSTANCE, Mode, TestServer};

/// A small load: no workers unless a test asks for them, a few hundred requests at most, seconds at most.
fn config(target: SocketAddr) -> LoadConfig {
    LoadConfig {
        keepalive_workers: 0,
        fresh_workers: 0,
        post_workers: 0,
        slow_workers: 0,
        slow_ms: 20,
        request_timeout: Duration::from_secs(5),
        max_duration: Duration::from_secs(10),
        ..LoadConfig::new(target)
    }
}

/// Runs `cfg` until it stops by itself (budget or deadline) and returns the report.
async fn run_to_end(cfg: LoadConfig) -> Report {
    let load = Load::start(cfg);
    load.stopping().await;
    load.stop().await
}

fn only_kind(report: &Report, kind: FailureKind) {
    assert!(report.failures > 0, "expected {kind} failures:\n{report}");
    assert_eq!(
        report.failures_of(kind),
        report.failures,
        "every failure should be {kind}:\n{}",
        report.failure_description()
    );
}

#[tokio::test]
async fn healthy_server_gives_zero_failures_across_all_worker_kinds_and_phases() {
    let server = TestServer::start(Mode::Healthy).await;
    let cfg = LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 2,
        post_workers: 1,
        slow_workers: 1,
        max_requests: Some(400),
        ..config(server.addr)
    };
    let load = Load::start(cfg);
    assert!(load.wait_for_requests(50).await);
    load.set_phase(Phase::Switching);
    assert!(load.wait_for_requests(50).await);
    load.set_phase(Phase::Steady);
    load.stopping().await;
    let report = load.stop().await;

    report.assert_no_failures();
    assert_eq!(report.requests, 400, "the request budget is exact");
    assert_eq!(report.ok, 400);
    for kind in ["keepalive", "fresh", "post", "slow"] {
        assert!(
            report.workers[kind].ok > 0,
            "{kind} workers never succeeded: {:?}",
            report.workers
        );
    }
    assert_eq!(report.instances.get(INSTANCE), Some(&400));
    let latency = report.latency;
    assert!(
        latency.switching.count > 0 && latency.steady.count > 0,
        "{latency:?}"
    );
    assert_eq!(latency.steady.count + latency.switching.count, 400);
    assert!(
        latency.steady.p50_us <= latency.steady.p99_us
            && latency.steady.p99_us <= latency.steady.max_us
    );
}

#[tokio::test]
async fn status_503_is_counted_as_status_503() {
    let server = TestServer::start(Mode::Status(503)).await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        fresh_workers: 1,
        max_requests: Some(20),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    assert_eq!(report.requests, 20);
    assert_eq!(report.ok, 0);
    only_kind(&report, FailureKind::Status(503));
    assert_eq!(report.failures_by_kind["status_503"], 20);
    assert_eq!(
        report.instances.get(INSTANCE),
        Some(&20),
        "error responses are counted per instance too"
    );
}

/// The keep-alive close race: the server closes an idle keep-alive connection it never announced closing. Here
/// it does so after every response, so every second request of a keep-alive worker is the victim.
#[tokio::test]
async fn unannounced_close_of_a_keepalive_connection_is_a_reset() {
    let server = TestServer::start(Mode::SilentClose).await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        max_requests: Some(20),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    only_kind(&report, FailureKind::Reset);
    assert_eq!(
        (report.ok, report.failures),
        (10, 10),
        "requests alternate: new connection ok, reuse fails\n{report}"
    );
    assert!(
        report.failure_samples[0].contains("keepalive#0 GET /: reset"),
        "{:?}",
        report.failure_samples
    );
    assert_eq!(report.instances.get("raw"), Some(&10));
}

/// The other side of the race: the request is already written when the server closes the connection without
/// answering it. That is "closed before the response", also a reset.
#[tokio::test]
async fn a_request_written_to_a_connection_the_server_then_closes_is_a_reset() {
    let server = TestServer::start(Mode::HangUpOnReuse).await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        max_requests: Some(10),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    only_kind(&report, FailureKind::Reset);
    assert_eq!((report.ok, report.failures), (5, 5), "{report}");
    assert!(
        report.failure_samples[0].contains("no complete response head"),
        "{:?}",
        report.failure_samples
    );
}

#[tokio::test]
async fn unannounced_close_does_not_hurt_one_request_per_connection() {
    let server = TestServer::start(Mode::SilentClose).await;
    let cfg = LoadConfig {
        fresh_workers: 2,
        max_requests: Some(20),
        ..config(server.addr)
    };
    run_to_end(cfg).await.assert_no_failures();
}

#[tokio::test]
async fn announced_connection_close_is_not_a_failure_and_workers_reconnect() {
    let server = TestServer::start(Mode::AnnouncedClose).await;
    let cfg = LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        slow_workers: 1,
        max_requests: Some(100),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    report.assert_no_failures();
    assert_eq!(report.requests, 100);
    assert_eq!(
        server.accepted(),
        100,
        "every request needed its own connection"
    );
}

#[tokio::test]
async fn content_length_longer_than_the_body_is_truncated() {
    let server = TestServer::start(Mode::Truncated).await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        fresh_workers: 1,
        max_requests: Some(10),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    assert_eq!(report.requests, 10);
    only_kind(&report, FailureKind::Truncated);
}

#[tokio::test]
async fn wrong_bodies_are_body_mismatch() {
    let server = TestServer::start(Mode::WrongBody).await;
    let cfg = LoadConfig {
        keepalive_workers: 1,
        post_workers: 1,
        max_requests: Some(20),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    assert_eq!(report.requests, 20);
    only_kind(&report, FailureKind::BodyMismatch);
    assert!(
        report.workers["post"].failures > 0 && report.workers["keepalive"].failures > 0,
        "{:?}",
        report.workers
    );
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_a_timeout() {
    let server = TestServer::start(Mode::Healthy).await;
    let cfg = LoadConfig {
        slow_workers: 1,
        slow_ms: 10_000,
        request_timeout: Duration::from_millis(100),
        max_requests: Some(3),
        ..config(server.addr)
    };
    let report = run_to_end(cfg).await;
    assert_eq!(report.requests, 3);
    only_kind(&report, FailureKind::Timeout);
}

#[tokio::test]
async fn nothing_listening_is_refused_and_the_load_ends_by_its_deadline() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let cfg = LoadConfig {
        keepalive_workers: 1,
        fresh_workers: 1,
        post_workers: 1,
        slow_workers: 1,
        max_duration: Duration::from_millis(300),
        ..config(addr)
    };
    let load = Load::start(cfg);
    let reached = tokio::time::timeout(Duration::from_secs(5), load.wait_for_requests(1)).await;
    assert_eq!(
        reached,
        Ok(false),
        "waiting for successes must end when the load stops"
    );
    let report = tokio::time::timeout(Duration::from_secs(5), load.stop())
        .await
        .expect("stop is bounded");

    assert_eq!(report.ok, 0);
    only_kind(&report, FailureKind::Refused);
    // A 20 ms back-off after each failure bounds a dead target to about 15 attempts per worker in 300 ms.
    assert!(
        report.requests <= 4 * (300 / 20 + 2),
        "failures must back off, got {}",
        report.requests
    );
    assert!(
        report.elapsed < Duration::from_secs(3),
        "{:?}",
        report.elapsed
    );
}

#[tokio::test]
async fn snapshot_reads_counts_without_stopping() {
    let server = TestServer::start(Mode::Healthy).await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 1,
        max_requests: Some(1000),
        ..config(server.addr)
    });
    assert!(load.wait_for_requests(5).await);
    let early = load.snapshot();
    assert!(early.ok >= 5 && !load.is_stopping());
    let report = load.stop().await;
    report.assert_no_failures();
    assert!(report.requests >= early.requests);
}

async fn baton_load(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton-load"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run baton-load");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        output.status.code().expect("exit code"),
        text(output.stdout),
        text(output.stderr),
    )
}

#[tokio::test]
async fn binary_exits_64_on_bad_arguments() {
    for args in [
        &["--target", "nowhere"][..],
        &["--target", "127.0.0.1:1", "--duration", "10"],
        &["--target", "127.0.0.1:1", "--bogus"],
        &[],
        &[
            "--target",
            "127.0.0.1:1",
            "--keepalive",
            "0",
            "--fresh",
            "0",
            "--post",
            "0",
            "--slow",
            "0",
        ],
    ] {
        let (code, _, stderr) = baton_load(args).await;
        assert_eq!(code, 64, "{args:?}: {stderr}");
    }
    let (code, stdout, _) = baton_load(&["--help"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("--max-requests"), "{stdout}");
}

#[tokio::test]
async fn binary_reports_json_and_exits_by_failures() {
    let healthy = TestServer::start(Mode::Healthy).await;
    let target = healthy.addr.to_string();
    let base = [
        "--target",
        target.as_str(),
        "--max-requests",
        "50",
        "--duration",
        "5s",
        "--slow-ms",
        "10",
        "--json",
    ];
    let (code, stdout, stderr) = baton_load(&base).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Report = serde_json::from_str(stdout.trim()).expect("one line of JSON");
    assert_eq!((report.requests, report.failures), (50, 0));

    let failing = TestServer::start(Mode::Status(503)).await;
    let target = failing.addr.to_string();
    let args = [
        "--target",
        target.as_str(),
        "--max-requests",
        "10",
        "--duration",
        "5s",
        "--slow-ms",
        "10",
    ];
    let (code, stdout, stderr) = baton_load(&args).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("10 requests, 0 ok, 10 failed"), "{stdout}");
    assert!(stderr.contains("status_503=10"), "{stderr}");
}
