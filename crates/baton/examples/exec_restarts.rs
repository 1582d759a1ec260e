//! Failure-counting benchmark of `baton exec`: N SIGHUP restarts under load.
//!
//! Starts `baton exec --instances N -- hello`, runs a [`loadgen::Load`] against it (keep-alive, new-connection, POST
//! and slow workers), sends SIGHUP `--restarts` times, waiting each time for `rollout complete generation=K` in
//! baton's log, and prints what the load counted: requests, failures by kind, latency of requests started during a
//! switch against those started outside one, and how long each rollout took. Exits 1 if a single request failed
//! (or baton did not stop cleanly), 2 if the run itself could not be carried out.
//!
//! ```sh
//! cargo build --release -p baton -p hello --example exec_restarts
//! target/release/examples/exec_restarts --restarts 50            # Markdown summary on stdout
//! target/release/examples/exec_restarts --json > run.json        # JSON on stdout, Markdown on stderr
//! ```
//!
//! `bench/exec-restarts.sh` runs it and records the figures in `docs/BENCHMARKS.md`. This is a benchmark, not a
//! test: it waits on log lines for every event, but holds a fixed steady period between restarts so that "outside
//! restarts" latency has samples.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use loadgen::{LatencySummary, Load, LoadConfig, Phase, Report};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Longest wait for any single expected event (a log line, an exit).
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// SIGHUP restarts of `baton exec` under failure-counting load.
#[derive(Debug, Parser)]
#[command(name = "exec_restarts")]
struct Args {
    /// The `baton` binary (default: `../baton` next to this example).
    #[arg(long)]
    baton: Option<PathBuf>,
    /// The `hello` binary (default: `../hello` next to this example).
    #[arg(long)]
    hello: Option<PathBuf>,
    /// How many SIGHUP restarts to send.
    #[arg(long, default_value_t = 50)]
    restarts: u64,
    /// Instances per generation (`baton exec --instances`).
    #[arg(long, default_value_t = 2)]
    instances: u32,
    /// Steady period after each restart, so latency outside restarts has samples.
    #[arg(long, default_value_t = 500)]
    steady_ms: u64,
    /// Steady load before the first restart.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// Load: keep-alive `GET /` workers.
    #[arg(long, default_value_t = 4)]
    keepalive: usize,
    /// Load: new-connection `GET /` workers.
    #[arg(long, default_value_t = 2)]
    fresh: usize,
    /// Load: keep-alive `POST /echo` workers.
    #[arg(long, default_value_t = 2)]
    post: usize,
    /// Load: keep-alive `GET /slow` workers.
    #[arg(long, default_value_t = 2)]
    slow: usize,
    /// How long each slow request takes, in milliseconds.
    #[arg(long, default_value_t = 300)]
    slow_ms: u64,
    /// Write every line baton and its instances printed to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Print the result as JSON on stdout (the Markdown summary goes to stderr).
    #[arg(long)]
    json: bool,
}

impl Args {
    fn binary(given: &Option<PathBuf>, name: &str) -> PathBuf {
        given.clone().unwrap_or_else(|| {
            // target/release/examples/exec_restarts -> target/release/NAME
            std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.join(name)))
                .unwrap_or_else(|| PathBuf::from(name))
        })
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
            eprintln!("exec_restarts: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(result) => {
            let markdown = result.markdown();
            if args.json {
                eprintln!("{markdown}");
                println!("{}", result.json());
            } else {
                println!("{markdown}");
            }
            if result.report.failures > 0 || !result.baton_exit.success() {
                eprintln!("{}", result.diagnosis());
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("exec_restarts: {e}");
            ExitCode::from(2)
        }
    }
}

/// One switch: from SIGHUP to `rollout complete`, relative to the start of the load.
struct Switch {
    generation: u64,
    from: Duration,
    to: Duration,
    /// `duration_ms=` of baton's `rollout complete` line.
    rollout_ms: u64,
}

struct RunResult {
    args_restarts: u64,
    instances: u32,
    load: LoadConfig,
    steady_ms: u64,
    report: Report,
    switches: Vec<Switch>,
    load_started: SystemTime,
    baton_exit: ExitStatus,
    lines: Vec<String>,
}

