//! The exposition's format: names, labels, histogram buckets and counts,
//! for a scrape built from known readings (the route and the real proxy
//! are the end-to-end test's).

use std::time::Duration;

use proxy::{MemberReading, PoolReading, QueueStats};

use super::*;

fn pool() -> PoolReading {
    let stats = balance::Stats::new();
    for _ in 0..3 {
        stats.record(Duration::from_millis(1), false);
    }
    stats.record(Duration::from_millis(100), true);
    let member_stats = balance::Stats::new();
    member_stats.record(Duration::from_millis(1), false);
    member_stats.record(Duration::from_millis(1), true);
    PoolReading {
        name: "web".into(),
        stats: stats.snapshot(),
        queue: QueueStats {
            waiting: 2,
            queued: 9,
            full: 3,
            timed_out: 1,
        },
        paused: true,
        held: 3,
        members: vec![
            MemberReading {
                address: "127.0.0.1:8001".into(),
                up: true,
                in_flight: 5,
                stats: member_stats.snapshot(),
                troubles: proxy::Troubles {
                    connect_failures: 4,
                    retries: 2,
                    ejections: 1,
                },
            },
            MemberReading {
                address: "127.0.0.1:8002".into(),
                up: false,
                in_flight: 0,
                stats: balance::Stats::new().snapshot(),
                troubles: proxy::Troubles::default(),
            },
        ],
    }
}

