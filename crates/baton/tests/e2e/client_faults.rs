//! Client faults are the client's, never the member's: malformed chunked
//! bodies and uploads abandoned midway (raw sockets) eject no member of a
//! pool with `consecutive_failures = 3`, are logged as 400 and 499, and a
//! canary deploy of a healthy version under a stream of abandoned uploads
//! is neither rolled back nor reports a failed request — while a member
//! that really hangs up still gets ejected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use loadgen::{Load, LoadConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, EVENT_TIMEOUT, Proc, TempDir, baton_serve, start_hello};

/// More of a body than baton reads before it picks a member (16 KiB by
/// default): the faults below break off an exchange with the member.
const PAST_READ_AHEAD: usize = 20_000;

/// A chunked upload whose second chunk size is not hexadecimal.
fn malformed() -> Vec<u8> {
    let mut upload =
        b"POST /echo HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    upload.extend_from_slice(format!("{PAST_READ_AHEAD:x}\r\n").as_bytes());
    upload.extend_from_slice(&[b'x'; PAST_READ_AHEAD]);
    upload.extend_from_slice(b"\r\nZZ\r\nmore\r\n");
    upload
}

/// Sends a POST announcing 100 kB, 20 kB of it, and hangs up.
async fn abandon_upload(addr: &str, host: &str) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b'x'; PAST_READ_AHEAD]).await.unwrap();
    drop(s);
}

/// The statuses of the access log's JSON lines for `POST /echo` so far.
fn upload_statuses(baton: &Proc) -> Vec<u64> {
    baton
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("[out] "))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["method"] == "POST" && v["uri"] == "/echo")
        .filter_map(|v| v["status"].as_u64())
        .collect()
}

/// Waits until the access log holds `n` lines for `POST /echo`, and
/// returns their statuses.
async fn wait_uploads(baton: &mut Proc, n: usize) -> Vec<u64> {
    baton.wait_count("\"uri\":\"/echo\"", n).await;
    upload_statuses(baton)
}

/// A member that reads what it is sent and hangs up without answering:
/// a real upstream failure. Returns its address.
async fn hanging_up_member() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_abandoned_uploads_eject_no_member() {
    let (_a, a) = start_hello(&["--app-version", "a"]).await;
    let (_b, b) = start_hello(&["--app-version", "b"]).await;
    let broken = hanging_up_member().await;
    let dir = TempDir::new("client-faults");
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[access_log]
format = "json"

[pool.app]
members = [{{ address = "{a}" }}, {{ address = "{b}" }}]
[pool.app.passive]
consecutive_failures = 3
ejection_time = "60s"

[pool.control]
members = [{{ address = "{broken}" }}, {{ address = "{a}" }}]
[pool.control.passive]
consecutive_failures = 3
ejection_time = "60s"

[[route]]
host = "app.test"
pool = "app"

[[route]]
host = "control.test"
pool = "control"
"#
        ),
    )
    .unwrap();
    let (mut baton, addr) = baton_serve(&path).await;

    // Twelve client faults, alternating over both members: six each, twice
    // the threshold.
    let mut answers = Vec::new();
    let malformed = malformed();
    for _ in 0..6 {
        let r = tokio::time::timeout(EVENT_TIMEOUT, support::exchange(&addr, &malformed))
            .await
            .expect("malformed upload unanswered");
        answers.push(r);
        abandon_upload(&addr, "app.test").await;
    }
    let statuses = wait_uploads(&mut baton, 12).await;
    let ejected: Vec<String> = baton
        .lines()
        .into_iter()
        .filter(|l| l.contains("member ejected"))
        .collect();
    assert!(ejected.is_empty(), "client faults ejected: {ejected:?}");
    for r in &answers {
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    }
    let (mut bad, mut gone) = (0, 0);
    for s in &statuses {
        match s {
            400 => bad += 1,
            499 => gone += 1,
            _ => panic!("an upload logged {s}: {statuses:?}\n{}", baton.dump()),
        }
    }
    assert_eq!((bad, gone), (6, 6), "{statuses:?}");
    // Both members still serve.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let r = support::request(&addr, "GET", "app.test", "/", "").await;
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.instance_version());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The control: a member that hangs up on uploads is ejected by the
    // same uploads, sent whole.
    let upload = b"POST /echo HTTP/1.1\r\nHost: control.test\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello";
    for _ in 0..6 {
        let _ = tokio::time::timeout(EVENT_TIMEOUT, support::exchange(&addr, upload))
            .await
            .expect("control upload unanswered");
    }
    let line = baton.wait_for("member ejected").await;
    assert!(line.contains(&broken), "{line}");
    assert!(!line.contains(&format!("member={a}")), "{line}");
}

/// A supervised `web` of `baton demo-app` instances with a canary strategy.
fn canary_config(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{baton}", "demo-app", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
instances = 2
ready_timeout = "3s"

[service.web.passive]
consecutive_failures = 3

[service.web.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 2
unhealthy_threshold = 2

[service.web.canary]
steps = [20, 100]
pause = "500ms"
min_requests = 30
max_error_rate = 0.01
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_under_abandoned_uploads_is_not_rolled_back() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("client-faults-canary");
    let control = dir.path().join("control.sock");
    let path = canary_config(&dir);
    let (_baton, addr) =
        support::baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    support::wait_version(&addr, "v1").await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(200).await);
    // About a hundred abandoned uploads a second, through the whole deploy.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let aborter = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(10));
            let mut sent = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.changed() => return sent,
                    _ = pace.tick() => {
                        abandon_upload(&addr, "web.test").await;
                        sent += 1;
                    }
                }
            }
        })
    };
    let (code, out) = support::run_baton(&[
        "deploy",
        "web",
        "--control",
        control.to_str().unwrap(),
        "--version",
        "v2",
        "--strategy",
        "canary",
    ])
    .await;
    stop.send(true).unwrap();
    let aborted = aborter.await.unwrap();
    let report = load.stop().await;
    eprintln!("{out}\n{report}\n{aborted} uploads abandoned");
    assert!(aborted >= 20, "{aborted} uploads abandoned");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("step 20% passed"), "{out}");
    assert!(out.contains(", failed: 0,"), "{out}");
    report.assert_no_failures();
}
