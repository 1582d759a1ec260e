//! Where a reload of a large config spends its time, stage by stage, in
//! one process: parsing and validating the file (`config::parse`), the
//! copies of the config the deploy engine makes, and building and swapping
//! the proxy's snapshot (`Proxy::reload`, routers included). Prints the
//! median and the maximum of each stage over `--rounds` rounds; `bench/proxy.sh`
//! puts them next to the whole reload as `baton serve` logs it.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Routes in the large config.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Rounds of each stage.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

/// The config `bench/proxy.sh` reloads into: one listener, one pool, `/`,
/// `/echo`, `/slow` and exact paths `/r/N`, `routes` routes in all.
fn config(routes: usize) -> String {
    let mut text = String::from(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[pool.app]\nmembers = [{ address = \"127.0.0.1:9\" }]\n",
    );
    for path in ["/", "/echo", "/slow"].into_iter().take(routes) {
        text.push_str(&format!("\n[[route]]\npath = \"{path}\"\npool = \"app\"\n"));
    }
    for i in 0..routes.saturating_sub(3) {
        text.push_str(&format!("\n[[route]]\npath = \"/r/{i}\"\npool = \"app\"\n"));
    }
    text
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let out = f();
            let elapsed = start.elapsed();
            drop(out);
            elapsed
        })
        .collect();
    spread(times)
}

/// Median and maximum.
fn spread(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rounds = args.rounds.max(1);
    let big = config(args.routes);
    let small = config(1);
    let parse = |text: &str| config::parse(text, "reload.toml").map_err(|e| anyhow::anyhow!("{e}"));
    let big_cfg = parse(&big)?;
    let small_cfg = parse(&small)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start a runtime")?;
    let _entered = runtime.enter();
    let proxy = proxy::Proxy::new(&small_cfg).map_err(|e| anyhow::anyhow!("{:?}", e.0))?;

    let mut rows = Vec::new();
    rows.push(("parse and validate", time(rounds, || parse(&big).map(drop))));
    rows.push(("clone the config", time(rounds, || big_cfg.clone())));
    let clone = big_cfg.clone();
    let drop_one = {
        let start = Instant::now();
        drop(clone);
        start.elapsed()
    };
    rows.push(("drop the config (once)", (drop_one, drop_one)));
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        proxy
            .reload(&big_cfg)
            .map_err(|e| anyhow::anyhow!("{:?}", e.0))?;
        up.push(start.elapsed());
        let start = Instant::now();
        proxy
            .reload(&small_cfg)
            .map_err(|e| anyhow::anyhow!("{:?}", e.0))?;
        down.push(start.elapsed());
    }
    rows.push(("proxy: 1 → N routes", spread(up)));
    rows.push(("proxy: N → 1 route", spread(down)));
    println!("{} routes, {} rounds: median / max", args.routes, rounds);
    for (stage, (median, max)) in rows {
        println!(
            "{stage:<24} {:>8.2} ms {:>8.2} ms",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
