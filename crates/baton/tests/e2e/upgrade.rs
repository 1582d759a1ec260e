//! `baton upgrade`: the running `baton serve` is replaced by a new process
//! of the binary on disk while load runs — every kind, WebSockets, event
//! streams and HTTP/2 included — with the same listening sockets and the
//! same instance processes, and the old process exits as soon as its last
//! connection is done. A new process that is refused (bad config, crash at
//! start, never ready) changes nothing: the old one serves on. A deploy
//! during an upgrade gets exit 75.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loadgen::{Load, LoadConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::deploy::service_config_with;
use crate::support::{self, Proc, TempDir, baton_serve_with, field, wait_version};

/// A supervised `web` service of 2 instances, a 60 s drain timeout (an old
/// process that waited for it would time the tests out). The health probes
/// may take 500 ms: each upgrade starts a debug build of baton on a machine
/// whose two cores the load and the other tests share, and a probe that
/// times out because its own process was starved at start is not the
/// instance's fault (with 40 ms, both members were now and then judged down
/// at once: 503s).
fn config(dir: &TempDir) -> PathBuf {
    let path = service_config_with(dir, 2, "600ms");
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("timeout = \"40ms\"", "timeout = \"500ms\"");
    text.push_str("\n[proxy]\ndrain_timeout = \"60s\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) async fn upgrade(control: &Path, timeout: &str) -> (i32, String) {
    support::run_baton(&[
        "upgrade",
        "--timeout",
        timeout,
        "--control",
        control.to_str().unwrap(),
    ])
    .await
}

/// Waits for the `upgraded` line of the process `old` and returns the new
/// process's pid.
pub(crate) async fn new_pid(baton: &mut Proc, nth: usize) -> u32 {
    baton
        .wait_count("upgraded: the new baton serves", nth)
        .await;
    let lines = baton.lines();
    let line = lines
        .iter()
        .filter(|l| l.contains("upgraded: the new baton serves"))
        .nth(nth - 1)
        .unwrap();
    field(line, "pid").unwrap().parse().unwrap()
}

/// Waits until the process `pid` says it stopped, drained.
pub(crate) async fn stopped(baton: &mut Proc, pid: u32) -> String {
    let pid = pid.to_string();
    baton
        .wait_line(&format!("process {pid} stopped"), |l| {
            l.contains("baton::serve: stopped") && field(l, "pid") == Some(&pid)
        })
        .await
}

/// Every kind of traffic: keep-alive, new connections, POSTs, slow
/// requests, WebSockets, event streams and HTTP/2.
fn load(addr: &str) -> Load {
    Load::start(LoadConfig {
        keepalive_workers: 3,
        fresh_workers: 2,
        post_workers: 2,
        slow_workers: 2,
        slow_ms: 200,
        websocket_workers: 2,
        sse_workers: 2,
        sse_interval_ms: 20,
        h2_workers: 2,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    })
}

/// The long-lived kinds moved from process to process by ends they were
/// told about (a WebSocket's 1001, an event stream ended between events,
/// HTTP/2's GOAWAY), none by a failure.
fn streams_moved(report: &loadgen::Report) {
    for kind in ["websocket", "sse", "h2"] {
        let tally = &report.workers[kind];
        eprintln!("{kind}: {tally:?}");
        assert!(tally.announced_ends > 0, "{kind}: {tally:?}\n{report}");
    }
}

/// Stops the last baton (not the test's child any more) and waits for it.
pub(crate) async fn stop_last(baton: &mut Proc, pid: u32) {
    support::signal(pid, libc::SIGTERM);
    stopped(baton, pid).await;
    baton.instances_stopped();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_upgrades_under_load_keep_the_instances_and_fail_nothing() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("upgrade");
    let control = dir.path().join("control.sock");
    let state = dir.path().join("state");
    let config = config(&dir);
    let args = [
        "--control",
        control.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let (mut baton, addr) = baton_serve_with(&config, &args).await;
    wait_version(&addr, "v1").await;
    let instances = baton.instance_pids();
    assert_eq!(instances.len(), 2, "{}", baton.dump());

    let load = load(&addr);
    assert!(load.wait_for_requests(200).await);
    let mut old = baton.pid;
    for nth in 1..=10 {
        let (code, out) = upgrade(&control, "30s").await;
        assert_eq!(code, 0, "upgrade {nth}: {out}\n{}", baton.dump());
        let new = new_pid(&mut baton, nth).await;
        assert_ne!(new, old);
        // Drained and gone: no connection was cut at the deadline.
        let line = stopped(&mut baton, old).await;
        assert!(line.contains("INFO"), "{line}");
        assert!(
            load.wait_for_requests(100).await,
            "no progress after upgrade {nth}"
        );
        old = new;
    }
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    streams_moved(&report);
    // The same two instances served throughout: none was started again.
    assert_eq!(baton.instance_pids(), instances, "{}", baton.dump());
    let served: BTreeSet<u32> = report
        .instances
        .keys()
        .map(|k| k.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(served, instances);
    assert!(baton.lines().iter().any(|l| l.contains("instance adopted")));
    // The last one still supervises them: a deploy replaces them.
    let (code, out) = support::run_baton(&[
        "deploy",
        "web",
        "--version",
        "v2",
        "--control",
        control.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    wait_version(&addr, "v2").await;
    stop_last(&mut baton, old).await;
}

/// The old process finishes what it holds — here a request whose body is
/// still arriving — and exits as soon as that is done, long before its 60 s
/// drain deadline. A WebSocket it held is told to go away (1001) at once:
/// its client reconnects, to the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_process_exits_when_its_last_connection_closes() {
    let dir = TempDir::new("upgrade-drain");
    let control = dir.path().join("control.sock");
    let config = config(&dir);
    let (mut baton, addr) =
        baton_serve_with(&config, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;
    let mut ws = support::ws_connect(&addr, "/ws").await;
    support::ws_send_text(&mut ws, "before").await;
    assert_eq!(support::ws_read(&mut ws).await, (1, b"before".to_vec()));
    // An upload on a connection the old process serves (its first request
    // was answered there), half sent.
    let mut upload = TcpStream::connect(&addr).await.unwrap();
    upload
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = upload.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    upload
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();

    let (code, out) = upgrade(&control, "30s").await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    let new = new_pid(&mut baton, 1).await;
    let (op, payload) = support::ws_read(&mut ws).await;
    assert_eq!((op, &payload[..2]), (8, &1001u16.to_be_bytes()[..]));
    drop(ws);
    // New connections reach the new process; the old one still holds the
    // upload.
    assert_eq!(support::get(&addr, "/").await.status, 200);
    assert!(
        !baton
            .lines()
            .iter()
            .any(|l| l.contains("baton::serve: stopped")),
        "{}",
        baton.dump()
    );
    upload.write_all(b"world").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(support::EVENT_TIMEOUT, upload.read_to_end(&mut answer))
        .await
        .expect("the upload was not answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("helloworld"), "{answer}");
    let status = baton.wait_exit().await;
    assert!(status.success(), "{}", baton.dump());
    let first = baton.pid;
    stopped(&mut baton, first).await;
    stop_last(&mut baton, new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades_under_load_leave_the_old_one_serving() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("upgrade-refused");
    let control = dir.path().join("control.sock");
    let fault = dir.path().join("fault");
    let config = config(&dir);
    let good = std::fs::read_to_string(&config).unwrap();
    let mut cmd = tokio::process::Command::new(support::baton());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--control")
        .arg(&control)
        .env("BATON_TEST_UPGRADE_FAULT_FILE", &fault);
    let (mut baton, addr) = Proc::spawn_listening(&mut cmd).await;
    baton.wait_for(" ready").await;
    wait_version(&addr, "v1").await;
    let instances = baton.instance_pids();
    let load = load(&addr);
    assert!(load.wait_for_requests(200).await);

    // A config the new process refuses.
    std::fs::write(
        &config,
        good.replace("instances = 2", "instances = \"two\""),
    )
    .unwrap();
    let (code, out) = upgrade(&control, "30s").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("config or certificates were refused"), "{out}");
    std::fs::write(&config, &good).unwrap();
    assert!(load.wait_for_requests(100).await);

    // A new process that crashes at start.
    std::fs::write(&fault, "crash").unwrap();
    let (code, out) = upgrade(&control, "30s").await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("exited (exit status: 70) before it was ready"),
        "{out}"
    );
    assert!(load.wait_for_requests(100).await);

    // One that never becomes ready; meanwhile a deploy is refused, 75.
    std::fs::write(&fault, "hang").unwrap();
    let hanging = tokio::spawn({
        let control = control.clone();
        async move { upgrade(&control, "3s").await }
    });
    baton.wait_for("taking over the running instances").await;
    let (code, out) = support::run_baton(&[
        "deploy",
        "web",
        "--version",
        "v2",
        "--control",
        control.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("upgrading"), "{out}");
    let (code, out) = hanging.await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready within 3s"), "{out}");
    assert!(load.wait_for_requests(100).await);

    // The old one supervises again: it deploys.
    let (code, out) = support::run_baton(&[
        "deploy",
        "web",
        "--version",
        "v2",
        "--control",
        control.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    wait_version(&addr, "v2").await;
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    assert!(baton.instance_pids().is_superset(&instances));
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

/// Whether `pid` is a live process (not gone, not a zombie left for init).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// `kill -9` of baton: its 3 instances keep serving nobody, unmanaged,
/// until a baton started with the same state adopts them (the same PIDs,
/// the version deployed before the crash); when that one stops, no
/// instance is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_baton_is_restarted_and_adopts_its_instances() {
    let dir = TempDir::new("upgrade-crash");
    let control = dir.path().join("control.sock");
    let state = dir.path().join("state");
    let path = service_config_with(&dir, 3, "600ms");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("timeout = \"40ms\"", "timeout = \"500ms\"");
    std::fs::write(&path, text).unwrap();
    let args = [
        "--control",
        control.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let (mut first, addr) = baton_serve_with(&path, &args).await;
    wait_version(&addr, "v1").await;
    let (code, out) = support::run_baton(&[
        "deploy",
        "web",
        "--version",
        "v2",
        "--control",
        control.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    wait_version(&addr, "v2").await;
    let running: BTreeSet<u32> = first
        .instance_pids()
        .into_iter()
        .filter(|&p| alive(p))
        .collect();
    assert_eq!(running.len(), 3, "{}", first.dump());

    let recorded = std::fs::read_to_string(state.join("instances.json")).unwrap_or_default();
    first.signal(libc::SIGKILL);
    first.wait_exit().await;
    assert!(
        running.iter().all(|&p| alive(p)),
        "the instances outlive a killed baton"
    );

    let (mut second, addr) = baton_serve_with(&path, &args).await;
    let adopted = tokio::time::timeout(
        support::EVENT_TIMEOUT,
        second.wait_count("instance adopted", 3),
    )
    .await;
    assert!(
        adopted.is_ok(),
        "recorded: {recorded}\n{}",
        second.lines().join("\n")
    );
    wait_version(&addr, "v2").await;
    let served = support::get(&addr, "/").await.instance_pid();
    assert!(running.contains(&served), "{served} not in {running:?}");
    assert!(
        !second
            .lines()
            .iter()
            .any(|l| l.contains("instance started")),
        "{}",
        second.dump()
    );
    second.signal(libc::SIGTERM);
    assert!(second.wait_exit().await.success(), "{}", second.dump());
    let left: Vec<u32> = running.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "instances left running: {left:?}");
}
