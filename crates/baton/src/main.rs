//! The `baton` binary: parses the command line, takes inherited sockets while
//! the process is still single-threaded, and hands over to a subcommand.
//! It holds no logic of its own beyond exit codes.

#![forbid(unsafe_code)]

mod admin;
mod certs;
mod cli;
mod client;
mod cluster;
mod control;
mod dashboard;
mod demo;
mod desired;
mod exec;
mod metrics;
mod reload;
mod serve;
mod systemd;
mod upgrade;

use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;

/// `EX_USAGE` from sysexits.h: bad arguments or configuration.
pub const EXIT_USAGE: u8 = 64;
/// `EX_TEMPFAIL` from sysexits.h: try again later (a deploy is running).
pub const EXIT_TEMPFAIL: u8 = 75;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    match cli.command {
        cli::Command::Exec(args) => {
            raise_open_files_limit();
            exec::main(args)
        }
        cli::Command::Serve(args) => {
            raise_open_files_limit();
            serve::main(args)
        }
        cli::Command::Check(args) => serve::check(args),
        cli::Command::Deploy(args) => client::deploy(
            &args.to,
            "/v1/deploy",
            &client::deploy_request(&args),
            "deployed",
        ),
        cli::Command::Rollback(args) => client::deploy(
            &args.to,
            "/v1/rollback",
            &client::rollback_request(&args.service),
            "rolled back",
        ),
        cli::Command::Status(args) => client::status(&args.to),
        cli::Command::Pause(args) => client::ack(
            &args.to,
            "/v1/pause",
            client::pause_body(&args),
            &format!("paused {}", args.service),
        ),
        cli::Command::Resume(args) => client::ack(
            &args.to,
            "/v1/resume",
            client::service_body(&args.service),
            &format!("resumed {}", args.service),
        ),
        cli::Command::Reload(args) => client::ack(
            &args.to,
            "/v1/reload",
            serde_json::to_vec(&reload::ReloadRequest { force: args.force }).ok(),
            "config reloaded",
        ),
        cli::Command::Upgrade(args) => client::ack(
            &args.to,
            "/v1/upgrade",
            serde_json::to_vec(&control::UpgradeRequest {
                timeout_ms: Some(args.timeout.as_millis().min(u128::from(u64::MAX)) as u64),
            })
            .ok(),
            "upgraded: the new baton serves; the old one drains and exits",
        ),
        cli::Command::SystemdUnit(args) => systemd::main(args),
        cli::Command::Diff(args) => desired::diff(&args),
        cli::Command::Apply(args) => desired::apply(&args),
        cli::Command::Demo(args) => demo::main(args),
        cli::Command::DemoApp(args) => hello::run(args),
    }
}

/// The single-threaded runtime of `baton exec` and the client commands:
/// their work is a few sockets and child processes, not CPU.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("baton: could not start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// The runtime of `baton serve`: `workers` threads run every task — client
/// connections, upstream connections, checks, the control socket — and
/// steal work from each other, so that a connection waiting on a busy
/// thread is taken up by an idle one. The thread that calls `block_on`
/// only waits for signals and the end of the proxy. One worker is a
/// single-threaded runtime on that thread itself: no cross-thread wake-ups
/// at all.
///
/// Returns once every worker thread runs (under its name), so that what is
/// logged next is true of the process.
fn serve_runtime(workers: NonZeroUsize) -> Result<tokio::runtime::Runtime, ExitCode> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, PoisonError};

    let failed = |e: std::io::Error| {
        eprintln!("baton: could not start the runtime with {workers} worker threads: {e}");
        ExitCode::FAILURE
    };
    if workers.get() == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed);
    }
    // The runtime starts its workers first, when it is built; threads it
    // starts later run blocking work (parsing a config at reload).
    let named = AtomicUsize::new(0);
    let running = Arc::new((Mutex::new(0usize), Condvar::new()));
    let started = running.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.get())
        .thread_name_fn(move || {
            if named.fetch_add(1, Ordering::Relaxed) < workers.get() {
                "baton-worker".to_owned()
            } else {
                "baton-blocking".to_owned()
            }
        })
        .on_thread_start(move || {
            let (count, changed) = &*started;
            *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            changed.notify_all();
        })
        .enable_all()
        .build()
        .map_err(failed)?;
    let (count, changed) = &*running;
    let count = count.lock().unwrap_or_else(PoisonError::into_inner);
    // Bounded: a thread that never starts must not keep baton from serving.
    let _ = changed.wait_timeout_while(count, std::time::Duration::from_secs(10), |n| {
        *n < workers.get()
    });
    Ok(runtime)
}

/// `baton serve` holds a descriptor per client connection and per upstream
/// connection, and the instances `baton exec` runs (which inherit the limit)
/// one per client: a soft limit of 1,024 would refuse clients long before
/// anything configured does.
fn raise_open_files_limit() {
    match handoff::raise_open_files_limit() {
        Ok(limit) if limit.now > limit.before => {
            tracing::info!(
                before = limit.before,
                now = limit.now,
                "open files limit raised"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
