//! `[proxy] workers`: the data plane runs on as many threads as the config
//! says, all of them behind the one listening socket, and what the proxy
//! counts stays exact when requests are spread over them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use crate::support::{self, TempDir, baton_serve_with, field, get, start_hello};

fn config(dir: &TempDir, workers: usize, members: &[&str]) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    let members: Vec<String> = members
        .iter()
        .map(|m| format!("{{ address = \"{m}\" }}"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "[proxy]\nworkers = {workers}\n[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\
             [pool.app]\nmembers = [{}]\n[[route]]\npool = \"app\"\n",
            members.join(", ")
        ),
    )
    .unwrap();
    path
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

fn workers_of(pid: u32) -> usize {
    thread_names(pid)
        .iter()
        .filter(|n| *n == "baton-worker")
        .count()
}

/// `workers = 3` gives the runtime three worker threads; `workers = 1` a
/// single-threaded runtime (no worker thread of its own). A reload that
/// changes the number says that it waits for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_runs_on_the_configured_threads() {
    let (_app, app) = start_hello(&["--app-version", "one"]).await;
    let dir = TempDir::new("workers");
    let path = config(&dir, 3, &[&app]);
    let (mut baton, addr) = baton_serve_with(&path, &[]).await;
    let line = baton.wait_for("data plane threads").await;
    assert_eq!(field(&line, "workers"), Some("3"), "{line}");
    assert_eq!(workers_of(baton.pid), 3, "{:?}", thread_names(baton.pid));
    for _ in 0..6 {
        assert_eq!(get(&addr, "/").await.instance_version(), "one");
    }

    config(&dir, 1, &[&app]);
    baton.signal(libc::SIGHUP);
    baton.wait_for("config reloaded").await;
    let line = baton
        .wait_for("a change of [proxy] workers takes effect at the next restart")
        .await;
    assert_eq!(field(&line, "running"), Some("3"), "{line}");
    assert_eq!(field(&line, "configured"), Some("1"), "{line}");
    assert_eq!(workers_of(baton.pid), 3);
    assert_eq!(get(&addr, "/").await.status, 200);
    drop(baton);

    let (mut single, addr) = baton_serve_with(&path, &[]).await;
    let line = single.wait_for("data plane threads").await;
    assert_eq!(field(&line, "workers"), Some("1"), "{line}");
    assert_eq!(workers_of(single.pid), 0, "{:?}", thread_names(single.pid));
    assert_eq!(get(&addr, "/").await.instance_version(), "one");
}

async fn scrape(control: &Path) -> String {
    let r = get(&format!("unix:{}", control.display()), "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// Four workers (more than the cores of the test machine, so that they
/// are preempted in the middle of requests), mixed load, members swapped by
/// reloads meanwhile: no request fails, and the pool's request counter —
/// incremented by whichever thread ends a request — is exactly the number
/// of requests the clients completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_under_load_fail_nothing_and_count_every_request() {
    let _heavy = support::heavy().await;
    let (_a, a) = start_hello(&["--app-version", "a"]).await;
    let (_b, b) = start_hello(&["--app-version", "b"]).await;
    let dir = TempDir::new("workers-load");
    let path = config(&dir, 4, &[&a]);
    let control = dir.path().join("control.sock");
    let (mut baton, addr) =
        baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 4,
        fresh_workers: 2,
        post_workers: 2,
        slow_workers: 1,
        slow_ms: 50,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(300).await);
    let mut reloads = 0;
    let (a, b) = (a.as_str(), b.as_str());
    for members in [&[a, b][..], &[b], &[a, b]] {
        config(&dir, 4, members);
        baton.signal(libc::SIGHUP);
        reloads += 1;
        baton.wait_count("config reloaded", reloads).await;
        assert!(load.wait_for_requests(1000).await);
    }
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    assert!(report.instances.keys().any(|k| k.starts_with("a/")));
    assert!(report.instances.keys().any(|k| k.starts_with("b/")));

    // The counter is taken when a response's last byte leaves the proxy, so
    // every request the clients completed is in it.
    let text = scrape(&control).await;
    let pool = r#"{pool="app"}"#;
    assert_eq!(
        counter(&text, &format!("baton_requests_total{pool}")),
        report.requests,
        "{text}"
    );
    assert_eq!(
        counter(&text, &format!("baton_request_failures_total{pool}")),
        0
    );
    assert_eq!(
        counter(
            &text,
            &format!("baton_request_duration_seconds_count{pool}")
        ),
        report.requests
    );
}
