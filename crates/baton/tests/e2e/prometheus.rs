//! A real Prometheus server (Debian's `prometheus`, installed by
//! scripts/install-tools) scrapes `baton serve`'s admin listener every
//! second, with the bearer token, while a canary deploy runs under load.
//! Prometheus's own HTTP API then has the request counter, the duration
//! histogram and the deploy's outcome with their labels; `promtool check
//! metrics` accepts the exposition; the load saw no failure.

use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{Load, LoadConfig};
use tokio::process::Command;

use crate::support::{self, EVENT_TIMEOUT, Proc, TempDir, request, wait_version};

const TOKEN: &str = "prometheus-scrape-token-5e0c2f";

/// Starts Prometheus scraping `target` (with the token in `token_file`)
/// every second; returns it with the address of its HTTP API.
async fn prometheus(dir: &TempDir, target: &str, token_file: &std::path::Path) -> (Proc, String) {
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: baton
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {}
    static_configs:
      - targets: ["{target}"]
"#,
            token_file.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0");
    let mut p = Proc::spawn(&mut cmd);
    let line = p.wait_for("msg=\"Listening on\"").await;
    let addr = line.rsplit("address=").next().unwrap().trim().to_owned();
    // Its API answers 503 until then.
    p.wait_for("Server is ready to receive web requests").await;
    (p, addr)
}

/// Percent-encodes a PromQL query for a URL's query string.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query on Prometheus's HTTP API.
async fn query(prometheus: &str, promql: &str) -> Vec<serde_json::Value> {
    let r = support::get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .await;
    assert_eq!(r.status, 200, "{promql}: {}", r.body);
    let body = match r.header("transfer-encoding") {
        Some(te) if te.eq_ignore_ascii_case("chunked") => support::dechunk(&r.body),
        _ => r.body,
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Waits (bounded) until `promql` has a result; returns it. Prometheus
/// cannot tell when it scraped, so its API is asked again on each
/// scrape's interval.
async fn wait_series(prometheus: &str, promql: &str) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let result = query(prometheus, promql).await;
        if !result.is_empty() {
            return result;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never had {promql}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The 5xx answers of every route, as Prometheus last scraped them.
async fn server_errors(prometheus: &str) -> f64 {
    let result = query(
        prometheus,
        r#"sum(baton_route_requests_total{status="5xx"})"#,
    )
    .await;
    result.first().map_or(0.0, |r| {
        r["value"][1].as_str().unwrap().parse::<f64>().unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_canary_deploy_under_load() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("prometheus");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let path = support::canary_with_admin(&dir, &token_file, "1500ms");
    let (mut baton, addr) = support::baton_serve(&path).await;
    let admin = support::admin_addr(&mut baton).await;
    wait_version(&addr, "v1").await;
    let (prom, api) = prometheus(&dir, &admin, &token_file).await;
    // The first scrape succeeded: the token was accepted.
    let up = wait_series(&api, r#"up{job="baton"} == 1"#).await;
    assert_eq!(up.len(), 1, "{up:?}\n{}", prom.dump());
    let failed_at_start = server_errors(&api).await;

    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(100).await);
    let control = format!("http://{admin}");
    let deploy = [
        "deploy",
        "web",
        "--version",
        "v2",
        "--control",
        &control,
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let (code, out) = support::run_baton(&deploy).await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    assert!(out.contains("step 20% passed"), "{out}");
    wait_version(&addr, "v2").await;

    // What Prometheus stored, with the labels baton gave it.
    let deployed = wait_series(
        &api,
        r#"baton_deploys_total{job="baton",service="web",strategy="canary",outcome="deployed"} == 1"#,
    )
    .await;
    assert_eq!(deployed.len(), 1, "{deployed:?}");
    let version = wait_series(
        &api,
        r#"baton_service_version_info{service="web",version="v2"}"#,
    )
    .await;
    assert_eq!(version.len(), 1, "{version:?}");
    let requests = wait_series(&api, r#"baton_requests_total{pool="service:web"} > 100"#).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let rate = wait_series(
        &api,
        r#"rate(baton_requests_total{pool="service:web"}[5s]) > 0"#,
    )
    .await;
    assert_eq!(rate.len(), 1, "{rate:?}");
    let p99 = wait_series(
        &api,
        r#"histogram_quantile(0.99, rate(baton_request_duration_seconds_bucket{pool="service:web"}[5s])) > 0"#,
    )
    .await;
    assert_eq!(p99.len(), 1, "{p99:?}");
    // By route (the only route, `#1`), method and status class; the
    // route's duration histogram; the deploy's duration; the process.
    let by_route = wait_series(
        &api,
        r##"baton_route_requests_total{route="#1",pool="service:web",method="GET",status="2xx"} > 50"##,
    )
    .await;
    assert_eq!(by_route.len(), 1, "{by_route:?}");
    let posts = wait_series(
        &api,
        r##"baton_route_requests_total{route="#1",method="POST",status="2xx"} > 0"##,
    )
    .await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    // The 503s of the start (before an instance was in the pool) are all.
    let failed = server_errors(&api).await;
    assert_eq!(failed, failed_at_start, "5xx during the deploy");
    let route_p99 = wait_series(
        &api,
        r##"histogram_quantile(0.99, rate(baton_route_request_duration_seconds_bucket{route="#1"}[5s])) > 0"##,
    )
    .await;
    assert_eq!(route_p99.len(), 1, "{route_p99:?}");
    let took = wait_series(
        &api,
        r#"baton_deploy_duration_seconds_count{service="web",strategy="canary",outcome="deployed"} == 1"#,
    )
    .await;
    assert_eq!(took.len(), 1, "{took:?}");
    // The fresh-connection worker opened one connection per request; the
    // keep-alive ones stay open.
    let accepted = wait_series(
        &api,
        r#"baton_listener_connections_accepted_total{listener="http"} > 50"#,
    )
    .await;
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let open = wait_series(
        &api,
        r#"baton_listener_connections_open{listener="http"} >= 2"#,
    )
    .await;
    assert_eq!(open.len(), 1, "{open:?}");
    let cpu = wait_series(&api, r#"process_cpu_seconds_total{job="baton"} > 0"#).await;
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    let buckets = query(
        &api,
        r#"baton_request_duration_seconds_bucket{pool="service:web"}"#,
    )
    .await;
    assert!(
        buckets.iter().any(|b| b["metric"]["le"] == "+Inf"),
        "{buckets:?}"
    );

    let report = load.stop().await;
    assert_eq!(report.failures, 0, "{report:?}");
    // The exposition itself, as Prometheus read it.
    let r = request(
        &admin,
        "GET",
        "admin",
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
    crate::metrics::promtool_check(&r.body).await;
    drop(prom);
}