async fn run(args: &Args) -> Result<RunResult, String> {
    let baton = Args::binary(&args.baton, "baton");
    let hello = Args::binary(&args.hello, "hello");
    for bin in [&baton, &hello] {
        if !bin.exists() {
            return Err(format!(
                "{} does not exist: build it first (cargo build --release -p baton -p hello)",
                bin.display()
            ));
        }
    }
    let instances = args.instances.to_string();
    let mut cmd = Command::new(&baton);
    cmd.args([
        "exec",
        "--listen",
        "127.0.0.1:0",
        "--instances",
        &instances,
        "--",
    ])
    .arg(&hello)
    .args(["--app-version", "bench"]);
    // Should this process die (a timeout, a panic), baton gets SIGTERM and drains its instances instead of
    // lingering. The main thread, which spawns it, lives as long as the process.
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
    let result = drive(args, &mut proc).await;
    let lines = proc.lines();
    if let Some(path) = &args.log {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text)
            .map_err(|e| format!("could not write the log {}: {e}", path.display()))?;
    }
    let (report, switches, load_started, load) = result.map_err(|e| {
        let tail = lines.len().saturating_sub(60);
        format!(
            "{e}\n--- last lines of baton's output ---\n{}",
            lines[tail..].join("\n")
        )
    })?;

    proc.signal(libc::SIGTERM);
    let baton_exit = tokio::time::timeout(EVENT_TIMEOUT, proc.child.wait())
        .await
        .map_err(|_| "baton did not exit within 60 s of SIGTERM".to_owned())?
        .map_err(|e| format!("could not wait for baton: {e}"))?;
    proc.exited = true;
    // Give the readers the last lines (the pipes close once every instance is gone too).
    let _ = tokio::time::timeout(Duration::from_secs(5), proc.output_closed()).await;
    let lines = proc.lines();
    if let Some(path) = &args.log {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text)
            .map_err(|e| format!("could not write the log {}: {e}", path.display()))?;
    }
    Ok(RunResult {
        args_restarts: args.restarts,
        instances: args.instances,
        load,
        steady_ms: args.steady_ms,
        report,
        switches,
        load_started,
        baton_exit,
        lines,
    })
}

type Driven = (Report, Vec<Switch>, SystemTime, LoadConfig);

async fn drive(args: &Args, proc: &mut Proc) -> Result<Driven, String> {
    let (_, line) = proc
        .wait_line(0, "the listening on line", |l| {
            l.starts_with("[out] listening on ")
        })
        .await?;
    let addr = line
        .rsplit("listening on ")
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|e| format!("bad address in {line:?}: {e}"))?;
    let (mut seen, _) = proc.wait_rollout(0, 1).await?;

    let cfg = LoadConfig {
        keepalive_workers: args.keepalive,
        fresh_workers: args.fresh,
        post_workers: args.post,
        slow_workers: args.slow,
        slow_ms: args.slow_ms,
        request_timeout: Duration::from_secs(10),
        // Stopped explicitly; this bound only keeps a stuck run from loading forever.
        max_duration: Duration::from_secs(3600),
        ..LoadConfig::new(addr)
    };
    let load_started = SystemTime::now();
    let started = Instant::now();
    let load = Load::start(cfg.clone());
    steady(&load, Duration::from_millis(args.warmup_ms)).await?;

    let mut switches = Vec::new();
    for generation in 2..=args.restarts + 1 {
        load.set_phase(Phase::Switching);
        let from = started.elapsed();
        proc.signal(libc::SIGHUP);
        let (next, line) = proc.wait_rollout(seen, generation).await?;
        let to = started.elapsed();
        load.set_phase(Phase::Steady);
        seen = next;
        let rollout_ms = field(&line, "duration_ms")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no duration_ms in {line:?}"))?;
        switches.push(Switch {
            generation,
            from,
            to,
            rollout_ms,
        });
        eprintln!(
            "restart {}/{}: generation {generation} ready in {rollout_ms} ms; {} requests so far, {} failed",
            generation - 1,
            args.restarts,
            load.snapshot().requests,
            load.snapshot().failures
        );
        steady(&load, Duration::from_millis(args.steady_ms)).await?;
    }
    if load.is_stopping() {
        return Err("the load stopped before the last restart (max duration reached?)".into());
    }
    let report = load.stop().await;
    Ok((report, switches, load_started, cfg))
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

