//! `hello`: the example HTTP app baton deploys in tests and demos (the seed
//! article's Go server, in Rust). Owns the process life: take or bind the
//! sockets, announce them, optionally misbehave (start slowly, never become
//! ready, crash), serve through `handoff::http::Server`, and turn the drain
//! outcome into the exit code.
//!
//! Exit codes: 0 drained cleanly (or stopped before becoming ready), 1 the
//! drain deadline cut connections, 3 `--exit-after`, 64 bad arguments,
//! 71 the sockets or the runtime could not be set up.
//!
//! The inherited sockets are taken before anything else, while the process
//! is still single-threaded, so `handoff` can clear the `LISTEN_*`
//! variables; that is why the tokio runtime is built by hand afterwards.

#![forbid(unsafe_code)]

mod cli;
mod events;
mod routes;
mod ws;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use handoff::http::Server;
use handoff::{DrainOutcome, Listeners, Phase, ShutdownSignals};
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::routes::App;

/// Exit code when the drain deadline cut connections.
const EXIT_DRAIN_CUT: u8 = 1;
/// Exit code of `--exit-after`, the simulated crash.
const EXIT_CRASH: i32 = 3;
/// Exit code when sockets or the runtime cannot be set up (`EX_OSERR`).
const EXIT_OSERR: u8 = 71;

fn main() -> ExitCode {
    // First of all, while single-threaded: see the module docs.
    let inherited = Listeners::inherit();
    let cli = Cli::parse_or_exit();
    init_tracing();

    let listeners = match inherited {
        Ok(Some(listeners)) => {
            tracing::info!(
                count = listeners.len(),
                "using inherited sockets, --listen ignored"
            );
            listeners
        }
        Ok(None) => match Listeners::bind(&cli.listen) {
            Ok(listeners) => listeners,
            Err(e) => return fail("could not bind the listen addresses", &e),
        },
        Err(e) => return fail("could not take the inherited sockets", &e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail("could not start the async runtime", &e),
    };
    runtime.block_on(run(cli, listeners))
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn fail(what: &str, error: &dyn std::error::Error) -> ExitCode {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(error = %chain, "{what}");
    ExitCode::from(EXIT_OSERR)
}

async fn run(cli: Cli, listeners: Listeners) -> ExitCode {
    // Signal handlers go in before the `listening on` lines: whoever has
    // read those lines may send SIGTERM, and it must mean a graceful stop.
    let mut signals = match ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => return fail("could not install the signal handlers", &e),
    };
    if let Err(e) = announce(&listeners) {
        return fail("could not report the listen addresses", &e);
    }

    if cli.never_ready {
        tracing::warn!("--never-ready: holding the sockets, never accepting nor reporting READY=1");
        let signal = signals.recv().await;
        tracing::info!(?signal, "stopping without ever having been ready");
        return ExitCode::SUCCESS;
    }
    if let Some(delay) = cli.startup_delay {
        tracing::info!(
            delay_ms = millis(delay),
            "starting slowly (--startup-delay)"
        );
        tokio::select! {
            signal = signals.recv() => {
                tracing::info!(?signal, "stopping during the startup delay");
                return ExitCode::SUCCESS;
            }
            () = tokio::time::sleep(delay) => {}
        }
    }

    // The server stops on the handlers installed above, so a signal that
    // arrived at any point since then is not lost; a second one during the
    // drain closes what is left at once.
    let server = Server::new(listeners)
        .drain_timeout(cli.drain_timeout)
        .with_signals(signals);
    let version: Arc<str> = Arc::from(cli.app_version.as_str());
    let app = App {
        version: version.clone(),
        fail_health: cli.fail_health,
        draining: server.draining(),
    };
    let mut phase = server.lifecycle();
    let exit_after = cli.exit_after;
    let watch_ready = async move {
        if phase.wait_for(|p| *p >= Phase::Ready).await.is_err() {
            return std::future::pending().await;
        }
        tracing::info!(%version, pid = std::process::id(), "ready");
        match exit_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };

    tokio::select! {
        report = server.serve(routes::router(app)) => match report {
            Ok(report) if report.outcome == DrainOutcome::Drained => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(EXIT_DRAIN_CUT),
            Err(e) => fail("could not serve", &e),
        },
        () = watch_ready => {
            tracing::warn!("--exit-after elapsed: exiting abruptly without draining");
            std::process::exit(EXIT_CRASH);
        }
    }
}

/// Prints one `listening on ADDR` line per socket; tests parse them.
fn announce(listeners: &Listeners) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for named in listeners.iter() {
        let addr = named.listener.local_addr()?;
        writeln!(out, "listening on {addr}")?;
    }
    out.flush()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
