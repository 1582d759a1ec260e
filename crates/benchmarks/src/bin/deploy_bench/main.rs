//! Deploys under sustained load: N deploys per strategy of a supervised service, with the failure count, latency
//! during deploys against steady state, and how much of each deploy's duration is baton's own overhead.
//!
//! Writes a config for one service (`--instances` instances of `baton demo-app`, with health checks every
//! `--health-interval-ms`), starts `baton serve` on it, puts it under a paced [`loadgen::Load`] (keep-alive,
//! new-connection, POST and slow workers), and deploys `v2`, `v3`, … through the real CLI (`baton deploy web
//! --version V --strategy S --control SOCK --json`), rolling, blue-green and canary in turn, with a steady period
//! after each. The load's phase is `switching` while a deploy runs and `steady` otherwise.
//!
//! The app's own readiness time of a deploy is read from `baton serve`'s log: for each instance of the new version,
//! from the supervisor's `instance started … pid=P` to the app's own `hello: ready version=V pid=P`, and the union of
//! those intervals (sequential for a rolling deploy, overlapping for blue-green and canary). Requests still in flight
//! on an old instance once it is out of the pool were routed before it left, and baton stops no instance before they
//! end: each old instance's `instance left the pool … in_flight=N drain_ms=D` gives that wait, the app's own request
//! time. The overhead is the deploy's `duration_ms` minus the union of the readiness intervals and those waits, minus
//! the canary's configured pauses (the figure with the waits counted as overhead is reported too). Baton's readiness
//! (the union of `instance started` → the supervisor's `instance ready`, i.e. when the health checks confirmed it)
//! splits the overhead into health-check confirmation and the rest (smoke checks, traffic switches, stopping the old
//! instances).
//!
//! ```sh
//! cargo build --release -p baton -p benchmarks
//! target/release/deploy_bench --deploys 50 --json-out run.json   # Markdown summary on stdout
//! ```
//!
//! `bench/deploys.sh` runs it and records the figures in `docs/BENCHMARKS.md`. Exits 1 if a deploy failed or a
//! single request failed (or baton did not stop cleanly), 2 if the run itself could not be carried out.

mod log;
mod report;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use benchmarks::{runtime, sibling, spawn_baton, steady, stop_baton, write_log};
use clap::Parser;
use loadgen::{Load, LoadConfig, Phase, Report};
use log::{machine_ticks, own_ticks, timing};
use testkit::{Proc, field};
use tokio::process::Command;

/// Longest a single `baton deploy` may take (the service's deploy_timeout is 60 s).
const DEPLOY_LIMIT: Duration = Duration::from_secs(90);
/// The run stops deploying after this many failed deploys: the figures would mean nothing anyway.
const MAX_FAILED_DEPLOYS: usize = 3;

/// Deploys of a supervised service under failure-counting load.
#[derive(Debug, Parser)]
#[command(name = "deploy_bench")]
struct Args {
    /// The `baton` binary (default: `baton` next to this program).
    #[arg(long)]
    baton: Option<PathBuf>,
    /// Deploys per strategy.
    #[arg(long, default_value_t = 50)]
    deploys: usize,
    /// Strategies, deployed in turn (one of each, then again).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rolling,blue_green,canary"
    )]
    strategies: Vec<String>,
    /// Instances of the service.
    #[arg(long, default_value_t = 3)]
    instances: u32,
    /// `[service.web.health] interval`, in milliseconds (the timeout is 80 % of it).
    #[arg(long, default_value_t = 100)]
    health_interval_ms: u64,
    /// `[service.web.health] healthy_threshold`.
    #[arg(long, default_value_t = 2)]
    healthy_threshold: u32,
    /// `[service.web.canary] steps`.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    canary_steps: Vec<u8>,
    /// `[service.web.canary] pause`, in milliseconds.
    #[arg(long, default_value_t = 500)]
    canary_pause_ms: u64,
    /// `[service.web.canary] min_requests`: low enough that the load reaches it within the pause, so that the
    /// configured pauses alone decide how long the steps last.
    #[arg(long, default_value_t = 20)]
    canary_min_requests: u32,
    /// Steady load after each deploy, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    steady_ms: u64,
    /// Steady load before the first deploy, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// Load: keep-alive `GET /` workers.
    #[arg(long, default_value_t = 2)]
    keepalive: usize,
    /// Load: new-connection `GET /` workers.
    #[arg(long, default_value_t = 1)]
    fresh: usize,
    /// Load: keep-alive `POST /echo` workers.
    #[arg(long, default_value_t = 1)]
    post: usize,
    /// Load: keep-alive `GET /slow` workers.
    #[arg(long, default_value_t = 1)]
    slow: usize,
    /// How long each slow request takes, in milliseconds.
    #[arg(long, default_value_t = 150)]
    slow_ms: u64,
    /// Pause of each load worker after every request, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pace_ms: u64,
    /// Directory for the config, the state, the control socket and baton's log (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the whole result as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

