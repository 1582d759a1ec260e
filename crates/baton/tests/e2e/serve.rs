//! `baton serve` end to end: real upstreams (`hello` processes), the real
//! binary, config files on disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{Load, LoadConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::support::{self, Proc, TempDir, baton_serve, get, request, start_hello};

fn write(dir: &TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(&path, body).unwrap();
    path
}

const LISTENER: &str = "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n";

/// Every kind of route condition picks the right pool; precedence, 404 and
/// 405 behave as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_pick_the_right_pool() {
    let (_a, a) = start_hello(&["--app-version", "a"]).await;
    let (_b, b) = start_hello(&["--app-version", "b"]).await;
    let (_c, c) = start_hello(&["--app-version", "c"]).await;
    let dir = TempDir::new("routes");
    let path = write(
        &dir,
        &format!(
            r#"{LISTENER}
[pool.a]
members = [{{ address = "{a}" }}]
[pool.b]
members = [{{ address = "{b}" }}]
[pool.c]
members = [{{ address = "{c}" }}]

[[route]]
host = "api.example.com"
path = "/users/{{id}}"
methods = ["GET"]
pool = "b"

[[route]]
host = "*.example.com"
pool = "c"

[[route]]
path_prefix = "/users/"
headers = {{ "x-canary" = "1" }}
pool = "c"

[[route]]
path_regex = "^/v[0-9]+/"
pool = "b"

[[route]]
path_prefix = "/"
pool = "a"
"#
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;
    let version = |r: &support::Response| r.instance_version();
    let cases = [
        ("GET", "api.example.com", "/users/7", "", Some("b")),
        ("GET", "API.EXAMPLE.COM:80", "/users/7", "", Some("b")),
        ("GET", "www.example.com", "/anything", "", Some("c")),
        ("GET", "api.example.com", "/other", "", Some("c")),
        ("GET", "localhost", "/users/7", "x-canary: 1\r\n", Some("c")),
        ("GET", "localhost", "/users/7", "", Some("a")),
        ("GET", "localhost", "/v2/x", "", Some("b")),
        ("GET", "localhost", "/", "", Some("a")),
    ];
    for (method, host, path, extra, want) in cases {
        let r = request(&addr, method, host, path, extra).await;
        // Whatever the app answers (it has no /anything page), the
        // x-instance header proves which pool the proxy chose.
        assert!(
            r.header("x-instance").is_some(),
            "{method} {host}{path}: {r:?}"
        );
        assert_eq!(Some(version(&r).as_str()), want, "{method} {host}{path}");
    }
    // Only the method differs from the exact-host route: 405 with Allow.
    let r = request(&addr, "DELETE", "api.example.com", "/users/7", "").await;
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.header("allow").unwrap().contains("GET"));
}

/// With no catch-all route, an unmatched request gets 404 from the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_gets_404() {
    let (_a, a) = start_hello(&[]).await;
    let dir = TempDir::new("404");
    let path = write(
        &dir,
        &format!(
            "{LISTENER}\n[pool.a]\nmembers = [{{ address = \"{a}\" }}]\n[[route]]\npath_prefix = \"/api/\"\npool = \"a\"\n"
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;
    assert_eq!(get(&addr, "/nope").await.status, 404);
    // /api/ goes to hello, which has no such page: its own 404, with its header.
    let r = get(&addr, "/api/x").await;
    assert_eq!(r.status, 404);
    assert!(r.header("x-instance").is_some());
}

/// Weights 3:1 split requests exactly 3:1 (smooth weighted round-robin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic() {
    let (_a, a) = start_hello(&["--app-version", "a"]).await;
    let (_b, b) = start_hello(&["--app-version", "b"]).await;
    let dir = TempDir::new("weights");
    let path = write(
        &dir,
        &format!(
            "{LISTENER}\n[pool.app]\nmembers = [{{ address = \"{a}\", weight = 3 }}, {{ address = \"{b}\", weight = 1 }}]\n[[route]]\npool = \"app\"\n"
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..200 {
        let r = get(&addr, "/").await;
        assert_eq!(r.status, 200);
        *seen.entry(r.instance_version()).or_default() += 1;
    }
    assert_eq!(seen.get("a"), Some(&150), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&50), "{seen:?}");
}

/// Active checks take a failing member out after `unhealthy_threshold`
/// failures; requests then all go to the healthy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_member_gets_no_traffic() {
    let (_good, good) = start_hello(&["--app-version", "good"]).await;
    let (_bad, bad) = start_hello(&["--app-version", "bad", "--fail-health"]).await;
    let dir = TempDir::new("health");
    let path = write(
        &dir,
        &format!(
            r#"{LISTENER}
[pool.app]
members = [{{ address = "{good}" }}, {{ address = "{bad}" }}]
[pool.app.health]
path = "/healthz"
interval = "100ms"
timeout = "50ms"
healthy_threshold = 2
unhealthy_threshold = 2
[[route]]
pool = "app"
"#
        ),
    );
    let (mut baton, addr) = baton_serve(&path).await;
    baton
        .wait_line("the failing member to be marked unhealthy", |l| {
            l.contains(&bad) && l.contains("to=\"unhealthy\"")
        })
        .await;
    for _ in 0..50 {
        let r = get(&addr, "/").await;
        assert_eq!(r.instance_version(), "good");
    }
}

