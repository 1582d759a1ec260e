//! What the benchmark programs share: starting `baton` so that it never outlives them, letting the load run
//! steadily, and reading baton's log. The programs (`src/bin/`) are run by `bench/*.sh`, which record their figures
//! in `docs/BENCHMARKS.md`; they are never built by `cargo test`.
//!
//! A benchmark waits on log lines for every event it can; only the steady periods between events are fixed, so that
//! "outside a deploy/restart" latency has samples.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};

use loadgen::{LatencySummary, Load, Report};
use testkit::Proc;
use tokio::process::Command;

/// Longest wait for a log line or for baton's exit.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `cmd` (a `baton` command) with its output collected. Should this process die (a timeout, a panic), baton
/// gets SIGTERM and drains its instances instead of lingering. The signal comes when the spawning *thread* ends: call
/// this from the thread that lives as long as the process (the one in `block_on`).
#[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
pub fn spawn_baton(cmd: &mut Command) -> anyhow::Result<Proc> {
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
    Proc::try_spawn(cmd)
        .map(|p| p.with_timeout(EVENT_TIMEOUT))
        .map_err(|e| anyhow::anyhow!("could not start baton: {e}"))
}

/// The runtime both programs run on: two worker threads (the load's workers and the readers of baton's output).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Stops baton with SIGTERM and waits for it to exit (bounded by [`EVENT_TIMEOUT`]), then at most 5 s more for the
/// last lines (its pipes close once every instance is gone too). Baton drains its instances itself: from then on
/// none is killed when `proc` is dropped.
pub async fn stop_baton(proc: &mut Proc) -> anyhow::Result<ExitStatus> {
    proc.signal(libc::SIGTERM);
    let exit = tokio::time::timeout(EVENT_TIMEOUT, proc.child.wait())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "baton did not exit within {} s of SIGTERM",
                EVENT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| anyhow::anyhow!("could not wait for baton: {e}"))?;
    proc.instances_stopped();
    let _ = tokio::time::timeout(Duration::from_secs(5), proc.output_closed()).await;
    Ok(exit)
}

/// Writes baton's collected output to `path`, a line each.
pub fn write_log(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text)
        .map_err(|e| anyhow::anyhow!("could not write the log {}: {e}", path.display()))
}

/// The Markdown table of the load's workers: requests, successes and failures of each kind.
pub fn workers_table(report: &Report) -> String {
    let mut out = String::from("| worker | requests | ok | failed |\n|---|---:|---:|---:|\n");
    for (kind, w) in &report.workers {
        let _ = writeln!(
            out,
            "| {kind} | {} | {} | {} |",
            w.requests, w.ok, w.failures
        );
    }
    out
}

/// The Markdown table of successful requests' latency by phase: `rows` are (the phase's label, its summary); the
/// p99 column is bold when `bold_p99`.
pub fn latency_table(rows: [(&str, &LatencySummary); 2], bold_p99: bool) -> String {
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    let mut out = String::from(
        "| successful requests started | count | p50 | p99 | max |\n|---|---:|---:|---:|---:|\n",
    );
    for (name, s) in rows {
        let p99 = if bold_p99 {
            format!("**{}**", ms(s.p99_us))
        } else {
            ms(s.p99_us)
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {p99} | {} |",
            s.count,
            ms(s.p50_us),
            ms(s.max_us)
        );
    }
    out
}

/// A binary next to this program's own (the bench scripts copy them side by side; cargo builds them into the same
/// `target/release/`), unless `given`.
pub fn sibling(given: &Option<std::path::PathBuf>, name: &str) -> std::path::PathBuf {
    given.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(name)))
            .unwrap_or_else(|| name.into())
    })
}

/// Lets the load run in the steady phase for `period`, and until some requests succeeded.
pub async fn steady(load: &Load, period: Duration) -> anyhow::Result<()> {
    let progressed = async {
        tokio::time::timeout(EVENT_TIMEOUT, load.wait_for_requests(20))
            .await
            .unwrap_or(false)
    };
    let (progressed, ()) = tokio::join!(progressed, tokio::time::sleep(period));
    if progressed {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the load made no progress (20 successful requests) within {} s: {}",
            EVENT_TIMEOUT.as_secs(),
            load.snapshot()
        ))
    }
}

/// The timestamp tracing puts first on a log line (`[err] 2026-01-01T00:00:00.000000Z  INFO ...`).
pub fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().nth(1)?;
    humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()
}

/// Failure counts by kind: `reset=3 timeout=1`.
pub fn kinds(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}
