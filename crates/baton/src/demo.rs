//! `baton demo`: the whole product in one command, on loopback, with
//! nothing installed. It writes a config for one service (three instances
//! of the example app, run by this same binary as `baton demo-app`),
//! starts `baton serve` on it as a child process, puts the service under
//! load with the failure-counting client, and deploys: rolling, blue-green,
//! canary, then three broken versions (failing its smoke check, answering
//! errors as a canary, never healthy) that must be rolled back. It ends with one row per
//! deploy and exits 0 only if every deploy ended as expected and not one
//! request failed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use loadgen::{Load, LoadConfig};

use crate::cli::DemoArgs;
use crate::control::{DeployRequest, Outcome};

/// One deploy of the demo and what it must end with.
struct Step {
    title: &'static str,
    version: &'static str,
    strategy: &'static str,
    succeeds: bool,
}

const STEPS: &[Step] = &[
    Step {
        title: "rolling update",
        version: "v2",
        strategy: "rolling",
        succeeds: true,
    },
    Step {
        title: "blue-green switch",
        version: "v3",
        strategy: "blue_green",
        succeeds: true,
    },
    Step {
        title: "canary 10% → 50% → 100%",
        version: "v4",
        strategy: "canary",
        succeeds: true,
    },
    Step {
        title: "broken: fails smoke check",
        version: "v5_errors-1.0",
        strategy: "blue_green",
        succeeds: false,
    },
    Step {
        title: "broken: canary errors",
        version: "v6_errors-0.3",
        strategy: "canary",
        succeeds: false,
    },
    Step {
        title: "broken: never healthy",
        version: "v7_never-ready",
        strategy: "rolling",
        succeeds: false,
    },
];

/// One row of the final table.
#[derive(Debug, serde::Serialize)]
struct Row {
    deploy: String,
    version: String,
    strategy: String,
    outcome: String,
    as_expected: bool,
    seconds: f64,
    requests: u64,
    failures: u64,
    p99_ms: Option<f64>,
}

pub fn main(args: DemoArgs) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("baton-demo-{}", std::process::id()));
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("could not start the runtime")
        .and_then(|rt| rt.block_on(run(&dir, args.json)));
    let code = match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("baton demo: {e:#}");
            eprintln!("baton's log: {}", dir.join("baton.log").display());
            return ExitCode::FAILURE;
        }
    };
    if args.keep {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

async fn run(dir: &Path, json: bool) -> anyhow::Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let exe = std::env::current_exe().context("could not find the baton binary")?;
    let config = dir.join("baton.toml");
    std::fs::write(&config, config_text(&exe))?;
    let control = dir.join("control.sock");
    let say = |text: String| {
        if !json {
            eprintln!("{text}");
        }
    };

    say(format!(
        "baton demo: config, state and log in {}",
        dir.display()
    ));
    let mut serve = Serve::start(&exe, &config, &control, dir)?;
    let addr = serve.listening()?;
    say(format!(
        "baton serve is listening on {addr}; starting 3 instances of web v1"
    ));
    wait_ready(&control, "web", 3, Duration::from_secs(30)).await?;

    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        slow_workers: 1,
        slow_ms: 150,
        request_timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(600),
        pace: Some(Duration::from_millis(2)),
        ..LoadConfig::new(addr)
    });
    if !load.wait_for_requests(200).await {
        bail!(
            "the load client got no answers; see {}",
            dir.join("baton.log").display()
        );
    }
    say(
        "load: 5 clients (keep-alive, new connection per request, POST, 150 ms slow requests)\n"
            .into(),
    );

    let mut rows = Vec::new();
    for step in STEPS {
        say(format!(
            "── {} → {} ({})",
            step.title, step.version, step.strategy
        ));
        let before = load.snapshot();
        let started = Instant::now();
        let req = DeployRequest {
            service: "web".into(),
            version: Some(step.version.into()),
            strategy: Some(step.strategy.into()),
            targets: Vec::new(),
        };
        let outcome: Outcome = crate::client::request_deploy(
            &crate::client::Endpoint::Socket(control.clone()),
            "/v1/deploy",
            &req,
            !json,
        )
        .await
        .with_context(|| format!("deploy of {}", step.version))?;
        let after = load.snapshot();
        let row = Row {
            deploy: step.title.into(),
            version: step.version.into(),
            strategy: step.strategy.into(),
            outcome: if outcome.ok {
                "deployed".into()
            } else {
                "rolled back".into()
            },
            as_expected: outcome.ok == step.succeeds,
            seconds: started.elapsed().as_secs_f64(),
            requests: after.requests - before.requests,
            failures: after.failures - before.failures,
            p99_ms: outcome.traffic.and_then(|t| t.p99_ms),
        };
        if !json {
            match (&outcome.ok, &outcome.error) {
                (true, _) => eprintln!(
                    "   deployed in {:.1} s: {} requests, {} failed\n",
                    row.seconds, row.requests, row.failures
                ),
                (false, Some(e)) => eprintln!("   {e}\n"),
                (false, None) => eprintln!("   failed\n"),
            }
        }
        rows.push(row);
    }
    let report = load.stop().await;
    serve.stop();

    let total_ok = rows.iter().all(|r| r.as_expected && r.failures == 0) && report.failures == 0;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": total_ok,
                "deploys": rows,
                "requests": report.requests,
                "failures": report.failures,
            })
        );
    } else {
        print_table(&rows);
        println!(
            "\n{} requests in {:.0} s, {} failed{}",
            report.requests,
            report.elapsed.as_secs_f64(),
            report.failures,
            if total_ok { ": zero downtime." } else { "" }
        );
        if report.failures > 0 {
            println!("{}", report.failure_description());
        }
        for r in rows.iter().filter(|r| !r.as_expected) {
            println!("unexpected: {} ended \"{}\"", r.deploy, r.outcome);
        }
    }
    Ok(total_ok)
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<28} {:<15} {:<11} {:<12} {:>7} {:>9} {:>8} {:>9}",
        "DEPLOY", "VERSION", "STRATEGY", "OUTCOME", "TIME", "REQUESTS", "FAILED", "P99"
    );
    for r in rows {
        println!(
            "{:<28} {:<15} {:<11} {:<12} {:>6.1}s {:>9} {:>8} {:>9}",
            r.deploy,
            r.version,
            r.strategy,
            r.outcome,
            r.seconds,
            r.requests,
            r.failures,
            r.p99_ms
                .map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
        );
    }
}