fn get_load(addr: &str) -> LoadConfig {
    LoadConfig {
        keepalive_workers: 3,
        fresh_workers: 2,
        post_workers: 0,
        slow_workers: 2,
        slow_ms: 100,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    }
}

/// An upstream killed with SIGKILL under GET load costs no client a failed
/// request: unsent requests go elsewhere, broken idempotent ones are sent
/// once more, and the dead member is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_under_load_costs_no_request() {
    let _heavy = support::heavy().await;
    let (victim, v) = start_hello(&["--app-version", "victim"]).await;
    let (_s, s) = start_hello(&["--app-version", "survivor"]).await;
    let dir = TempDir::new("kill9");
    let path = write(
        &dir,
        &format!(
            r#"{LISTENER}
[pool.app]
members = [{{ address = "{v}" }}, {{ address = "{s}" }}]
[pool.app.passive]
consecutive_failures = 1
ejection_time = "30s"
[[route]]
pool = "app"
"#
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;
    let load = Load::start(get_load(&addr));
    assert!(load.wait_for_requests(200).await);
    support::signal(victim.pid, libc::SIGKILL);
    assert!(load.wait_for_requests(2000).await);
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    assert!(report.instances.keys().any(|k| k.starts_with("victim/")));
    drop(victim);
}

fn weighted(a: &str, wa: u32, b: &str, wb: u32) -> String {
    format!(
        "{LISTENER}\n[pool.app]\nmembers = [{{ address = \"{a}\", weight = {wa} }}, {{ address = \"{b}\", weight = {wb} }}]\n[[route]]\npool = \"app\"\n"
    )
}

/// Shifting weights 100/0 → 50/50 → 0/100 by SIGHUP under mixed load
/// (keep-alive, new connections, POST, slow) fails no request; a broken
/// config at reload is refused while traffic continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_shift_by_reload_under_load_fails_nothing() {
    let _heavy = support::heavy().await;
    let (_blue, blue) = start_hello(&["--app-version", "blue"]).await;
    let (_green, green) = start_hello(&["--app-version", "green"]).await;
    let dir = TempDir::new("shift");
    let path = write(&dir, &weighted(&blue, 100, &green, 0));
    let (mut baton, addr) = baton_serve(&path).await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 3,
        fresh_workers: 2,
        post_workers: 2,
        slow_workers: 2,
        slow_ms: 150,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(addr.parse().unwrap())
    });
    assert!(load.wait_for_requests(100).await);
    let mut reloads = 0;
    for (wb, wg) in [(50, 50), (0, 100)] {
        write(&dir, &weighted(&blue, wb, &green, wg));
        baton.signal(libc::SIGHUP);
        reloads += 1;
        baton.wait_count("config reloaded", reloads).await;
        assert!(load.wait_for_requests(500).await);
    }
    // Green only now.
    for _ in 0..10 {
        assert_eq!(get(&addr, "/").await.instance_version(), "green");
    }
    // A broken file is refused; green keeps serving.
    std::fs::write(&path, "[[listener]]\nname = 1\n").unwrap();
    baton.signal(libc::SIGHUP);
    baton
        .wait_for("config refused; the running config keeps serving")
        .await;
    assert!(load.wait_for_requests(100).await);
    assert_eq!(get(&addr, "/").await.instance_version(), "green");

    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    assert!(report.instances.keys().any(|k| k.starts_with("blue/")));
    assert!(report.instances.keys().any(|k| k.starts_with("green/")));
}

/// Slowloris gets 408, an oversized head 431, an oversized body 413, and a
/// malformed request 400 — and the proxy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protections_answer_with_their_status_codes() {
    let (_a, a) = start_hello(&[]).await;
    let dir = TempDir::new("limits");
    let path = write(
        &dir,
        &format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"
header_read_timeout = "300ms"
max_header_bytes = "8KiB"
max_body_bytes = "1KiB"
[pool.app]
members = [{{ address = "{a}" }}]
[[route]]
pool = "app"
"#
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;
    let raw = |bytes: Vec<u8>| {
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let _ = s.write_all(&bytes).await;
            let mut buf = Vec::new();
            tokio::time::timeout(support::EVENT_TIMEOUT, s.read_to_end(&mut buf))
                .await
                .expect("no answer")
                .ok();
            String::from_utf8_lossy(&buf).into_owned()
        }
    };
    let slow = raw(b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec()).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow:?}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let head = raw(big.into_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head:?}");
    let body = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4096\r\n\r\n{}",
        "x".repeat(4096)
    );
    let too_big = raw(body.into_bytes()).await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big:?}");
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n{}\r\n0\r\n\r\n",
        "y".repeat(4096)
    );
    let too_big = raw(chunked.into_bytes()).await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big:?}");
    let garbage = raw(b"NOT HTTP AT ALL\r\n\r\n".to_vec()).await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    assert_eq!(get(&addr, "/").await.status, 200);
}

