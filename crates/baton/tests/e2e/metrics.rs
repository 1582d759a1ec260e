//! `GET /metrics` on the control socket of a real `baton serve`: after
//! traffic, a deploy and a reload, the exposition has the pool's request
//! counter and duration histogram, its member, the deploy and the version,
//! with their labels and values; `promtool check metrics` accepts it. An
//! idle keep-alive connection is counted as parked.

use std::path::Path;

use crate::support::{self, EVENT_TIMEOUT, TempDir, baton_serve_with, get, wait_version};

const POOL: &str = "service:web";

fn config(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{}", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
instances = 1
ready_timeout = "5s"
[service.web.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 2
unhealthy_threshold = 2

[[route]]
service = "web"
"#,
            support::hello().display()
        ),
    )
    .unwrap();
    path
}

async fn scrape(control: &Path) -> String {
    let r = get(&format!("unix:{}", control.display()), "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body
}

/// The value of the sample `name{labels}` (labels as written), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn requests(text: &str) -> f64 {
    sample(text, &format!(r#"baton_requests_total{{pool="{POOL}"}}"#)).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_deploys_and_reloads() {
    let dir = TempDir::new("metrics");
    let control = dir.path().join("control.sock");
    let path = config(&dir);
    let (baton, addr) = baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;

    // Ten requests: the counter and the histogram's count grow by ten. A
    // request is counted when the proxy has sent its body's end, which may
    // be just after the client read it: wait (bounded) for the counts.
    let before = scrape(&control).await;
    for _ in 0..10 {
        assert_eq!(get(&addr, "/").await.status, 200);
    }
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let after = loop {
        let text = scrape(&control).await;
        if requests(&text) >= requests(&before) + 10.0 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the requests were never counted:\n{text}"
        );
    };
    assert_eq!(requests(&after), requests(&before) + 10.0, "{after}");
    let count = format!(r#"baton_request_duration_seconds_count{{pool="{POOL}"}}"#);
    let inf = format!(r#"baton_request_duration_seconds_bucket{{pool="{POOL}",le="+Inf"}}"#);
    let failures = format!(r#"baton_request_failures_total{{pool="{POOL}"}}"#);
    assert_eq!(sample(&after, &count), Some(requests(&after)), "{after}");
    assert_eq!(sample(&after, &inf), Some(requests(&after)), "{after}");
    // The 503s before the instance joined the pool failed; these did not.
    assert_eq!(
        sample(&after, &failures),
        sample(&before, &failures),
        "{after}"
    );
    // Loopback requests to hello end well within 33 s: all in a finite bucket.
    let top = format!(r#"baton_request_duration_seconds_bucket{{pool="{POOL}",le="33.554432"}}"#);
    assert_eq!(sample(&after, &top), Some(requests(&after)), "{after}");
    // The one member, up, with nothing in flight now.
    let up: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("baton_member_up{"))
        .collect();
    assert_eq!(up.len(), 1, "{after}");
    assert!(
        up[0].starts_with(&format!(
            r#"baton_member_up{{pool="{POOL}",member="127.0.0.1:"#
        )) && up[0].ends_with("} 1"),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            r#"baton_service_version_info{service="web",version="v1"}"#
        ),
        Some(1.0),
        "{after}"
    );

    // A deploy and a reload are counted; the version follows.
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
    let (code, out) = support::run_baton(&["reload", "--control", control.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    let text = scrape(&control).await;
    for (series, value) in [
        (
            r#"baton_deploys_total{service="web",strategy="rolling",outcome="deployed"}"#,
            1.0,
        ),
        (
            r#"baton_service_version_info{service="web",version="v2"}"#,
            1.0,
        ),
        (r#"baton_config_reloads_total{result="ok"}"#, 1.0),
        (r#"baton_config_reloads_total{result="refused"}"#, 0.0),
        (&format!(r#"baton_queue_waiting{{pool="{POOL}"}}"#), 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            r#"baton_service_version_info{service="web",version="v1"}"#
        ),
        None,
        "{text}"
    );
    promtool_check(&text).await;
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by
/// scripts/install-tools) accepts `text`.
pub(crate) async fn promtool_check(text: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-tools installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(EVENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("promtool timed out")
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pool of a live member and a dead one (nothing listens on its port),
/// with passive ejection after two failures in a row: every request
/// succeeds (a request whose connect failed is sent to the other member),
/// and the dead member's connect failures, retries and ejection are
/// counted — none on the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_connect_failures_retries_and_ejections_are_counted() {
    let dir = TempDir::new("metrics-members");
    let control = dir.path().join("control.sock");
    let (_hello, live) = support::start_hello(&["--app-version", "v1"]).await;
    let dead = format!("127.0.0.1:{}", testkit::free_port());
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
address = "127.0.0.1:0"

[pool.app]
members = [{{ address = "{live}" }}, {{ address = "{dead}" }}]

[pool.app.passive]
consecutive_failures = 2
ejection_time = "1m"

[[route]]
pool = "app"
"#
        ),
    )
    .unwrap();
    let (_baton, addr) = baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    for _ in 0..20 {
        assert_eq!(get(&addr, "/").await.status, 200);
    }
    // Counted before the retried request was answered.
    let text = scrape(&control).await;
    let member = |name: &str, address: &str| {
        let series = format!(r#"baton_member_{name}_total{{pool="app",member="{address}"}}"#);
        sample(&text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(member("connect_failures", &dead), 2.0, "{text}");
    assert_eq!(member("retries", &dead), 2.0, "{text}");
    assert_eq!(member("ejections", &dead), 1.0, "{text}");
    for name in ["connect_failures", "retries", "ejections"] {
        assert_eq!(member(name, &live), 0.0, "{text}");
    }
    let up = format!(r#"baton_member_up{{pool="app",member="{dead}"}}"#);
    assert_eq!(sample(&text, &up), Some(0.0), "{text}");
}

/// Sends `GET /` on `stream` (kept alive) and reads the answer's head and
/// its body (`Content-Length`); returns the status line.
async fn keepalive_get(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer ended");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("a Content-Length");
        if buf.len() >= end + 4 + length {
            return text.lines().next().unwrap().to_owned();
        }
    }
}

/// Scrapes until the listener's parked gauge is `want` (bounded).
async fn wait_parked(control: &Path, want: f64) {
    let series = r#"baton_listener_connections_parked{listener="http"}"#;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let text = scrape(control).await;
        if sample(&text, series) == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never became {want}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An idle keep-alive connection is counted as parked once the proxy has
/// parked it (after a second idle), and no longer once it is used again;
/// it serves its next request in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_counted_as_parked() {
    let dir = TempDir::new("metrics-parked");
    let control = dir.path().join("control.sock");
    let path = config(&dir);
    let (baton, addr) = baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    wait_version(&addr, "v1").await;

    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(keepalive_get(&mut stream).await.contains(" 200 "));
    wait_parked(&control, 1.0).await;
    let text = scrape(&control).await;
    let open = sample(&text, r#"baton_listener_connections_open{listener="http"}"#);
    assert!(open >= Some(1.0), "{text}");
    // Used again, it is served; parked again once idle; closed by the
    // client, it is counted no more.
    assert!(keepalive_get(&mut stream).await.contains(" 200 "));
    wait_parked(&control, 1.0).await;
    drop(stream);
    wait_parked(&control, 0.0).await;
    drop(baton);
}

/// A client that sends no request head is answered 408 once
/// `header_read_timeout` has passed, and counted: the scrape says which
/// limit ended how many clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_a_time_limit_ends_are_counted() {
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new("metrics-timeouts");
    let control = dir.path().join("control.sock");
    let path = config(&dir);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\nheader_read_timeout = \"300ms\"\n",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let (baton, addr) = baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    let head = r#"baton_listener_timeouts_total{listener="http",limit="head"}"#;
    let write = r#"baton_listener_timeouts_total{listener="http",limit="write"}"#;
    let before = scrape(&control).await;
    assert_eq!(sample(&before, head), Some(0.0), "{before}");
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(EVENT_TIMEOUT, silent.read_to_end(&mut answer))
        .await
        .expect("the silent client was not answered")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 408"), "{answer:?}");
    let after = scrape(&control).await;
    assert_eq!(sample(&after, head), Some(1.0), "{after}");
    assert_eq!(sample(&after, write), Some(0.0), "{after}");
    drop(baton);
}
