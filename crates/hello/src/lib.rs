//! `hello`: the example HTTP app baton deploys in tests and demos (it answers
//! with its version and process id), as a library so that the `baton` binary
//! can run it in-process (`baton demo-app`) as well as the `hello` binary.
//! Owns the process life: take or bind the sockets, announce them,
//! optionally misbehave (start slowly, never become ready, crash, answer
//! errors or slowly), serve through `handoff::http::Server`, and turn the
//! drain outcome into the exit code.
//!
//! Exit codes: 0 drained cleanly (or stopped before becoming ready), 1 the
//! drain deadline cut connections, 3 `--exit-after` (or the `crash` tag),
//! 64 bad arguments (including unknown fault tags), 71 the sockets or the
//! runtime could not be set up.
//!
//! The inherited sockets are taken before anything else, while the process
//! is still single-threaded, so `handoff` can clear the `LISTEN_*`
//! variables; that is why [`run`] builds its tokio runtime by hand
//! afterwards, and why it must be called before the process starts threads.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cli;
mod events;
mod faults;
mod routes;
mod ws;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use handoff::http::Server;
use handoff::{DrainOutcome, Listeners, Phase, ShutdownSignals};
use tracing_subscriber::EnvFilter;

pub use crate::cli::{Args, EXIT_USAGE};
use crate::faults::{Faults, RequestFaults};
use crate::routes::App;

/// Exit code when the drain deadline cut connections.
const EXIT_DRAIN_CUT: u8 = 1;
/// Exit code of `--exit-after`, the simulated crash.
const EXIT_CRASH: i32 = 3;
/// Exit code when sockets or the runtime cannot be set up (`EX_OSERR`).
const EXIT_OSERR: u8 = 71;

/// Runs the app until it is stopped and returns the process exit code.
///
/// Call it on the main thread before any other thread exists (no tokio
/// runtime yet): it takes the inherited sockets first, then builds its own
/// runtime. It installs a `tracing` subscriber logging to stderr unless the
/// caller has installed one already. `--exit-after` ends the whole process.
pub fn run(args: Args) -> ExitCode {
    // First of all, while single-threaded: see the module docs.
    let inherited = Listeners::inherit();
    let faults = match args.faults() {
        Ok(faults) => faults,
        Err(e) => {
            // A usage error, reported like clap's whatever the log filter.
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing();

    let listeners = match inherited {
        Ok(Some(listeners)) => {
            tracing::info!(
                count = listeners.len(),
                "using inherited sockets, --listen ignored"
            );
            listeners
        }
        Ok(None) => match Listeners::bind(&args.listen) {
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
    runtime.block_on(serve(args, faults, listeners))
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise; keeps the
/// subscriber of a caller that installed one (`baton demo-app`).
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
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

async fn serve(args: Args, faults: Faults, listeners: Listeners) -> ExitCode {
    // Signal handlers go in before the `listening on` lines: whoever has
    // read those lines may send SIGTERM, and it must mean a graceful stop.
    let mut signals = match ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => return fail("could not install the signal handlers", &e),
    };
    if let Err(e) = announce(&listeners) {
        return fail("could not report the listen addresses", &e);
    }
    if faults != Faults::default() {
        tracing::warn!(
            version = %args.app_version,
            never_ready = faults.never_ready,
            fail_health = faults.fail_health,
            exit_after_ms = faults.exit_after.map(millis),
            error_rate = faults.error_rate,
            added_latency_ms = faults.added_latency.map(millis),
            "faults switched on"
        );
    }

    if faults.never_ready {
        tracing::warn!("never ready: holding the sockets, never accepting nor reporting READY=1");
        let signal = signals.recv().await;
        tracing::info!(?signal, "stopping without ever having been ready");
        return ExitCode::SUCCESS;
    }
    if let Some(delay) = args.startup_delay {
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
        .drain_timeout(args.drain_timeout)
        .with_signals(signals);
    let version: Arc<str> = Arc::from(args.app_version.as_str());
    let app = App {
        version: version.clone(),
        fail_health: faults.fail_health,
        faults: Arc::new(RequestFaults::new(&faults)),
        draining: server.draining(),
        slow_in_flight: Arc::default(),
    };
    // Says how many slow requests were still being served when the drain
    // began: a process manager that stops routing first and waits for the
    // requests in flight leaves none (the end-to-end tests check it).
    let mut drain_phase = server.lifecycle();
    let slow_in_flight = app.slow_in_flight.clone();
    tokio::spawn(async move {
        if drain_phase
            .wait_for(|p| *p >= Phase::Draining)
            .await
            .is_ok()
        {
            let n = slow_in_flight.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(slow_in_flight = n, "drain began");
        }
    });
    let mut phase = server.lifecycle();
    let exit_after = faults.exit_after;
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
            tracing::warn!("exit-after elapsed: exiting abruptly without draining");
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
