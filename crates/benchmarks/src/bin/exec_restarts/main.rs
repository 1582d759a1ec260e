//! Failure-counting benchmark of `baton exec`: N SIGHUP restarts under load.
//!
//! Starts `baton exec --instances N -- hello`, runs a [`loadgen::Load`] against it (keep-alive, new-connection, POST
//! and slow workers), sends SIGHUP `--restarts` times, waiting each time for `rollout complete generation=K` in
//! baton's log, and prints what the load counted: requests, failures by kind, latency of requests started during a
//! switch against those started outside one, and how long each rollout took. Exits 1 if a single request failed
//! (or baton did not stop cleanly), 2 if the run itself could not be carried out.
//!
//! ```sh
//! cargo build --release -p baton -p hello -p benchmarks
//! target/release/exec_restarts --restarts 50            # Markdown summary on stdout
//! target/release/exec_restarts --json > run.json        # JSON on stdout, Markdown on stderr
//! ```
//!
//! `bench/exec-restarts.sh` runs it and records the figures in `docs/BENCHMARKS.md`. This is a benchmark, not a
//! test: it waits on log lines for every event, but holds a fixed steady period between restarts so that "outside
//! restarts" latency has samples.

mod report;

use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

use benchmarks::{runtime, sibling, spawn_baton, steady, stop_baton, write_log};
use clap::Parser;
use loadgen::{Load, LoadConfig, Phase, Report};
use testkit::{Proc, field};
use tokio::process::Command;

/// SIGHUP restarts of `baton exec` under failure-counting load.
#[derive(Debug, Parser)]
#[command(name = "exec_restarts")]
struct Args {
    /// The `baton` binary (default: `baton` next to this program).
    #[arg(long)]
    baton: Option<PathBuf>,
    /// The `hello` binary (default: `hello` next to this program).
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

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match runtime() {
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

async fn run(args: &Args) -> anyhow::Result<RunResult> {
    let baton = sibling(&args.baton, "baton");
    let hello = sibling(&args.hello, "hello");
    for bin in [&baton, &hello] {
        if !bin.exists() {
            return Err(anyhow::anyhow!(
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
    let mut proc = spawn_baton(&mut cmd)?;
    let result = drive(args, &mut proc).await;
    let lines = proc.lines();
    if let Some(path) = &args.log {
        write_log(path, &lines)?;
    }
    let (report, switches, load_started, load) = result.map_err(|e| {
        let tail = lines.len().saturating_sub(60);
        anyhow::anyhow!(
            "{e}\n--- last lines of baton's output ---\n{}",
            lines[tail..].join("\n")
        )
    })?;

    let baton_exit = stop_baton(&mut proc).await?;
    let lines = proc.lines();
    if let Some(path) = &args.log {
        write_log(path, &lines)?;
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

async fn drive(args: &Args, proc: &mut Proc) -> anyhow::Result<Driven> {
    let (_, line) = proc
        .wait_from(0, "the listening on line", |l| {
            l.starts_with("[out] listening on ")
        })
        .await?;
    let addr = line
        .rsplit("listening on ")
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("bad address in {line:?}: {e}"))?;
    let (mut seen, _) = wait_rollout(proc, 0, 1).await?;

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
        let (next, line) = wait_rollout(proc, seen, generation).await?;
        let to = started.elapsed();
        load.set_phase(Phase::Steady);
        seen = next;
        let rollout_ms = field(&line, "duration_ms")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no duration_ms in {line:?}"))?;
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
        return Err(anyhow::anyhow!(
            "the load stopped before the last restart (max duration reached?)"
        ));
    }
    let report = load.stop().await;
    Ok((report, switches, load_started, cfg))
}

/// Waits for `rollout complete generation=G` (exactly G) from line `from` on, failing at once on `rollout failed`.
async fn wait_rollout(
    proc: &mut Proc,
    from: usize,
    generation: u64,
) -> anyhow::Result<(usize, String)> {
    let g = generation.to_string();
    let what = format!("rollout complete generation={generation}");
    let (next, line) = proc
        .wait_from(from, &what, |l| {
            (l.contains("rollout complete") || l.contains("rollout failed"))
                && field(l, "generation") == Some(g.as_str())
        })
        .await?;
    if line.contains("rollout failed") {
        return Err(anyhow::anyhow!("generation {generation}: {line}"));
    }
    Ok((next, line))
}
