//! `baton exec` when things go wrong: a new version that never becomes
//! ready or crashes, an instance killed under load, bad arguments. The old
//! generation must keep serving through all of it.

use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use crate::support::{self, TempDir, baton_exec, field, get};

/// A wrapper that runs `hello` with the arguments found in a file at each
/// start, so a test can "install a new version" between two SIGHUPs the way
/// a deploy replaces a binary on disk.
fn versioned_hello(dir: &TempDir, args: &str) -> String {
    let script = dir.path().join("app.sh");
    let args_file = dir.path().join("args");
    std::fs::write(&args_file, args).unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} $(cat {})\n",
            support::hello().display(),
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_str().unwrap().to_owned()
}

fn install(dir: &TempDir, args: &str) {
    std::fs::write(dir.path().join("args"), args).unwrap();
}

fn light_load(addr: &str) -> LoadConfig {
    LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 2,
        post_workers: 1,
        slow_workers: 2,
        slow_ms: 200,
        max_duration: Duration::from_secs(90),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    }
}

/// A new version that never reports ready is stopped at the ready timeout,
/// the rollout fails with a clear reason, the old version keeps serving with
/// no failed request, and the next SIGHUP succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_version_is_rolled_back_under_load() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("never-ready");
    let app = versioned_hello(&dir, "--app-version v1");
    let (mut baton, addr) = baton_exec(
        &[
            "--listen",
            "127.0.0.1:0",
            "--instances",
            "2",
            "--ready-timeout",
            "1s",
        ],
        &[&app],
    )
    .await;
    baton.wait_for("rollout complete generation=1").await;
    let load = Load::start(light_load(&addr));
    assert!(load.wait_for_requests(50).await);

    install(&dir, "--app-version v2 --never-ready");
    baton.signal(libc::SIGHUP);
    let failed = baton.wait_for("rollout failed").await;
    assert_eq!(field(&failed, "generation"), Some("2"), "{failed}");
    assert!(failed.contains("was not ready within 1s"), "{failed}");
    // The never-ready instance is gone, and v1 still answers.
    let v2 = baton.generation_pids(2);
    assert_eq!(v2.len(), 1, "one surge instance was tried: {v2:?}");
    let v2_pid = *v2.iter().next().unwrap();
    baton
        .wait_line("the never-ready instance to exit", |l| {
            l.contains("instance exited") && field(l, "pid") == Some(&v2_pid.to_string())
        })
        .await;
    assert!(load.wait_for_requests(50).await);
    let r = get(&addr, "/").await;
    assert_eq!(r.instance_version(), "v1");

    install(&dir, "--app-version v3");
    baton.signal(libc::SIGHUP);
    baton.wait_for("rollout complete generation=3").await;
    assert_eq!(get(&addr, "/").await.instance_version(), "v3");
    assert!(load.wait_for_requests(50).await);

    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    assert!(!report.instances.keys().any(|k| k.starts_with("v2/")));
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}

/// A new version that exits during start-up fails the rollout at once (no
/// waiting for the ready timeout) and the old version keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_version_fails_the_rollout() {
    let dir = TempDir::new("crash");
    let app = versioned_hello(&dir, "--app-version v1");
    let (mut baton, addr) = baton_exec(
        &["--listen", "127.0.0.1:0", "--ready-timeout", "60s"],
        &[&app],
    )
    .await;
    baton.wait_for("rollout complete generation=1").await;
    install(&dir, "--app-version v2 --no-such-flag");
    baton.signal(libc::SIGHUP);
    let failed = baton.wait_for("rollout failed").await;
    assert!(failed.contains("exited with exit code 64"), "{failed}");
    assert_eq!(get(&addr, "/").await.instance_version(), "v1");
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}

/// An instance killed with SIGKILL is restarted (with backoff) without
/// touching the other instance, and the service keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_is_restarted() {
    let hello = support::hello();
    let (mut baton, addr) = baton_exec(
        &["--listen", "127.0.0.1:0", "--instances", "2"],
        &[hello.to_str().unwrap()],
    )
    .await;
    baton.wait_for("rollout complete generation=1").await;
    let before = baton.instance_pids();
    let victim = *before.iter().next().unwrap();
    support::signal(victim, libc::SIGKILL);
    baton
        .wait_for("instance died unexpectedly, restarting after backoff")
        .await;
    // Wait until a third instance is ready.
    baton
        .wait_line("a replacement instance to be ready", |l| {
            l.contains("instance ready") && field(l, "instance") == Some("3")
        })
        .await;
    let after = baton.instance_pids();
    assert_eq!(after.len(), 3, "{after:?}");
    let survivor = *before.iter().nth(1).unwrap();
    // The other instance was never stopped.
    assert!(!baton.lines().iter().any(|l| {
        l.contains("stopping instance") && field(l, "pid") == Some(&survivor.to_string())
    }));
    for _ in 0..10 {
        assert_eq!(get(&addr, "/").await.status, 200);
    }
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}

/// Every bad invocation says what is wrong and exits 64, starting nothing.
#[tokio::test]
async fn bad_arguments_exit_64_with_a_clear_message() {
    let hello = support::hello();
    let hello = hello.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["exec", "--listen", "127.0.0.1:0"], "CMD"),
        (&["exec", "--", hello], "no socket to hold"),
        (
            &["exec", "--listen", "nonsense", "--", hello],
            "could not parse listen address",
        ),
        (
            &["exec", "--listen", "127.0.0.1:0", "--", "/no/such/app"],
            "could not find an executable program",
        ),
        (
            &[
                "exec",
                "--listen",
                "127.0.0.1:0",
                "--max-surge",
                "0",
                "--",
                hello,
            ],
            "cannot both be 0",
        ),
        (
            &[
                "exec",
                "--listen",
                "127.0.0.1:0",
                "--instances",
                "0",
                "--",
                hello,
            ],
            "instances",
        ),
        (
            &[
                "exec",
                "--listen",
                "127.0.0.1:0",
                "--ready",
                "soon",
                "--",
                hello,
            ],
            "notify",
        ),
        (
            &[
                "exec",
                "--listen",
                "127.0.0.1:0",
                "--drain-timeout",
                "x",
                "--",
                hello,
            ],
            "invalid duration",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        let (code, out) = support::run_baton(args).await;
        assert_eq!(code, 64, "{args:?}\n{out}");
        assert!(
            out.contains(needle),
            "{args:?}: expected {needle:?} in\n{out}"
        );
        assert!(
            !out.contains("instance started"),
            "{args:?} started something"
        );
    }
}

/// An app that ignores SIGTERM is killed (with everything it started) at
/// the drain deadline, and baton's exit code says the stop was not clean.
/// Also exercises `--ready delay:DUR` for apps that cannot notify.
#[tokio::test]
async fn app_ignoring_sigterm_is_killed_at_the_drain_deadline() {
    let (mut baton, _addr) = baton_exec(
        &[
            "--listen",
            "127.0.0.1:0",
            "--ready",
            "delay:100ms",
            "--drain-timeout",
            "300ms",
        ],
        &[
            "sh",
            "-c",
            "trap '' TERM; echo app-started; while :; do sleep 1; done",
        ],
    )
    .await;
    baton.wait_for("app-started").await;
    baton.wait_for("rollout complete generation=1").await;
    baton.signal(libc::SIGTERM);
    baton
        .wait_for("drain deadline reached, sending SIGKILL")
        .await;
    let status = baton.wait_exit().await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    baton.wait_for("instances did not all stop cleanly").await;
}