impl RunResult {
    fn markdown(&self) -> String {
        let r = &self.report;
        let l = &r.latency;
        let mut out = String::new();
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| SIGHUP restarts | {} |", self.switches.len());
        let _ = writeln!(
            out,
            "| instances per generation | {} (distinct instances that answered: {} of {}) |",
            self.instances,
            r.instances.len(),
            self.instances as u64 * (self.switches.len() as u64 + 1)
        );
        let _ = writeln!(
            out,
            "| load | {} keep-alive, {} new-connection, {} POST, {} slow ({} ms) workers |",
            self.load.keepalive_workers,
            self.load.fresh_workers,
            self.load.post_workers,
            self.load.slow_workers,
            self.load.slow_ms
        );
        let _ = writeln!(
            out,
            "| requests | {} in {:.1} s ({:.0} req/s) |",
            r.requests,
            r.elapsed.as_secs_f64(),
            r.requests_per_sec
        );
        let _ = writeln!(
            out,
            "| **failures** | **{}**{} |",
            r.failures,
            if r.failures > 0 {
                format!(" ({})", kinds(&r.failures_by_kind))
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "| time spent switching | {:.1} s of {:.1} s |",
            self.switching_secs(),
            r.elapsed.as_secs_f64()
        );
        let (median, p90, max) = self.rollout_stats();
        let _ = writeln!(
            out,
            "| rollout duration (SIGHUP to old generation gone) | median {median} ms, p90 {p90} ms, max {max} ms |"
        );
        let _ = writeln!(out, "| baton exit after SIGTERM | {} |", self.baton_exit);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| successful requests started | count | p50 | p99 | max |\n|---|---:|---:|---:|---:|"
        );
        for (name, s) in [
            ("outside restarts", &l.steady),
            ("during restarts", &l.switching),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} |",
                s.count,
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.max_us)
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
        out
    }

    fn json(&self) -> String {
        let r = &self.report;
        let (median, p90, max) = self.rollout_stats();
        let summary = |s: &LatencySummary| {
            format!(
                r#"{{"count":{},"p50_us":{},"p99_us":{},"max_us":{}}}"#,
                s.count, s.p50_us, s.p99_us, s.max_us
            )
        };
        let counts = |m: &BTreeMap<String, u64>| {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{v}", json_str(k)))
                .collect();
            format!("{{{}}}", parts.join(","))
        };
        let workers: Vec<String> = r
            .workers
            .iter()
            .map(|(k, w)| {
                format!(
                    r#"{}:{{"requests":{},"ok":{},"failures":{}}}"#,
                    json_str(k),
                    w.requests,
                    w.ok,
                    w.failures
                )
            })
            .collect();
        let samples: Vec<String> = r.failure_samples.iter().map(|s| json_str(s)).collect();
        let rollouts: Vec<String> = self
            .switches
            .iter()
            .map(|s| s.rollout_ms.to_string())
            .collect();
        format!(
            concat!(
                "{{",
                r#""restarts_requested":{},"restarts":{},"instances":{},"steady_ms":{},"#,
                r#""load":{{"keepalive":{},"fresh":{},"post":{},"slow":{},"slow_ms":{}}},"#,
                r#""requests":{},"ok":{},"failures":{},"failures_by_kind":{},"failure_samples":[{}],"#,
                r#""elapsed_secs":{:.3},"requests_per_sec":{:.1},"switching_secs":{:.3},"#,
                r#""latency":{{"steady":{},"switching":{}}},"#,
                r#""rollout_ms":{{"median":{},"p90":{},"max":{},"all":[{}]}},"#,
                r#""instances_seen":{},"instances_expected":{},"workers":{{{}}},"#,
                r#""load_started":{},"baton_exit_code":{}"#,
                "}}"
            ),
            self.args_restarts,
            self.switches.len(),
            self.instances,
            self.steady_ms,
            self.load.keepalive_workers,
            self.load.fresh_workers,
            self.load.post_workers,
            self.load.slow_workers,
            self.load.slow_ms,
            r.requests,
            r.ok,
            r.failures,
            counts(&r.failures_by_kind),
            samples.join(","),
            r.elapsed.as_secs_f64(),
            r.requests_per_sec,
            self.switching_secs(),
            summary(&r.latency.steady),
            summary(&r.latency.switching),
            median,
            p90,
            max,
            rollouts.join(","),
            r.instances.len(),
            self.instances as u64 * (self.switches.len() as u64 + 1),
            workers.join(","),
            json_str(&humantime::format_rfc3339_micros(self.load_started).to_string()),
            self.baton_exit
                .code()
                .map_or_else(|| "null".to_owned(), |c| c.to_string()),
        )
    }

    /// What went wrong, with baton's log around every failure sample.
    fn diagnosis(&self) -> String {
        let mut out = String::new();
        if !self.baton_exit.success() {
            let _ = writeln!(out, "baton did not stop cleanly: {}", self.baton_exit);
        }
        if self.report.failures == 0 {
            return out;
        }
        let _ = writeln!(out, "{}", self.report.failure_description());
        let _ = writeln!(
            out,
            "load started at {} (failure times are relative to it)",
            humantime::format_rfc3339_micros(self.load_started)
        );
        for sample in &self.report.failure_samples {
            let Some(at) = sample
                .strip_prefix('+')
                .and_then(|s| s.split('s').next())
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            else {
                continue;
            };
            let window = self
                .switches
                .iter()
                .find(|s| s.from <= at && at <= s.to + Duration::from_secs(1))
                .map_or_else(
                    || "outside any switch".to_owned(),
                    |s| {
                        format!(
                            "switch to generation {} (+{:.3}s..+{:.3}s)",
                            s.generation,
                            s.from.as_secs_f64(),
                            s.to.as_secs_f64()
                        )
                    },
                );
            let _ = writeln!(out, "\n== {sample}\n   during: {window}");
            let when = self.load_started + at;
            let lo = when - Duration::from_millis(1500);
            let hi = when + Duration::from_millis(500);
            for line in &self.lines {
                if line.contains("slow request started") {
                    continue;
                }
                if let Some(t) = line_time(line)
                    && lo <= t
                    && t <= hi
                {
                    let _ = writeln!(out, "   {line}");
                }
            }
        }
        out
    }

    fn switching_secs(&self) -> f64 {
        self.switches
            .iter()
            .map(|s| (s.to - s.from).as_secs_f64())
            .sum()
    }

    /// Median, 90th percentile and maximum rollout duration in ms.
    fn rollout_stats(&self) -> (u64, u64, u64) {
        let mut all: Vec<u64> = self.switches.iter().map(|s| s.rollout_ms).collect();
        if all.is_empty() {
            return (0, 0, 0);
        }
        all.sort_unstable();
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.9), all[all.len() - 1])
    }
}

