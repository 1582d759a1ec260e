//! The config file as the desired state: a reload (SIGHUP or `baton
//! reload`) starts a new service and routes it once ready, deploys a
//! service whose command changed, scales one 2 → 5 → 2, and removes one
//! (its route first, then its instances drain) — with failure-counting load
//! on every service that stays, and on the host of the one that comes and
//! goes (whose requests fall through to the catch-all route when it is not
//! routed). A reload that removes every service, or changes one being
//! deployed, is refused and changes nothing. `baton diff` and `baton apply`
//! against the live config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loadgen::{Load, LoadConfig};

use crate::support::{self, EVENT_TIMEOUT, Proc, TempDir, baton_serve_with, wait_version};

/// How the test's config looks at one step.
#[derive(Clone)]
struct Desired {
    /// `web`'s instances.
    instances: u32,
    /// Appended to `web`'s `{version}` in its command: a new command.
    suffix: &'static str,
    /// Whether the service `api` (host `api.test`) exists.
    api: bool,
}

fn render(script: &Path, d: &Desired) -> String {
    // Probes generous enough for a busy machine: a member the proxy's own
    // checks declare down for a stalled probe is not what these tests are
    // about (a 40 ms timeout took every member down on a loaded machine).
    let health = "path = \"/healthz\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 3\n";
    let mut text = format!(
        r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{script}", "127.0.0.1:{{port}}", "{{version}}{suffix}"]
version = "w1"
instances = {instances}
ready_timeout = "5s"
[service.web.health]
{health}
"#,
        script = script.display(),
        suffix = d.suffix,
        instances = d.instances,
    );
    if d.api {
        text += &format!(
            r#"
[service.api]
command = ["{script}", "127.0.0.1:{{port}}", "{{version}}"]
version = "a1"
ready_timeout = "5s"
[service.api.health]
{health}
[[route]]
host = "api.test"
service = "api"
"#,
            script = script.display(),
        );
    }
    text += "\n[[route]]\nservice = \"web\"\n";
    text
}

/// Waits until ten requests in a row with `Host: host` are answered by
/// `version`.
async fn wait_host_version(addr: &str, host: &str, version: &str) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{host}: {version} never answered alone"
        );
        let r = support::request(addr, "GET", host, "/", "").await;
        in_a_row = if r.status == 200 && r.instance_version() == version {
            in_a_row + 1
        } else {
            0
        };
    }
}

async fn baton(args: &[&str]) -> (i32, String) {
    support::run_baton(args).await
}

async fn status(control: &str) -> serde_json::Value {
    let (code, out) = baton(&["status", "--json", "--control", control]).await;
    assert_eq!(code, 0, "{out}");
    let mut status: serde_json::Value =
        serde_json::from_str(out.trim_start_matches("[out] ")).unwrap();
    status["services"].take()
}

fn service<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
}

/// Writes `d` and reloads through `baton reload`; returns its output.
async fn reload(config: &Path, script: &Path, control: &str, d: &Desired) -> String {
    std::fs::write(config, render(script, d)).unwrap();
    let (code, out) = baton(&["reload", "--control", control]).await;
    assert_eq!(code, 0, "{out}");
    out
}

struct Running {
    baton: Proc,
    addr: String,
    control: String,
    config: PathBuf,
    script: PathBuf,
    _dir: TempDir,
}