fn scrape() -> String {
    let counters = Counters::default();
    counters.reload(true);
    counters.reload(true);
    counters.reload(false);
    counters.deploy(
        "web",
        "canary",
        DeployOutcome::Deployed,
        Duration::from_secs(3),
    );
    counters.deploy(
        "web",
        "canary",
        DeployOutcome::Deployed,
        Duration::from_secs(40),
    );
    counters.deploy(
        "web",
        "rolling",
        DeployOutcome::Failed,
        Duration::from_millis(500),
    );
    let deploys = counters
        .deploys
        .lock()
        .unwrap()
        .clone()
        .into_iter()
        .collect();
    let route = proxy::RouteCounts {
        counts: {
            let mut c = [[0; 5]; 8];
            c[0][1] = 7; // GET 2xx
            c[2][4] = 1; // POST 5xx
            c
        },
        buckets: {
            let mut b = [0; 21];
            b[3] = 6; // ≤ 512 µs
            b[20] = 2; // slower than 33.5 s
            b
        },
    };
    encode(Scrape {
        pools: vec![pool()],
        routes: vec![RouteReading {
            label: "api".into(),
            pool: "web".into(),
            counts: route,
        }],
        listeners: vec![proxy::ListenerReading {
            name: "http".into(),
            accepted: 40,
            open: 3,
            parked: 2,
            head_timeouts: 5,
            write_timeouts: 1,
        }],
        certs: crate::certs::CertificatesReport {
            certificates: vec![crate::certs::CertificateReport {
                listener: "https".into(),
                source: "file".into(),
                file: Some("/etc/baton/site.pem".into()),
                names: vec!["example.com".into()],
                not_after: None,
                not_after_unix: Some(1_900_000_000),
            }],
            acme: Some(crate::certs::AcmeReport {
                names: vec!["example.com".into()],
                state: "retrying".into(),
                renew_at: None,
                orders: 3,
                issued: 1,
                failures: 2,
                last_error: Some("no".into()),
            }),
        },
        process: process::Process {
            cpu_seconds: Some(1.5),
            resident_bytes: Some(4096),
            virtual_bytes: None,
            open_fds: Some(12),
            max_fds: Some(1024),
            start_time: Some(1.7e9),
        },
        versions: vec![("web".into(), "v2".into())],
        reloads: [
            ("ok", counters.reloads_ok.load(Ordering::Relaxed)),
            ("refused", counters.reloads_refused.load(Ordering::Relaxed)),
        ],
        deploys,
    })
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

#[test]
fn counters_and_gauges_have_their_labels_and_values() {
    let text = scrape();
    has(&text, "# TYPE baton_requests_total counter");
    has(&text, r#"baton_requests_total{pool="web"} 4"#);
    has(&text, r#"baton_request_failures_total{pool="web"} 1"#);
    has(
        &text,
        r#"baton_member_up{pool="web",member="127.0.0.1:8001"} 1"#,
    );
    has(
        &text,
        r#"baton_member_up{pool="web",member="127.0.0.1:8002"} 0"#,
    );
    has(
        &text,
        r#"baton_member_in_flight{pool="web",member="127.0.0.1:8001"} 5"#,
    );
    for line in [
        r#"baton_member_requests_total{pool="web",member="127.0.0.1:8001"} 2"#,
        r#"baton_member_request_failures_total{pool="web",member="127.0.0.1:8001"} 1"#,
        r#"baton_member_connect_failures_total{pool="web",member="127.0.0.1:8001"} 4"#,
        r#"baton_member_retries_total{pool="web",member="127.0.0.1:8001"} 2"#,
        r#"baton_member_ejections_total{pool="web",member="127.0.0.1:8001"} 1"#,
        r#"baton_member_ejections_total{pool="web",member="127.0.0.1:8002"} 0"#,
    ] {
        has(&text, line);
    }
    has(&text, r#"baton_queue_waiting{pool="web"} 2"#);
    has(
        &text,
        r#"baton_queue_refused_total{pool="web",reason="full"} 3"#,
    );
    has(
        &text,
        r#"baton_queue_refused_total{pool="web",reason="timeout"} 1"#,
    );
    has(&text, r#"baton_config_reloads_total{result="ok"} 2"#);
    has(&text, r#"baton_config_reloads_total{result="refused"} 1"#);
    has(
        &text,
        r#"baton_deploys_total{service="web",strategy="canary",outcome="deployed"} 2"#,
    );
    has(
        &text,
        r#"baton_deploys_total{service="web",strategy="rolling",outcome="failed"} 1"#,
    );
    has(&text, "# TYPE baton_service_version_info gauge");
    has(
        &text,
        r#"baton_service_version_info{service="web",version="v2"} 1"#,
    );
}

#[test]
fn routes_pauses_deploy_durations_and_the_process_are_exposed() {
    let text = scrape();
    for line in [
        r#"baton_route_requests_total{route="api",pool="web",method="GET",status="2xx"} 7"#,
        r#"baton_route_requests_total{route="api",pool="web",method="POST",status="5xx"} 1"#,
        r#"baton_route_request_duration_seconds_bucket{route="api",pool="web",le="0.000512"} 6"#,
        r#"baton_route_request_duration_seconds_bucket{route="api",pool="web",le="33.554432"} 6"#,
        r#"baton_route_request_duration_seconds_bucket{route="api",pool="web",le="+Inf"} 8"#,
        r#"baton_route_request_duration_seconds_count{route="api",pool="web"} 8"#,
        r#"baton_pool_paused{pool="web"} 1"#,
        r#"baton_pause_held{pool="web"} 3"#,
        r#"baton_deploy_duration_seconds_bucket{service="web",strategy="canary",outcome="deployed",le="2.5"} 0"#,
        r#"baton_deploy_duration_seconds_bucket{service="web",strategy="canary",outcome="deployed",le="5"} 1"#,
        r#"baton_deploy_duration_seconds_bucket{service="web",strategy="canary",outcome="deployed",le="60"} 2"#,
        r#"baton_deploy_duration_seconds_sum{service="web",strategy="canary",outcome="deployed"} 43.0"#,
        r#"baton_deploy_duration_seconds_count{service="web",strategy="rolling",outcome="failed"} 1"#,
        "process_cpu_seconds_total 1.5",
        r#"baton_certificate_expiry_timestamp_seconds{listener="https",source="file",certificate="/etc/baton/site.pem"} 1900000000"#,
        "baton_acme_orders_total 3",
        r#"baton_listener_connections_accepted_total{listener="http"} 40"#,
        r#"baton_listener_connections_open{listener="http"} 3"#,
        "# TYPE baton_listener_connections_parked gauge",
        r#"baton_listener_connections_parked{listener="http"} 2"#,
        "# TYPE baton_listener_timeouts_total counter",
        r#"baton_listener_timeouts_total{listener="http",limit="head"} 5"#,
        r#"baton_listener_timeouts_total{listener="http",limit="write"} 1"#,
        "baton_acme_certificates_issued_total 1",
        "baton_acme_failures_in_a_row 2",
        "process_resident_memory_bytes 4096",
        "process_open_fds 12",
        "process_max_fds 1024",
        "# TYPE process_start_time_seconds gauge",
    ] {
        has(&text, line);
    }
    // Methods and classes that never happened have no series.
    assert!(!text.contains(r#"method="PUT""#), "{text}");
    assert!(!text.contains("process_virtual_memory_bytes"), "{text}");
}

#[test]
fn the_histogram_is_cumulative_with_exact_power_of_two_bounds() {
    let text = scrape();
    has(&text, "# TYPE baton_request_duration_seconds histogram");
    // 1 ms is below 1,024 µs; 100 ms below 131,072 µs and above 65,536 µs.
    has(
        &text,
        r#"baton_request_duration_seconds_bucket{pool="web",le="0.000512"} 0"#,
    );
    has(
        &text,
        r#"baton_request_duration_seconds_bucket{pool="web",le="0.001024"} 3"#,
    );
    has(
        &text,
        r#"baton_request_duration_seconds_bucket{pool="web",le="0.065536"} 3"#,
    );
    has(
        &text,
        r#"baton_request_duration_seconds_bucket{pool="web",le="0.131072"} 4"#,
    );
    has(
        &text,
        r#"baton_request_duration_seconds_bucket{pool="web",le="33.554432"} 4"#,
    );
    has(
        &text,
        r#"baton_request_duration_seconds_bucket{pool="web",le="+Inf"} 4"#,
    );
    has(
        &text,
        r#"baton_request_duration_seconds_count{pool="web"} 4"#,
    );
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"baton_request_duration_seconds_sum{pool="web"} "#))
        .expect("a _sum line")
        .parse()
        .unwrap();
    // 3 × 1 ms + 100 ms, each within its bucket's width (a quarter).
    assert!((0.103 * 0.8..=0.103 * 1.25).contains(&sum), "{sum}");
}

#[test]
fn the_slowest_bucket_is_only_in_inf() {
    let stats = balance::Stats::new();
    stats.record(Duration::from_secs(3600), false);
    let (buckets, _) = histogram(&stats.snapshot());
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 1);
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by
/// scripts/install-tools) accepts the exposition.
#[test]
fn promtool_accepts_the_exposition() {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-tools installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
