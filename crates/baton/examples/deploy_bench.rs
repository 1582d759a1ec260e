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
//! those intervals (sequential for a rolling deploy, overlapping for blue-green and canary). The overhead is the
//! deploy's `duration_ms` minus that, minus the canary's configured pauses. Baton's readiness (the union of `instance
//! started` → the supervisor's `instance ready`, i.e. when the health checks confirmed it) splits the overhead into
//! health-check confirmation and the rest (smoke checks, traffic switches, draining and stopping the old instances).
//!
//! ```sh
//! cargo build --release -p baton --example deploy_bench
//! target/release/examples/deploy_bench --deploys 50 --json-out run.json   # Markdown summary on stdout
//! ```
//!
//! `bench/deploys.sh` runs it and records the figures in `docs/BENCHMARKS.md`. Exits 1 if a deploy failed or a
//! single request failed (or baton did not stop cleanly), 2 if the run itself could not be carried out.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use loadgen::{Load, LoadConfig, Phase, Report};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Longest wait for a log line or for baton's exit.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a single `baton deploy` may take (the service's deploy_timeout is 60 s).
const DEPLOY_LIMIT: Duration = Duration::from_secs(90);
/// The run stops deploying after this many failed deploys: the figures would mean nothing anyway.
const MAX_FAILED_DEPLOYS: usize = 3;