async fn start(name: &str, d: &Desired) -> Running {
    let dir = TempDir::new(name);
    let script = support::app_script(&dir);
    let config = dir.path().join("baton.toml");
    std::fs::write(&config, render(&script, d)).unwrap();
    let control = dir.path().join("control.sock");
    let state = dir.path().join("state");
    let (baton, addr) = baton_serve_with(
        &config,
        &[
            "--control",
            control.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    )
    .await;
    wait_version(&addr, "w1").await;
    Running {
        baton,
        addr,
        control: control.to_str().unwrap().to_owned(),
        config,
        script,
        _dir: dir,
    }
}

fn load(addr: &str, host: Option<&str>, workers: usize) -> Load {
    Load::start(LoadConfig {
        host_header: host.map(str::to_owned),
        keepalive_workers: workers,
        fresh_workers: workers,
        post_workers: workers,
        slow_workers: workers,
        slow_ms: 200,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_the_file_on_reload_under_load() {
    let _heavy = support::heavy().await;
    let mut d = Desired {
        instances: 2,
        suffix: "",
        api: false,
    };
    let mut r = start("desired-reload", &d).await;
    let (addr, control) = (r.addr.clone(), r.control.clone());
    let web = load(&addr, None, 2);
    // `api.test` falls through to `web` until `api` is routed, and again
    // after it is removed: every one of these must succeed too.
    let api = load(&addr, Some("api.test"), 1);
    assert!(web.wait_for_requests(200).await);

    // A new service: started, routed once ready (never an empty pool).
    d.api = true;
    let out = reload(&r.config, &r.script, &control, &d).await;
    assert!(out.contains("api: added"), "{out}");
    r.baton.wait_for("service added and ready").await;
    wait_host_version(&addr, "api.test", "a1").await;
    assert!(api.wait_for_requests(200).await);

    // A new command for web: a (rolling) deploy of the version serving.
    d.suffix = ".b";
    let out = reload(&r.config, &r.script, &control, &d).await;
    assert!(out.contains("web: changed"), "{out}");
    r.baton.wait_for("deploy complete").await;
    wait_version(&addr, "w1.b").await;
    let s = status(&control).await;
    let history = service(&s, "web").unwrap()["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last["version"].as_str(), last["outcome"].as_str()),
        (Some("w1"), Some("deployed"))
    );

    // Scaling 2 → 5 → 2, the second by SIGHUP.
    d.instances = 5;
    reload(&r.config, &r.script, &control, &d).await;
    r.baton.wait_count("service scaled", 1).await;
    let s = status(&control).await;
    assert_eq!(
        service(&s, "web").unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert!(web.wait_for_requests(200).await);
    d.instances = 2;
    std::fs::write(&r.config, render(&r.script, &d)).unwrap();
    r.baton.signal(libc::SIGHUP);
    r.baton.wait_count("service scaled", 2).await;
    let s = status(&control).await;
    assert_eq!(
        service(&s, "web").unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(web.wait_for_requests(200).await);

    // Removing api: out of the routes first (its host falls through to
    // web), then its instances finish their requests and stop.
    assert!(api.wait_for_requests(100).await);
    d.api = false;
    let out = reload(&r.config, &r.script, &control, &d).await;
    assert!(out.contains("api: removed"), "{out}");
    r.baton.wait_for("service removed").await;
    wait_host_version(&addr, "api.test", "w1.b").await;
    let s = status(&control).await;
    assert!(service(&s, "api").is_none(), "{s}");
    assert!(web.wait_for_requests(200).await);
    assert!(api.wait_for_requests(100).await);

    let web = web.stop().await;
    let api = api.stop().await;
    eprintln!("web: {web}\napi.test: {api}");
    web.assert_no_failures();
    api.assert_no_failures();
    assert!(api.instances.keys().any(|k| k.starts_with("a1/")), "{api}");
    // Out of the pool, requests finished, then SIGTERM.
    assert!(support::assert_no_sigterm_in_flight(&r.baton) > 0);
    r.baton.signal(libc::SIGTERM);
    assert!(r.baton.wait_exit().await.success(), "{}", r.baton.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reloads_change_nothing() {
    let d = Desired {
        instances: 1,
        suffix: "",
        api: false,
    };
    let mut r = start("desired-refused", &d).await;
    let control = r.control.clone();

    // Every service gone: refused unless forced.
    let no_services = "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\n[pool.p]\nmembers = [{ address = \"127.0.0.1:9\" }]\n\n[[route]]\npool = \"p\"\n";
    std::fs::write(&r.config, no_services).unwrap();
    let (code, out) = baton(&["reload", "--control", &control]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removes every service (web)"), "{out}");
    assert!(out.contains("--force"), "{out}");
    wait_version(&r.addr, "w1").await;

    // A change to a service while it is being deployed: refused (75).
    std::fs::write(&r.config, render(&r.script, &d)).unwrap();
    let mut deploying = Proc::spawn(tokio::process::Command::new(support::baton()).args([
        "deploy",
        "web",
        "--version",
        "w2-broken",
        "--control",
        &control,
    ]));
    r.baton.wait_for("deploy started").await;
    let changed = Desired {
        suffix: ".c",
        ..d.clone()
    };
    std::fs::write(&r.config, render(&r.script, &changed)).unwrap();
    let (code, out) = baton(&["reload", "--control", &control]).await;
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("\"web\" while it is being deployed"), "{out}");
    // The broken version fails and is rolled back; w1 serves throughout.
    assert_eq!(deploying.wait_exit().await.code(), Some(1));
    wait_version(&r.addr, "w1").await;
    // Nothing of the refused reload was applied: the same file now is a
    // change, deployed.
    let (code, out) = baton(&["reload", "--control", &control]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("web: changed"), "{out}");
    r.baton.wait_for("deploy complete").await;
    wait_version(&r.addr, "w1.c").await;
    r.baton.signal(libc::SIGTERM);
    assert!(r.baton.wait_exit().await.success(), "{}", r.baton.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_and_apply_with_revisions_under_load() {
    let _heavy = support::heavy().await;
    let d = Desired {
        instances: 1,
        suffix: "",
        api: false,
    };
    let mut r = start("desired-apply", &d).await;
    let (addr, control) = (r.addr.clone(), r.control.clone());
    let config = r.config.to_str().unwrap().to_owned();
    let original = std::fs::read_to_string(&r.config).unwrap();
    let web = load(&addr, None, 1);
    assert!(web.wait_for_requests(100).await);

    // The file it runs: nothing to change, exit 0.
    let (code, out) = baton(&["diff", &config, "--control", &control]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no changes"), "{out}");

    // Another file: api added, web scaled. Exit 1, and the JSON says what.
    let next = r.config.with_file_name("next.toml");
    let wanted = Desired {
        instances: 2,
        api: true,
        ..d.clone()
    };
    std::fs::write(&next, render(&r.script, &wanted)).unwrap();
    let next = next.to_str().unwrap().to_owned();
    let (code, out) = baton(&["diff", &next, "--control", &control]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("+ api: added: started, routed once ready"),
        "{out}"
    );
    assert!(
        out.contains("~ web: changed: scale 1 → 2 instances"),
        "{out}"
    );
    assert!(out.contains("instances: 1 → 2"), "{out}");
    assert!(
        out.contains("+ host api.test on http → service api"),
        "{out}"
    );
    let (code, out) = baton(&["diff", &next, "--json", "--control", &control]).await;
    assert_eq!(code, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim_start_matches("[out] ")).unwrap();
    assert_eq!(json["changed"], true);
    let revision = json["revision"].as_str().unwrap().to_owned();
    assert_eq!(revision.len(), 16, "{json}");
    let services = json["diff"]["services"].as_array().unwrap();
    assert_eq!(services[0]["name"], "web");
    assert_eq!(services[0]["plan"]["scale"], serde_json::json!([1, 2]));
    assert_eq!(services[1]["name"], "api");
    assert_eq!(services[1]["change"], "added");
    assert_eq!(json["diff"]["routes"][0]["change"], "added");

    // A bad file: every error at file:line:column, exit 64; also for apply.
    let bad = r.config.with_file_name("bad.toml");
    std::fs::write(
        &bad,
        original.replace("instances = 1", "instances = 0\nbogus = 1"),
    )
    .unwrap();
    let bad = bad.to_str().unwrap().to_owned();
    let (code, out) = baton(&["diff", &bad, "--control", &control]).await;
    assert_eq!(code, 64, "{out}");
    assert!(out.contains(&format!("{bad}:8:13")), "{out}");
    assert!(out.contains(&format!("{bad}:9:1")), "{out}");
    let (code, _) = baton(&["apply", &bad, "--control", &control]).await;
    assert_eq!(code, 64);

    // A stale revision: refused, nothing changed (file, routes, services).
    let (code, out) = baton(&[
        "apply",
        &next,
        "--revision",
        "0123456789abcdef",
        "--control",
        &control,
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the running config changed since revision 0123456789abcdef"),
        "{out}"
    );
    assert!(out.contains("nothing was applied"), "{out}");
    // A config the engine refuses (no service left): nothing changed either.
    let none = r.config.with_file_name("none.toml");
    std::fs::write(&none, "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\n[pool.p]\nmembers = [{ address = \"127.0.0.1:9\" }]\n\n[[route]]\npool = \"p\"\n").unwrap();
    let (code, out) = baton(&["apply", none.to_str().unwrap(), "--control", &control]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("removes every service"), "{out}");
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), original);
    let (code, out) = baton(&["diff", &config, "--control", &control]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        support::request(&addr, "GET", "api.test", "/", "")
            .await
            .instance_version(),
        "w1"
    );
    wait_version(&addr, "w1").await;

    // The revision the diff printed: applied, followed live, written.
    let (code, out) = baton(&[
        "apply",
        &next,
        "--revision",
        &revision,
        "--control",
        &control,
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{}", r.baton.dump());
    assert!(out.contains("web: scaling from 1 to 2 instances"), "{out}");
    assert!(
        out.contains("applied: the running config is revision"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&r.config).unwrap(),
        std::fs::read_to_string(&next).unwrap()
    );
    wait_host_version(&addr, "api.test", "a1").await;
    let s = status(&control).await;
    assert_eq!(
        service(&s, "web").unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The same file again: nothing to send.
    let (code, out) = baton(&[
        "apply",
        &next,
        "--revision",
        &revision,
        "--control",
        &control,
    ])
    .await;
    assert_eq!(code, 0, "nothing to apply: {out}");
    assert!(out.contains("nothing to apply"), "{out}");

    // Drift: the file on disk changes without a reload.
    let (code, out) = baton(&["status", "--control", &control]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("as on disk"), "{out}");
    std::fs::write(&r.config, original).unwrap();
    let (code, out) = baton(&["status", "--control", &control]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("DRIFT: the file on disk"), "{out}");

    let report = web.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    r.baton.signal(libc::SIGTERM);
    assert!(r.baton.wait_exit().await.success(), "{}", r.baton.dump());
}

/// The dashboard's record of `service`'s last deploy, from the first
/// snapshot of `GET /v1/events` on the control socket.
async fn dashboard_deploy(control: &str, service: &str) -> serde_json::Value {
    let request = "GET /v1/events HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n";
    let r = tokio::time::timeout(
        EVENT_TIMEOUT,
        support::exchange_first_event(&format!("unix:{control}"), request.as_bytes()),
    )
    .await
    .expect("no snapshot");
    let body = support::dechunk(&r.body);
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line: {body}"));
    let mut snapshot: serde_json::Value = serde_json::from_str(data).unwrap();
    let deploys = snapshot["deploys"].take();
    deploys
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["service"] == service)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// `baton_deploys_total{service="web",…,outcome="…"}` in a scrape.
async fn deploys_counted(control: &str, outcome: &str) -> u64 {
    let r = support::get(&format!("unix:{control}"), "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .filter(|l| {
            l.starts_with("baton_deploys_total{")
                && l.contains("service=\"web\"")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// What a reload or `baton apply` changes in a service shows on the
/// dashboard as a `baton deploy` does — its steps as they came, then its
/// end — and its deploys are counted in `baton_deploys_total`, failed ones
/// too; a scaling is shown, not counted as a deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloads_changes_are_shown_on_the_dashboard_and_counted() {
    let d = Desired {
        instances: 1,
        suffix: "",
        api: false,
    };
    let mut r = start("desired-dashboard", &d).await;
    let (addr, control) = (r.addr.clone(), r.control.clone());
    assert!(dashboard_deploy(&control, "web").await.is_null());

    // A new command: a deploy of the version serving, followed by apply.
    let next = r.config.with_file_name("next.toml");
    let changed = Desired {
        suffix: "-b",
        ..d.clone()
    };
    std::fs::write(&next, render(&r.script, &changed)).unwrap();
    let next = next.to_str().unwrap().to_owned();
    let (code, out) = baton(&["apply", &next, "--control", &control]).await;
    assert_eq!(code, 0, "{out}\n{}", r.baton.dump());
    wait_version(&addr, "w1-b").await;
    let web = dashboard_deploy(&control, "web").await;
    assert_eq!(web["kind"], "reload", "{web:#}");
    assert_eq!(web["running"], false, "{web:#}");
    assert_eq!(web["ok"], true, "{web:#}");
    assert_eq!(web["strategy"], "rolling", "{web:#}");
    let events: Vec<&str> = web["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events.first(), Some(&"started"), "{web:#}");
    assert_eq!(events.last(), Some(&"traffic"), "{web:#}");
    assert_eq!(web["share"], 100, "{web:#}");
    assert_eq!(deploys_counted(&control, "deployed").await, 1);

    // Scaling only: shown, not a deploy.
    let scaled = Desired {
        instances: 2,
        ..changed.clone()
    };
    std::fs::write(&next, render(&r.script, &scaled)).unwrap();
    let (code, out) = baton(&["apply", &next, "--control", &control]).await;
    assert_eq!(code, 0, "{out}\n{}", r.baton.dump());
    let web = dashboard_deploy(&control, "web").await;
    assert_eq!(web["ok"], true, "{web:#}");
    assert_eq!(web["events"][0]["event"], "scaling", "{web:#}");
    assert_eq!(deploys_counted(&control, "deployed").await, 1);
    assert_eq!(deploys_counted(&control, "failed").await, 0);

    // A command whose instances never get healthy: failed, rolled back,
    // shown so, counted as failed.
    let broken = Desired {
        suffix: "-broken",
        ..scaled.clone()
    };
    std::fs::write(&next, render(&r.script, &broken)).unwrap();
    let (code, out) = baton(&["apply", &next, "--control", &control]).await;
    assert_eq!(code, 1, "{out}\n{}", r.baton.dump());
    let web = dashboard_deploy(&control, "web").await;
    assert_eq!(web["ok"], false, "{web:#}");
    assert!(
        web["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{web:#}"
    );
    assert_eq!(deploys_counted(&control, "failed").await, 1);
    assert_eq!(deploys_counted(&control, "deployed").await, 1);
    wait_version(&addr, "w1-b").await;

    r.baton.signal(libc::SIGTERM);
    assert!(r.baton.wait_exit().await.success(), "{}", r.baton.dump());
}