impl Args {
    fn baton(&self) -> PathBuf {
        sibling(&self.baton, "baton")
    }

    fn pauses_ms(&self, strategy: &str) -> u64 {
        if strategy == "canary" {
            self.canary_pause_ms * self.canary_steps.len().saturating_sub(1) as u64
        } else {
            0
        }
    }

    /// `start_interval` of the health check (the config leaves it to its default: a tenth of `interval`, at least
    /// 10 ms, at most `interval`).
    fn start_interval_ms(&self) -> u64 {
        (self.health_interval_ms / 10)
            .max(10)
            .min(self.health_interval_ms)
    }

    /// Instances that become ready one after the other in a deploy (rolling with max_surge 1: all of them).
    fn sequential_steps(&self, strategy: &str) -> u64 {
        if strategy == "rolling" {
            u64::from(self.instances)
        } else {
            1
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deploy_bench: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(result) => {
            println!("{}", result.markdown(&args));
            if let Some(path) = &args.json_out
                && let Err(e) = std::fs::write(path, result.json(&args).to_string())
            {
                eprintln!("deploy_bench: could not write {}: {e}", path.display());
                return ExitCode::from(2);
            }
            if result.clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", result.diagnosis());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("deploy_bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn config_text(args: &Args, baton: &Path) -> String {
    let exe = baton
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let steps: Vec<String> = args.canary_steps.iter().map(u8::to_string).collect();
    format!(
        r#"# Written by deploy_bench.
[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{exe}", "demo-app", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
instances = {instances}
ready_timeout = "10s"
drain_timeout = "10s"
deploy_timeout = "60s"

[service.web.health]
path = "/healthz"
interval = "{interval}ms"
timeout = "{timeout}ms"
healthy_threshold = {threshold}
unhealthy_threshold = 2

[service.web.blue_green]
smoke = ["/"]
# The old set is drained right after the switch, inside the deploy, as canary and rolling do.
rollback_window = "0s"

[service.web.canary]
steps = [{steps}]
pause = "{pause}ms"
min_requests = {min_requests}
# The load's slow requests are about 0.5 % of them: p99s up to this count as equal.
p99_floor = "250ms"

[[route]]
service = "web"
"#,
        instances = args.instances,
        interval = args.health_interval_ms,
        timeout = args.health_interval_ms * 4 / 5,
        threshold = args.healthy_threshold,
        steps = steps.join(", "),
        pause = args.canary_pause_ms,
        min_requests = args.canary_min_requests,
    )
}

/// One deploy as the CLI and the load saw it.
struct Deploy {
    strategy: String,
    version: String,
    ok: bool,
    exit: Option<i32>,
    /// The CLI's JSON outcome line, as printed.
    outcome: serde_json::Value,
    duration_ms: u64,
    /// Requests the load finished while the deploy ran, and how many failed.
    requests: u64,
    failures: u64,
    /// Wall time of the `baton deploy` process.
    cli_ms: u64,
}

/// What baton's log says about one deploy.
#[derive(Default, Clone)]
struct Timing {
    /// Instances of the new version whose start and readiness were both found.
    instances: usize,
    /// Union of [instance started, app said ready].
    app_ready_ms: f64,
    /// Union of [instance started, baton found it ready].
    baton_ready_ms: f64,
    /// Union of the old instances' waits for requests still in flight once they were out of the pool.
    in_flight_ms: f64,
    /// Union of the app's own readiness and those waits: the app's own time in the deploy.
    app_ms: f64,
    /// Union of baton's readiness and those waits.
    baton_ms: f64,
    /// Instances of the new version with a line missing.
    incomplete: usize,
    /// The `duration_ms` of the deploy's `deploy complete` line: logged before the outcome is saved to the state
    /// file (written and synced), which the outcome's own duration includes.
    logged_ms: Option<f64>,
}

struct RunResult {
    deploys: Vec<Deploy>,
    timings: Vec<Timing>,
    report: Report,
    load: LoadConfig,
    baton_exit: ExitStatus,
    /// CPU time of this process, `baton deploy`, `baton serve` and its instances, and of the whole machine, in
    /// clock ticks, and the wall time they were measured over.
    own_ticks: u64,
    machine_ticks: u64,
    measured: Duration,
    lines: Vec<String>,
}

async fn run(args: &Args) -> anyhow::Result<RunResult> {
    let baton = args.baton();
    if !baton.exists() {
        return Err(anyhow::anyhow!(
            "{} does not exist: build it first (cargo build --release -p baton)",
            baton.display()
        ));
    }
    if args.strategies.is_empty() || args.deploys == 0 {
        return Err(anyhow::anyhow!("nothing to deploy"));
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("baton-deploy-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("could not create {}: {e}", dir.display()))?;
    let config = dir.join("baton.toml");
    let control = dir.join("control.sock");
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::write(&config, config_text(args, &baton))
        .map_err(|e| anyhow::anyhow!("could not write {}: {e}", config.display()))?;

    let mut cmd = Command::new(&baton);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--control")
        .arg(&control)
        .arg("--state")
        .arg(&state);
    let mut proc = spawn_baton(&mut cmd)?;
    let log = dir.join("baton.log");
    let driven = drive(args, &baton, &control, &mut proc).await;
    let lines = proc.lines();
    let (deploys, report, load, cpu) = driven.map_err(|e| {
        keep_log(&log, &lines);
        let tail = lines.len().saturating_sub(60);
        anyhow::anyhow!(
            "{e}\n--- last lines of baton's output (all of it in {}) ---\n{}",
            log.display(),
            lines[tail..].join("\n")
        )
    })?;

    let baton_exit = stop_baton(&mut proc).await?;
    let lines = proc.lines();
    keep_log(&log, &lines);
    let timings = deploys.iter().map(|d| timing(&lines, &d.version)).collect();
    Ok(RunResult {
        deploys,
        timings,
        report,
        load,
        baton_exit,
        own_ticks: cpu.0,
        machine_ticks: cpu.1,
        measured: cpu.2,
        lines,
    })
}

/// Keeps baton's output in `path`; a run is still worth its figures without it.
fn keep_log(path: &Path, lines: &[String]) {
    if let Err(e) = write_log(path, lines) {
        eprintln!("deploy_bench: {e}");
    }
}

type Driven = (Vec<Deploy>, Report, LoadConfig, (u64, u64, Duration));

async fn drive(
    args: &Args,
    baton: &Path,
    control: &Path,
    proc: &mut Proc,
) -> anyhow::Result<Driven> {
    let (mut seen, line) = proc
        .wait_from(0, "baton's listening line", |l| {
            l.contains("listening listener=http")
        })
        .await?;
    let addr = field(&line, "addr")
        .unwrap_or_default()
        .parse()
        .map_err(|e| anyhow::anyhow!("bad address in {line:?}: {e}"))?;
    for n in 1..=args.instances {
        (seen, _) = proc
            .wait_from(seen, &format!("instance {n} of v1 joining the pool"), |l| {
                l.contains("instance joined the pool")
            })
            .await?;
    }

    let cfg = LoadConfig {
        keepalive_workers: args.keepalive,
        fresh_workers: args.fresh,
        post_workers: args.post,
        slow_workers: args.slow,
        slow_ms: args.slow_ms,
        request_timeout: Duration::from_secs(10),
        // Stopped explicitly; this bound only keeps a stuck run from loading forever.
        max_duration: Duration::from_secs(3600),
        pace: (args.pace_ms > 0).then(|| Duration::from_millis(args.pace_ms)),
        ..LoadConfig::new(addr)
    };
    let load = Load::start(cfg.clone());
    let cpu_before = (own_ticks(proc.pid, &proc.lines()), machine_ticks());
    let measuring = Instant::now();
    steady(&load, Duration::from_millis(args.warmup_ms)).await?;

    let total = args.deploys * args.strategies.len();
    let mut deploys = Vec::with_capacity(total);
    let mut failed = 0;
    for n in 0..total {
        let strategy = &args.strategies[n % args.strategies.len()];
        let version = format!("v{}", n + 2);
        let before = load.snapshot();
        load.set_phase(Phase::Switching);
        let started = Instant::now();
        let output = tokio::time::timeout(
            DEPLOY_LIMIT,
            Command::new(baton)
                .args([
                    "deploy",
                    "web",
                    "--version",
                    &version,
                    "--strategy",
                    strategy,
                ])
                .arg("--control")
                .arg(control)
                .arg("--json")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await;
        let cli_ms = started.elapsed().as_millis() as u64;
        load.set_phase(Phase::Steady);
        let after = load.snapshot();
        let output = output
            .map_err(|_| {
                anyhow::anyhow!("baton deploy {version} did not end within {DEPLOY_LIMIT:?}")
            })?
            .map_err(|e| anyhow::anyhow!("could not run baton deploy: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let outcome: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(serde_json::Value::Null);
        let ok = output.status.success() && outcome["ok"] == true;
        let deploy = Deploy {
            strategy: strategy.clone(),
            version: version.clone(),
            ok,
            exit: output.status.code(),
            duration_ms: outcome["duration_ms"].as_u64().unwrap_or(cli_ms),
            outcome,
            requests: after.requests - before.requests,
            failures: after.failures - before.failures,
            cli_ms,
        };
        // The engine logs the end before it answers; wait until that line is in, so the log is complete.
        let v = version.clone();
        (seen, _) = proc
            .wait_from(seen, &format!("the end of the deploy of {version}"), |l| {
                (l.contains("deploy complete") || l.contains("deploy failed"))
                    && field(l, "version") == Some(v.as_str())
            })
            .await?;
        eprintln!(
            "deploy {}/{total}: {version} {strategy}: {} in {} ms; {} requests during it, {} failed; {} so far, {} failed",
            n + 1,
            if ok { "deployed" } else { "FAILED" },
            deploy.duration_ms,
            deploy.requests,
            deploy.failures,
            after.requests,
            after.failures
        );
        if !ok {
            failed += 1;
            eprintln!(
                "   exit {:?}: {}{}",
                output.status.code(),
                text.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        deploys.push(deploy);
        if failed >= MAX_FAILED_DEPLOYS {
            eprintln!("deploy_bench: {failed} deploys failed; stopping here");
            break;
        }
        steady(&load, Duration::from_millis(args.steady_ms)).await?;
    }
    if load.is_stopping() {
        return Err(anyhow::anyhow!(
            "the load stopped before the last deploy (max duration reached?)"
        ));
    }
    let report = load.stop().await;
    let cpu = (
        own_ticks(proc.pid, &proc.lines()).saturating_sub(cpu_before.0),
        machine_ticks().saturating_sub(cpu_before.1),
        measuring.elapsed(),
    );
    Ok((deploys, report, cfg, cpu))
}