/// Deploys of a supervised service under failure-counting load.
#[derive(Debug, Parser)]
#[command(name = "deploy_bench")]
struct Args {
    /// The `baton` binary (default: `../baton` next to this example).
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
        self.baton.clone().unwrap_or_else(|| {
            // target/release/examples/deploy_bench -> target/release/baton
            std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.join("baton")))
                .unwrap_or_else(|| PathBuf::from("baton"))
        })
    }

    fn pauses_ms(&self, strategy: &str) -> u64 {
        if strategy == "canary" {
            self.canary_pause_ms * self.canary_steps.len().saturating_sub(1) as u64
        } else {
            0
        }
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
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
    /// Instances of the new version with a line missing.
    incomplete: usize,
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

async fn run(args: &Args) -> Result<RunResult, String> {
    let baton = args.baton();
    if !baton.exists() {
        return Err(format!(
            "{} does not exist: build it first (cargo build --release -p baton)",
            baton.display()
        ));
    }
    if args.strategies.is_empty() || args.deploys == 0 {
        return Err("nothing to deploy".into());
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("baton-deploy-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let config = dir.join("baton.toml");
    let control = dir.join("control.sock");
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::write(&config, config_text(args, &baton))
        .map_err(|e| format!("could not write {}: {e}", config.display()))?;

    let mut cmd = Command::new(&baton);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--control")
        .arg(&control)
        .arg("--state")
        .arg(&state);
    // Should this process die, baton gets SIGTERM and drains its instances instead of lingering.
    // SAFETY: runs between fork and exec; prctl is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut proc = Proc::spawn(&mut cmd)?;
    let log = dir.join("baton.log");
    let driven = drive(args, &baton, &control, &mut proc).await;
    let lines = proc.lines();
    let (deploys, report, load, cpu) = driven.map_err(|e| {
        write_log(&log, &lines);
        let tail = lines.len().saturating_sub(60);
        format!(
            "{e}\n--- last lines of baton's output (all of it in {}) ---\n{}",
            log.display(),
            lines[tail..].join("\n")
        )
    })?;

    signal(proc.pid, libc::SIGTERM);
    let baton_exit = tokio::time::timeout(EVENT_TIMEOUT, proc.child.wait())
        .await
        .map_err(|_| "baton did not exit within 60 s of SIGTERM".to_owned())?
        .map_err(|e| format!("could not wait for baton: {e}"))?;
    proc.exited = true;
    let _ = tokio::time::timeout(Duration::from_secs(5), proc.output_closed()).await;
    let lines = proc.lines();
    write_log(&log, &lines);
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

fn write_log(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("deploy_bench: could not write {}: {e}", path.display());
    }
}

type Driven = (Vec<Deploy>, Report, LoadConfig, (u64, u64, Duration));

async fn drive(
    args: &Args,
    baton: &Path,
    control: &Path,
    proc: &mut Proc,
) -> Result<Driven, String> {
    let (mut seen, line) = proc
        .wait_line(0, "baton's listening line", |l| {
            l.contains("listening listener=http")
        })
        .await?;
    let addr = field(&line, "addr")
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("bad address in {line:?}: {e}"))?;
    for n in 1..=args.instances {
        (seen, _) = proc
            .wait_line(seen, &format!("instance {n} of v1 joining the pool"), |l| {
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
            .map_err(|_| format!("baton deploy {version} did not end within {DEPLOY_LIMIT:?}"))?
            .map_err(|e| format!("could not run baton deploy: {e}"))?;
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
            .wait_line(seen, &format!("the end of the deploy of {version}"), |l| {
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
        return Err("the load stopped before the last deploy (max duration reached?)".into());
    }
    let report = load.stop().await;
    let cpu = (
        own_ticks(proc.pid, &proc.lines()).saturating_sub(cpu_before.0),
        machine_ticks().saturating_sub(cpu_before.1),
        measuring.elapsed(),
    );
    Ok((deploys, report, cfg, cpu))
}

/// Lets the load run in the steady phase for `period`, and until some requests succeeded.
async fn steady(load: &Load, period: Duration) -> Result<(), String> {
    let progressed = async {
        tokio::time::timeout(EVENT_TIMEOUT, load.wait_for_requests(20))
            .await
            .unwrap_or(false)
    };
    let (progressed, ()) = tokio::join!(progressed, tokio::time::sleep(period));
    if progressed {
        Ok(())
    } else {
        Err(format!(
            "the load made no progress (20 successful requests) within {} s: {}",
            EVENT_TIMEOUT.as_secs(),
            load.snapshot()
        ))
    }
}

// --- reading baton's log ----------------------------------------------------------------------------------------

/// The timestamp tracing puts first on a line (`[err] 2026-01-01T00:00:00.000000Z  INFO ...`).
fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().nth(1)?;
    humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()
}

/// The value of `key=value` in a log line, without quotes.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    Some(line[start..].split_whitespace().next()?.trim_matches('"'))
}

/// The new version's instances of one deploy, from the lines between its `deploy started` and its end.
fn timing(lines: &[String], version: &str) -> Timing {
    let is_deploy_line =
        |l: &str, what: &str| l.contains(what) && field(l, "version") == Some(version);
    let Some(from) = lines
        .iter()
        .position(|l| is_deploy_line(l, "deploy started"))
    else {
        return Timing::default();
    };
    let to = lines[from..]
        .iter()
        .position(|l| is_deploy_line(l, "deploy complete") || is_deploy_line(l, "deploy failed"))
        .map_or(lines.len(), |i| from + i + 1);
    let window = &lines[from..to];
    let mut started: HashMap<&str, SystemTime> = HashMap::new();
    let mut baton_ready: HashMap<&str, SystemTime> = HashMap::new();
    let mut app_ready: Vec<(&str, SystemTime)> = Vec::new();
    for line in window {
        let (Some(t), Some(pid)) = (line_time(line), field(line, "pid")) else {
            continue;
        };
        if line.contains("supervisor::group: instance started") {
            started.insert(pid, t);
        } else if line.contains("supervisor::group: instance ready") {
            baton_ready.insert(pid, t);
        } else if line.contains("hello: ready") && field(line, "version") == Some(version) {
            app_ready.push((pid, t));
        }
    }
    let mut app = Vec::new();
    let mut confirmed = Vec::new();
    let mut incomplete = 0;
    for (pid, ready) in &app_ready {
        let (Some(start), Some(confirmed_at)) = (started.get(pid), baton_ready.get(pid)) else {
            incomplete += 1;
            continue;
        };
        // The supervisor logs `instance started` once spawn returned; the app may already have logged by then.
        app.push((*start, (*ready).max(*start)));
        confirmed.push((*start, (*confirmed_at).max(*start)));
    }
    Timing {
        instances: app.len(),
        app_ready_ms: union_ms(app),
        baton_ready_ms: union_ms(confirmed),
        incomplete,
    }
}

/// Total length of the union of intervals, in milliseconds.
fn union_ms(mut intervals: Vec<(SystemTime, SystemTime)>) -> f64 {
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(SystemTime, SystemTime)> = None;
    for (a, b) in intervals {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb.duration_since(ca).unwrap_or_default();
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = current {
        total += b.duration_since(a).unwrap_or_default();
    }
    total.as_secs_f64() * 1000.0
}

// --- CPU accounting ---------------------------------------------------------------------------------------------

/// utime + stime + cutime + cstime of a process, in clock ticks.
fn proc_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    // After the command: state is field 3, utime field 14; `rest` starts at field 3.
    rest.split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// This process (with `baton deploy`, reaped), `baton serve` (with its reaped instances) and its live instances.
fn own_ticks(baton: u32, lines: &[String]) -> u64 {
    let mut pids: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("instance started"))
        .filter_map(|l| field(l, "pid").map(str::to_owned))
        .collect();
    pids.sort();
    pids.dedup();
    let live: u64 = pids
        .iter()
        .filter(|p| is_instance(p))
        .map(|p| proc_ticks(p))
        .sum();
    proc_ticks("self") + proc_ticks(&baton.to_string()) + live
}

/// Busy clock ticks of the whole machine (user, nice, system, irq, softirq, steal), from /proc/stat.
fn machine_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum()
}

fn is_instance(pid: &str) -> bool {
    const MARK: &[u8] = b"demo-app\0--listen";
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(MARK.len()).any(|w| w == MARK))
}

// --- results ----------------------------------------------------------------------------------------------------

/// The value at quantile `q` (nearest rank) of unsorted values.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Per-strategy figures.
struct Summary {
    strategy: String,
    deploys: usize,
    ok: usize,
    duration: Vec<f64>,
    app_ready: Vec<f64>,
    confirm: Vec<f64>,
    overhead: Vec<f64>,
    rest: Vec<f64>,
    pauses_ms: u64,
    steps: u64,
    requests: u64,
    failures: u64,
    proxy_p99: Vec<f64>,
}

impl RunResult {
    fn clean(&self) -> bool {
        self.report.failures == 0 && self.deploys.iter().all(|d| d.ok) && self.baton_exit.success()
    }

    fn summaries(&self, args: &Args) -> Vec<Summary> {
        args.strategies
            .iter()
            .map(|s| {
                let mut sum = Summary {
                    strategy: s.clone(),
                    deploys: 0,
                    ok: 0,
                    duration: Vec::new(),
                    app_ready: Vec::new(),
                    confirm: Vec::new(),
                    overhead: Vec::new(),
                    rest: Vec::new(),
                    pauses_ms: args.pauses_ms(s),
                    steps: args.sequential_steps(s),
                    requests: 0,
                    failures: 0,
                    proxy_p99: Vec::new(),
                };
                for (d, t) in self.deploys.iter().zip(&self.timings) {
                    if &d.strategy != s {
                        continue;
                    }
                    sum.deploys += 1;
                    sum.requests += d.requests;
                    sum.failures += d.failures;
                    if let Some(p) = d.outcome["traffic"]["p99_ms"].as_f64() {
                        sum.proxy_p99.push(p);
                    }
                    if !d.ok {
                        continue;
                    }
                    sum.ok += 1;
                    let duration = d.duration_ms as f64;
                    let pauses = sum.pauses_ms as f64;
                    sum.duration.push(duration);
                    sum.app_ready.push(t.app_ready_ms);
                    sum.confirm.push(t.baton_ready_ms - t.app_ready_ms);
                    sum.overhead.push(duration - t.app_ready_ms - pauses);
                    sum.rest.push(duration - t.baton_ready_ms - pauses);
                }
                sum
            })
            .collect()
    }

    fn markdown(&self, args: &Args) -> String {
        let r = &self.report;
        let interval = args.health_interval_ms as f64;
        let mut out = String::new();
        let ms = |v: f64| format!("{v:.0} ms");
        let lat = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        let summaries = self.summaries(args);

        let _ = writeln!(
            out,
            "| strategy | deploys (ok) | duration: median / max | app's own readiness (median) | **overhead: median / max** | median overhead in health intervals | per instance started in sequence | requests during deploys | failed | proxy p99 during a deploy: median / max |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &summaries {
            let med = quantile(&s.overhead, 0.5);
            let _ = writeln!(
                out,
                "| {}{} | {} ({}) | {} / {} | {} | **{} / {}** | {:.2} | {:.2} | {} | {} | {} / {} |",
                s.strategy,
                if s.pauses_ms > 0 {
                    format!(" (pauses {} ms)", s.pauses_ms)
                } else {
                    String::new()
                },
                s.deploys,
                s.ok,
                ms(quantile(&s.duration, 0.5)),
                ms(quantile(&s.duration, 1.0)),
                ms(quantile(&s.app_ready, 0.5)),
                ms(med),
                ms(quantile(&s.overhead, 1.0)),
                med / interval,
                med / interval / s.steps as f64,
                s.requests,
                s.failures,
                ms(quantile(&s.proxy_p99, 0.5)),
                ms(quantile(&s.proxy_p99, 1.0)),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Where the overhead goes (medians): *health-check confirmation* is the union of \\[instance started, baton found it\nready\\] minus the app's own readiness; *the rest* is the duration minus that union minus the pauses: smoke checks,\ntraffic switches, draining and stopping the old instances, and the gaps between the steps of a rolling deploy."
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| strategy | health-check confirmation | the rest |\n|---|---:|---:|"
        );
        for s in &summaries {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                s.strategy,
                ms(quantile(&s.confirm, 0.5)),
                ms(quantile(&s.rest, 0.5))
            );
        }
        let _ = writeln!(out);

        let switching_s: f64 = self.deploys.iter().map(|d| d.cli_ms as f64 / 1000.0).sum();
        let _ = writeln!(out, "| whole run | |\n|---|---|");
        let _ = writeln!(
            out,
            "| load | {} keep-alive, {} new-connection, {} POST, {} slow ({} ms) workers, each pausing {} after every request |",
            self.load.keepalive_workers,
            self.load.fresh_workers,
            self.load.post_workers,
            self.load.slow_workers,
            self.load.slow_ms,
            self.load
                .pace
                .map_or_else(|| "never".to_owned(), |p| format!("{} ms", p.as_millis()))
        );
        let _ = writeln!(
            out,
            "| requests | {} in {:.1} s ({:.0} req/s), {:.1} s of it during deploys |",
            r.requests,
            r.elapsed.as_secs_f64(),
            r.requests_per_sec,
            switching_s
        );
        let by_kind = if r.failures_by_kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds(&r.failures_by_kind))
        };
        let _ = writeln!(out, "| **failures** | **{}**{by_kind} |", r.failures);
        let _ = writeln!(
            out,
            "| deploys | {} of {} ended deployed |",
            self.deploys.iter().filter(|d| d.ok).count(),
            self.deploys.len()
        );
        let _ = writeln!(
            out,
            "| CPU of the load, baton and the instances | {:.0} % of one core on average (the whole machine: {:.0} %) |",
            self.own_percent(),
            self.machine_percent()
        );
        let _ = writeln!(out, "| baton exit after SIGTERM | {} |", self.baton_exit);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| successful requests started | count | p50 | p99 | max |\n|---|---:|---:|---:|---:|"
        );
        for (name, s) in [
            ("steady (between deploys)", &r.latency.steady),
            ("during deploys", &r.latency.switching),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | **{}** | {} |",
                s.count,
                lat(s.p50_us),
                lat(s.p99_us),
                lat(s.max_us)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| worker | requests | ok | failed |\n|---|---:|---:|---:|"
        );
        for (kind, w) in &r.workers {
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {} |",
                w.requests, w.ok, w.failures
            );
        }
        let _ = writeln!(out);

        let _ = writeln!(out, "<details><summary>Every deploy, in order</summary>\n");
        let _ = writeln!(
            out,
            "| # | strategy | version | outcome | duration | app's readiness | baton's readiness | overhead | requests | failed | proxy p99 |\n|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (i, (d, t)) in self.deploys.iter().zip(&self.timings).enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {} |",
                i + 1,
                d.strategy,
                d.version,
                if d.ok { "deployed" } else { "**failed**" },
                d.duration_ms,
                t.app_ready_ms,
                t.baton_ready_ms,
                d.duration_ms as f64 - t.app_ready_ms - args.pauses_ms(&d.strategy) as f64,
                d.requests,
                d.failures,
                d.outcome["traffic"]["p99_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.2} ms")),
            );
        }
        let _ = writeln!(out, "\n</details>\n");

        let notes = self.notes(args, &summaries);
        if !notes.is_empty() {
            let _ = writeln!(out, "### Noticed in this run\n");
            for n in notes {
                let _ = writeln!(out, "- {n}");
            }
            let _ = writeln!(out);
        }
        out
    }

    fn notes(&self, args: &Args, summaries: &[Summary]) -> Vec<String> {
        let mut notes = Vec::new();
        let r = &self.report;
        let interval = args.health_interval_ms as f64;
        if r.failures > 0 {
            notes.push(format!(
                "**{} of {} requests failed** ({}); this is a bug, not noise: the samples and baton's log around them are in the run's stderr.",
                r.failures,
                r.requests,
                kinds(&r.failures_by_kind)
            ));
        }
        for d in self.deploys.iter().filter(|d| !d.ok) {
            notes.push(format!(
                "**The deploy of {} ({}) failed** (exit {:?}): {}",
                d.version,
                d.strategy,
                d.exit,
                d.outcome["error"].as_str().unwrap_or("no outcome")
            ));
        }
        if !self.baton_exit.success() {
            notes.push(format!(
                "**baton did not stop cleanly**: {}",
                self.baton_exit
            ));
        }
        for s in summaries {
            let med = quantile(&s.overhead, 0.5);
            let max = quantile(&s.overhead, 1.0);
            if med.is_nan() {
                continue;
            }
            if max <= interval {
                notes.push(format!(
                    "{}: the overhead is within one health interval ({} ms) in every deploy (max {max:.0} ms).",
                    s.strategy, args.health_interval_ms
                ));
            } else if med <= interval {
                notes.push(format!(
                    "{}: the median overhead ({med:.0} ms) is within one health interval ({} ms), the max ({max:.0} ms) is not.",
                    s.strategy, args.health_interval_ms
                ));
            } else {
                notes.push(format!(
                    "**{}: the overhead is above the target of one health interval** (median {med:.0} ms, {:.2} intervals; {:.2} per instance started in sequence). Health-check confirmation accounts for a median {:.0} ms of it and the rest for {:.0} ms.",
                    s.strategy,
                    med / interval,
                    med / interval / s.steps as f64,
                    quantile(&s.confirm, 0.5),
                    quantile(&s.rest, 0.5)
                ));
            }
        }
        if args.healthy_threshold > 1 {
            notes.push(format!(
                "With `healthy_threshold = {}` an instance is confirmed ready by {} passing checks in a row, `interval` apart: at least {} ms after the app is ready, for every instance that becomes ready in sequence (one at a time in a rolling deploy with `max_surge = 1`). The first check runs as the instance starts; on the inherited socket it waits for the app to accept.",
                args.healthy_threshold,
                args.healthy_threshold,
                u64::from(args.healthy_threshold - 1) * args.health_interval_ms
            ));
        }
        let incomplete: usize = self.timings.iter().map(|t| t.incomplete).sum();
        let short = self
            .deploys
            .iter()
            .zip(&self.timings)
            .filter(|(d, t)| d.ok && t.instances < args.instances as usize)
            .count();
        if incomplete > 0 || short > 0 {
            notes.push(format!(
                "In {short} deploys fewer than {} new instances were found in baton's log, and {incomplete} new instances had a start or readiness line missing: their readiness time is not counted.",
                args.instances
            ));
        }
        let other = self.machine_percent() - self.own_percent();
        if other > 20.0 {
            notes.push(format!(
                "Other work on the machine used {other:.0} % of one core on average during the run: durations and latencies are not those of an idle machine."
            ));
        }
        notes
    }

    fn own_percent(&self) -> f64 {
        ticks_percent(self.own_ticks, self.measured)
    }

    fn machine_percent(&self) -> f64 {
        ticks_percent(self.machine_ticks, self.measured)
    }

    fn json(&self, args: &Args) -> serde_json::Value {
        let summaries: Vec<serde_json::Value> = self
            .summaries(args)
            .iter()
            .map(|s| {
                serde_json::json!({
                    "strategy": s.strategy,
                    "deploys": s.deploys,
                    "ok": s.ok,
                    "pauses_ms": s.pauses_ms,
                    "duration_ms": {"median": quantile(&s.duration, 0.5), "max": quantile(&s.duration, 1.0)},
                    "app_ready_ms": {"median": quantile(&s.app_ready, 0.5), "max": quantile(&s.app_ready, 1.0)},
                    "overhead_ms": {"median": quantile(&s.overhead, 0.5), "max": quantile(&s.overhead, 1.0)},
                    "confirmation_ms": {"median": quantile(&s.confirm, 0.5)},
                    "rest_ms": {"median": quantile(&s.rest, 0.5)},
                    "requests": s.requests,
                    "failures": s.failures,
                })
            })
            .collect();
        let deploys: Vec<serde_json::Value> = self
            .deploys
            .iter()
            .zip(&self.timings)
            .map(|(d, t)| {
                serde_json::json!({
                    "strategy": d.strategy,
                    "version": d.version,
                    "ok": d.ok,
                    "exit": d.exit,
                    "duration_ms": d.duration_ms,
                    "cli_ms": d.cli_ms,
                    "app_ready_ms": t.app_ready_ms,
                    "baton_ready_ms": t.baton_ready_ms,
                    "new_instances": t.instances,
                    "requests": d.requests,
                    "failures": d.failures,
                    "outcome": d.outcome,
                })
            })
            .collect();
        serde_json::json!({
            "config": {
                "instances": args.instances,
                "health_interval_ms": args.health_interval_ms,
                "healthy_threshold": args.healthy_threshold,
                "canary_steps": args.canary_steps,
                "canary_pause_ms": args.canary_pause_ms,
                "canary_min_requests": args.canary_min_requests,
                "steady_ms": args.steady_ms,
                "pace_ms": args.pace_ms,
            },
            "strategies": summaries,
            "deploys": deploys,
            "report": self.report,
            "cpu": {"own_percent": self.own_percent(), "machine_percent": self.machine_percent()},
            "baton_exit_code": self.baton_exit.code(),
        })
    }

    /// What went wrong, with baton's log around every failure sample and every failed deploy.
    fn diagnosis(&self) -> String {
        let mut out = String::new();
        if !self.baton_exit.success() {
            let _ = writeln!(out, "baton did not stop cleanly: {}", self.baton_exit);
        }
        for d in self.deploys.iter().filter(|d| !d.ok) {
            let _ = writeln!(
                out,
                "\n== deploy of {} ({}) failed, exit {:?}: {}",
                d.version, d.strategy, d.exit, d.outcome
            );
            let v = d.version.as_str();
            for line in self
                .lines
                .iter()
                .skip_while(|l| !(l.contains("deploy started") && field(l, "version") == Some(v)))
                .take(200)
            {
                let _ = writeln!(out, "   {line}");
                if (line.contains("deploy complete") || line.contains("deploy failed"))
                    && field(line, "version") == Some(v)
                {
                    break;
                }
            }
        }
        if self.report.failures > 0 {
            let _ = writeln!(out, "\n{}", self.report.failure_description());
            let _ = writeln!(
                out,
                "(failure times are relative to the start of the load; baton's whole log is in baton.log)"
            );
        }
        out
    }
}

