//! Upgrades of the proxy itself under failure-counting load: `baton upgrade`, nginx's binary upgrade and HAProxy's
//! master-worker reload, in one run, alternating.
//!
//! One `hello` backend; in front of it `baton serve`, nginx (a master and one worker) and HAProxy (`-W`, a master
//! and one worker), all started once and kept. Then, `--upgrades` times for each in turn (baton, nginx, HAProxy,
//! baton, …), one cycle: a fresh [`loadgen::Load`] (keep-alive, new-connection, POST and slow workers) against that
//! proxy, `--steady-ms` of steady load, the upgrade, `--steady-ms` of steady load again, the load stopped. The
//! upgrade phase runs from the signal until the old process is gone (`sides` says what each proxy's upgrade and old
//! process are). Each cycle yields the failures of keep-alive and of new-connection workers, the p99 of requests
//! started during the upgrade and of those started in the steady periods around it, and the time from the signal
//! until the old process was gone. Prints the Markdown summary (medians and ranges per proxy), or `--json`.
//!
//! ```sh
//! cargo build --release -p baton -p hello -p benchmarks
//! target/release/upgrade_bench --upgrades 7 --dir /tmp/upg     # nginx and haproxy from PATH
//! ```
//!
//! `bench/upgrade.sh` runs it and records the figures in `docs/BENCHMARKS.md`. Exits 1 if a baton upgrade lost a
//! request or failed (the peers' failures are their figures, not errors), 2 if the run could not be carried out.

mod report;
mod sides;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benchmarks::{runtime, sibling, spawn_baton};
use clap::Parser;
use loadgen::{Load, LoadConfig, Phase};
use testkit::Proc;
use tokio::process::Command;

use report::{Cycle, Summary};
use sides::{Kind, Side};

/// Upgrades of baton, nginx and HAProxy under failure-counting load.
#[derive(Debug, Parser)]
#[command(name = "upgrade_bench")]
struct Args {
    /// The `baton` binary (default: `baton` next to this program).
    #[arg(long)]
    baton: Option<PathBuf>,
    /// The `hello` binary (default: `hello` next to this program).
    #[arg(long)]
    hello: Option<PathBuf>,
    /// The nginx binary (an absolute path: the binary upgrade executes it again).
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// The HAProxy binary (an absolute path: the master executes it again).
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    haproxy: PathBuf,
    /// A directory for the configs, pid files, logs and the control socket (short: it holds a Unix socket).
    #[arg(long)]
    dir: PathBuf,
    /// Upgrades of each proxy.
    #[arg(long, default_value_t = 7)]
    upgrades: usize,
    /// Steady load before and after each upgrade, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    steady_ms: u64,
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
    /// Print the result as JSON on stdout (the Markdown summary goes to stderr).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("upgrade_bench: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(summary) => {
            let markdown = summary.markdown();
            if args.json {
                eprintln!("{markdown}");
                println!("{}", summary.json());
            } else {
                println!("{markdown}");
            }
            if summary.baton_failed() {
                eprintln!("upgrade_bench: baton lost requests during its upgrades");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("upgrade_bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<Summary> {
    let baton = sibling(&args.baton, "baton");
    let hello = sibling(&args.hello, "hello");
    for bin in [&baton, &hello, &args.nginx, &args.haproxy] {
        if !bin.exists() {
            anyhow::bail!("{} does not exist", bin.display());
        }
    }
    std::fs::create_dir_all(&args.dir)?;
    let mut backend_cmd = Command::new(&hello);
    backend_cmd.args(["--listen", "127.0.0.1:0", "--app-version", "bench"]);
    let mut backend: Proc = spawn_baton(&mut backend_cmd)?;
    let (_, line) = backend
        .wait_from(0, "hello's listening on line", |l| {
            l.starts_with("[out] listening on ")
        })
        .await?;
    let backend_addr = line
        .rsplit("listening on ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();

    let mut sides = vec![
        Side::start(Kind::Baton, &baton, &args.dir, &backend_addr).await?,
        Side::start(Kind::Nginx, &args.nginx, &args.dir, &backend_addr).await?,
        Side::start(Kind::Haproxy, &args.haproxy, &args.dir, &backend_addr).await?,
    ];
    let result = cycles(args, &mut sides).await;
    for side in &mut sides {
        side.stop().await;
    }
    let cycles = result?;
    Ok(Summary {
        upgrades: args.upgrades,
        steady_ms: args.steady_ms,
        load: load_config(args, "127.0.0.1:1".parse()?),
        cycles,
        versions: sides.iter().map(|s| (s.kind, s.version.clone())).collect(),
    })
}

fn load_config(args: &Args, target: std::net::SocketAddr) -> LoadConfig {
    LoadConfig {
        keepalive_workers: args.keepalive,
        fresh_workers: args.fresh,
        post_workers: args.post,
        slow_workers: args.slow,
        slow_ms: args.slow_ms,
        request_timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(600),
        ..LoadConfig::new(target)
    }
}

async fn cycles(args: &Args, sides: &mut [Side]) -> anyhow::Result<Vec<Cycle>> {
    let mut out = Vec::new();
    let steady = Duration::from_millis(args.steady_ms);
    for n in 1..=args.upgrades {
        for side in sides.iter_mut() {
            let load = Load::start(load_config(args, side.addr));
            benchmarks::steady(&load, steady).await?;
            load.set_phase(Phase::Switching);
            let started = Instant::now();
            let upgraded = side.upgrade().await;
            load.set_phase(Phase::Steady);
            let (upgraded, gone) = match upgraded {
                Ok(gone) => (true, gone),
                Err(e) => {
                    eprintln!("{} upgrade {n}: {e:#}", side.kind);
                    (false, started.elapsed())
                }
            };
            benchmarks::steady(&load, steady).await?;
            let report = load.stop().await;
            let cycle = Cycle::new(side.kind, n, upgraded, gone, &report);
            eprintln!("{cycle}");
            if report.failures > 0 {
                eprintln!("{}", report.failure_description());
            }
            out.push(cycle);
        }
    }
    Ok(out)
}