/// The timestamp tracing puts first on a log line (`[err] 2026-01-01T00:00:00.000000Z  INFO ...`).
fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().nth(1)?;
    humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()
}

/// `reset=3 timeout=1`.
fn kinds(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of `key=value` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    line[start..].split_whitespace().next()
}

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
            .map_err(|e| format!("could not start baton: {e}"))?;
        let pid = child.id().ok_or("baton exited at once")?;
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
            let found = self
                .lines()
                .into_iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| pred(l));
            if let Some((i, l)) = found {
                return Ok((i + 1, l));
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    if let Some((i, l)) = self
                        .lines()
                        .into_iter()
                        .enumerate()
                        .skip(from)
                        .find(|(_, l)| pred(l))
                    {
                        return Ok((i + 1, l));
                    }
                    return Err(format!("baton's output ended before {what}"));
                }
                Err(_) => {
                    return Err(format!(
                        "timed out after {} s waiting for {what}",
                        EVENT_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    }

    /// Waits for `rollout complete generation=G` (exactly G), failing at once on `rollout failed`.
    async fn wait_rollout(
        &mut self,
        from: usize,
        generation: u64,
    ) -> Result<(usize, String), String> {
        let g = generation.to_string();
        let what = format!("rollout complete generation={generation}");
        let (next, line) = self
            .wait_line(from, &what, |l| {
                (l.contains("rollout complete") || l.contains("rollout failed"))
                    && field(l, "generation") == Some(g.as_str())
            })
            .await?;
        if line.contains("rollout failed") {
            return Err(format!("generation {generation}: {line}"));
        }
        Ok((next, line))
    }

    /// Resolves when both pipes are closed (baton and every instance are gone).
    async fn output_closed(&mut self) {
        while self.seen.changed().await.is_ok() {}
    }

    fn signal(&self, sig: i32) {
        signal(self.pid, sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Instances run in their own process groups: a run that fails must not leave them behind.
        let pids: Vec<u32> = self
            .lines()
            .iter()
            .filter(|l| l.contains("instance started"))
            .filter_map(|l| field(l, "pid")?.parse().ok())
            .collect();
        if !self.exited {
            for pid in pids {
                // Only a pid that is still one of our instances, not one reused since.
                const MARK: &[u8] = b"--app-version\0bench";
                let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(MARK.len()).any(|w| w == MARK));
                if ours {
                    signal(pid, libc::SIGKILL);
                }
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