fn ticks_percent(ticks: u64, over: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz / over.as_secs_f64().max(0.001) * 100.0
}

/// `reset=3 timeout=1`.
fn kinds(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

// --- the baton serve child --------------------------------------------------------------------------------------

/// A child process whose stdout and stderr lines are collected, so the run waits on lines instead of sleeping.
struct Proc {
    child: Child,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
    /// Set once baton was seen to exit after draining every instance.
    exited: bool,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Result<Proc, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start baton serve: {e}"))?;
        let pid = child.id().ok_or("baton serve exited at once")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = watch::channel(0usize);
        let tx = Arc::new(tx);
        if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
            collect(out, "out", lines.clone(), tx.clone());
            collect(err, "err", lines.clone(), tx);
        }
        Ok(Proc {
            child,
            pid,
            lines,
            seen,
            exited: false,
        })
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits for the first line at or after index `from` that matches; returns the index after it and the line.
    async fn wait_line(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<(usize, String), String> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let found = {
                let lines = self
                    .lines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| pred(l))
                    .map(|(i, l)| (i + 1, l.clone()))
            };
            if let Some(found) = found {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(format!("baton's output ended before {what}")),
                Err(_) => {
                    return Err(format!(
                        "timed out after {} s waiting for {what}",
                        EVENT_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    }

    /// Resolves when both pipes are closed (baton and every instance are gone).
    async fn output_closed(&mut self) {
        while self.seen.changed().await.is_ok() {}
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Instances run in their own process groups: a run that fails must not leave them behind.
        if self.exited {
            return;
        }
        for line in self.lines() {
            if line.contains("instance started")
                && let Some(pid) = field(&line, "pid")
                && is_instance(pid)
                && let Ok(pid) = pid.parse()
            {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

fn signal(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

fn collect<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    tag: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    seen: Arc<watch::Sender<usize>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let n = {
                let mut l = lines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                l.push(format!("[{tag}] {line}"));
                l.len()
            };
            seen.send_replace(n);
        }
    });
}
