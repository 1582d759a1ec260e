//! Faults on demand through the real binary: `--error-rate`,
//! `--added-latency`, and the version's fault tags with
//! `--faults-from-version`. Part of the `hello` test binary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{Hello, WAIT, call, command};

/// The statuses of `paths`, requested one after the other.
async fn statuses(addr: SocketAddr, paths: &[&str]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for path in paths {
        statuses.push(call(addr, "GET", path).await.status.as_u16());
    }
    statuses
}

#[tokio::test]
async fn errors_tag_fails_every_second_ordinary_request_and_healthz_passes() {
    let mut hello = Hello::start(&["--faults-from-version", "--app-version", "v4_errors"]).await;
    let addr = hello.addr();
    let instance = format!("v4_errors/{}", hello.pid());

    // `/` and `/users/{id}` share one schedule; `/healthz` is not on it.
    let paths = ["/", "/users/7", "/healthz", "/", "/users/8", "/healthz"];
    assert_eq!(statuses(addr, &paths).await, [200, 500, 200, 200, 500, 200]);

    let ok = call(addr, "GET", "/").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "Hello, 你好,Rust服务器! (v4_errors)\n");
    let failed = call(addr, "GET", "/").await;
    assert_eq!(
        (failed.status.as_u16(), failed.text()),
        (500, "injected error (v4_errors)\n")
    );
    assert_eq!(failed.header("x-instance"), Some(instance.as_str()));
    hello.wait_log("faults switched on").await;

    hello.signal(libc::SIGTERM);
    assert!(hello.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn error_rate_flag_fails_its_share_spread_evenly() {
    let hello = Hello::start(&["--error-rate", "0.2"]).await;
    let paths = ["/"; 10];
    let expected = [200, 200, 200, 200, 500, 200, 200, 200, 200, 500];
    assert_eq!(statuses(hello.addr(), &paths).await, expected);
    assert_eq!(call(hello.addr(), "GET", "/healthz").await.status, 200);
}

#[tokio::test]
async fn a_tags_value_follows_a_dash_or_an_equals_sign() {
    let all = Hello::start(&["--faults-from-version", "--app-version", "v4_errors-1"]).await;
    let paths = ["/", "/users/1", "/healthz"];
    assert_eq!(statuses(all.addr(), &paths).await, [500, 500, 200]);

    let quarter = Hello::start(&["--faults-from-version", "--app-version", "v4_errors=0.25"]).await;
    let paths = ["/"; 4];
    assert_eq!(statuses(quarter.addr(), &paths).await, [200, 200, 200, 500]);
}

#[tokio::test]
async fn without_faults_from_version_tags_are_just_part_of_the_version() {
    let hello = Hello::start(&["--app-version", "v4_errors_never-ready"]).await;
    let paths = ["/", "/", "/users/1", "/users/2"];
    assert_eq!(statuses(hello.addr(), &paths).await, [200; 4]);
    let root = call(hello.addr(), "GET", "/").await;
    assert_eq!(
        root.text(),
        "Hello, 你好,Rust服务器! (v4_errors_never-ready)\n"
    );
}

#[tokio::test]
async fn slow_tag_delays_ordinary_requests_but_not_healthz() {
    let latency = Duration::from_millis(1500);
    let hello = Hello::start(&["--faults-from-version", "--app-version", "v7_slow-1500ms"]).await;
    let addr = hello.addr();

    let started = Instant::now();
    let ordinary =
        tokio::spawn(async move { (call(addr, "GET", "/users/3").await, started.elapsed()) });
    // Health is answered while the ordinary request is still being held.
    let health = call(addr, "GET", "/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        !ordinary.is_finished(),
        "the ordinary request was not delayed"
    );

    let (answer, took) = ordinary.await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.text()), (200, "user 3\n"));
    assert!(took >= latency, "answered after {took:?}");
}

#[tokio::test]
async fn added_latency_flag_delays_ordinary_requests() {
    let hello = Hello::start(&["--added-latency", "400ms"]).await;
    let started = Instant::now();
    let root = call(hello.addr(), "GET", "/").await;
    assert_eq!(root.status, 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn crash_tag_exits_3_after_becoming_ready() {
    let mut cmd = command(&["--listen", "127.0.0.1:0", "--faults-from-version"]);
    cmd.env("APP_VERSION", "v6_crash");
    let mut hello = Hello::spawn(cmd, 1).await;
    hello.wait_log("hello: ready").await;
    let status = hello.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(3), "{status}");
}

#[tokio::test]
async fn never_ready_tag_never_serves_and_exits_0_on_sigterm() {
    let mut hello =
        Hello::start(&["--faults-from-version", "--app-version", "v5_never-ready"]).await;
    hello.wait_log("never accepting").await;
    hello.signal(libc::SIGTERM);
    let status = hello.wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn fail_health_tag_answers_503_on_healthz_only() {
    let hello = Hello::start(&["--faults-from-version", "--app-version", "v5_fail-health"]).await;
    let paths = ["/healthz", "/", "/users/1"];
    assert_eq!(statuses(hello.addr(), &paths).await, [503, 200, 200]);
}

#[test]
fn unknown_fault_tags_and_bad_values_exit_64_with_a_message() {
    for (version, needle) in [
        (
            "v4_bogus",
            "unknown fault tag \"bogus\" in version \"v4_bogus\"",
        ),
        ("v4_errors-2", "expected a number from 0 to 1"),
        ("v4_slow-soon", "is not a duration"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hello"))
            .args(["--listen", "127.0.0.1:0", "--faults-from-version"])
            .args(["--app-version", version])
            .env_remove("LISTEN_FDS")
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{version}: {stderr}");
        assert!(stderr.contains(needle), "{version}: {stderr}");
        assert!(out.stdout.is_empty(), "{version}");
    }
}

/// The tag list is documented where users look for it.
#[test]
fn help_describes_the_fault_flags_and_tags() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_hello"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--error-rate <FLOAT>",
        "--added-latency <DUR>",
        "--faults-from-version",
        "never-ready",
        "errors[-RATE]",
        "slow[-DUR]",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