fn config_text(exe: &Path) -> String {
    let exe = exe
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"# Written by `baton demo`.
[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{exe}", "demo-app", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}", "--faults-from-version", "--drain-timeout", "5s"]
version = "v1"
instances = 3
ready_timeout = "3s"
drain_timeout = "5s"
deploy_timeout = "60s"
# A 5xx to a GET is retried on another instance: a failing canary is
# caught by the proxy's measurements while no client sees the error.
retry_server_errors = true

[service.web.health]
path = "/healthz"
interval = "100ms"
timeout = "80ms"
healthy_threshold = 2
unhealthy_threshold = 2

[service.web.blue_green]
smoke = ["/", "/users/1"]
rollback_window = "5s"

[service.web.canary]
steps = [10, 50, 100]
pause = "1500ms"
min_requests = 50
max_error_rate = 0.01
# The load includes 150 ms requests on purpose (about 1 % of them): a p99
# near that knee flips between fast and slow on a few samples, so latencies
# up to 250 ms count as equal here.
p99_floor = "250ms"

[[route]]
service = "web"
"#
    )
}

/// The `baton serve` child.
struct Serve {
    child: Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Serve {
    fn start(exe: &Path, config: &Path, control: &Path, dir: &Path) -> anyhow::Result<Serve> {
        let log = std::fs::File::create(dir.join("baton.log"))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--control")
            .arg(control)
            .arg("--state")
            .arg(dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("could not start baton serve")?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Serve { child, stdout })
    }

    /// The address of its listener, from its `listening on ADDR` line.
    fn listening(&mut self) -> anyhow::Result<SocketAddr> {
        let Some(stdout) = self.stdout.as_mut() else {
            bail!("baton serve has no stdout");
        };
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                bail!("baton serve exited before listening");
            }
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                return addr.parse().context("baton serve printed a bad address");
            }
        }
    }

    fn stop(&mut self) {
        let pid = self.child.id() as i32;
        // SIGTERM: drain the proxy, then stop the instances.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Waits until `service` has `instances` members routed.
async fn wait_ready(
    control: &Path,
    service: &str,
    instances: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(status) =
            crate::client::fetch_status(&crate::client::Endpoint::Socket(control.to_owned())).await
            && status
                .iter()
                .any(|s| s.name == service && s.members.len() >= instances)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{service} did not become ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