/// `baton check` lists every error with file:line:column and exits 64; a
/// good file passes.
#[tokio::test]
async fn check_reports_every_error_with_its_position() {
    let dir = TempDir::new("check");
    let path = write(
        &dir,
        "[[listener]]\nname = \"http\"\naddress = \"nowhere\"\n\n[[route]]\npool = \"missing\"\n",
    );
    let mut c = Command::new(support::baton());
    c.arg("check").arg(&path);
    let mut p = Proc::spawn(&mut c);
    let status = p.wait_exit().await;
    p.wait_output_closed().await;
    assert_eq!(status.code(), Some(64), "{}", p.dump());
    let out = p.lines().join("\n");
    let file = path.display().to_string();
    assert!(out.contains(&format!("{file}:3:")), "{out}");
    assert!(out.contains(&format!("{file}:6:")), "{out}");
    // The same file refuses to start the proxy, with the same errors.
    let mut c = Command::new(support::baton());
    c.arg("serve").arg("--config").arg(&path);
    let mut p = Proc::spawn(&mut c);
    assert_eq!(p.wait_exit().await.code(), Some(64));
}

/// A member slower than the pool's header timeout gets 504; a pool whose
/// only member is down answers 502/503 at once, never hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_dead_upstreams_get_gateway_errors() {
    let (_a, a) = start_hello(&[]).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = TempDir::new("gateway");
    let path = write(
        &dir,
        &format!(
            r#"{LISTENER}
[pool.slow]
members = [{{ address = "{a}" }}]
header_timeout = "200ms"
[pool.dead]
members = [{{ address = "{dead}" }}]
[[route]]
path_prefix = "/dead"
pool = "dead"
[[route]]
pool = "slow"
"#
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;
    assert_eq!(get(&addr, "/slow?ms=3000").await.status, 504);
    assert_eq!(get(&addr, "/slow?ms=10").await.status, 200);
    let r = get(&addr, "/dead").await;
    assert!(r.status == 502 || r.status == 503, "{r:?}");
}

/// A supervised service: `baton serve` starts its instances on ports of
/// their own, routes to them once their health check passes, restarts one
/// killed with SIGKILL (traffic keeps flowing), and stops them on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_service_is_run_routed_and_restarted() {
    let dir = TempDir::new("service");
    let hello = support::hello();
    let path = write(
        &dir,
        &format!(
            r#"{LISTENER}
[service.web]
command = ["{}", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v7"
instances = 2
[service.web.health]
path = "/healthz"
interval = "100ms"
timeout = "80ms"
healthy_threshold = 1
unhealthy_threshold = 2
[[route]]
service = "web"
"#,
            hello.display()
        ),
    );
    let (mut baton, addr) = baton_serve(&path).await;
    baton.wait_count("instance joined the pool", 2).await;
    // Joined the snapshot; the proxy's own checks must still pass once.
    let mut pids = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    while pids.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{}", baton.dump());
        let r = get(&addr, "/").await;
        if r.status == 200 {
            assert_eq!(r.instance_version(), "v7");
            pids.insert(r.instance_pid());
        }
    }
    let victim = *pids.iter().next().unwrap();
    support::signal(victim, libc::SIGKILL);
    baton.wait_for("instance died unexpectedly").await;
    baton.wait_count("instance joined the pool", 3).await;
    baton.signal(libc::SIGTERM);
    let status = baton.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", baton.dump());
    assert_eq!(
        baton
            .lines()
            .iter()
            .filter(|l| l.contains("instance left the pool"))
            .count(),
        2
    );
}

/// A state directory that cannot be created stops `baton serve` at start
/// with one message that names the path and the cause (it once said "could
/// not" twice).
#[tokio::test]
async fn an_unusable_state_directory_is_named_once_with_its_cause() {
    let dir = TempDir::new("bad-state");
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[pool.app]\nmembers = [{ address = \"127.0.0.1:9\" }]\n\n[[route]]\npool = \"app\"\n",
    )
    .unwrap();
    // A regular file where the directory should be: it cannot be created.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let state = blocker.join("state");
    let (code, out) = support::run_baton(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    let expected = format!("baton: could not create {}: ", state.display());
    assert!(out.contains(&expected), "{out}");
    assert_eq!(out.matches("could not").count(), 1, "{out}");
}
