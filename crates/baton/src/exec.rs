//! `baton exec`: holds the listening sockets for the life of the process and
//! runs the app through a supervisor group. Signals drive it: SIGHUP rolls
//! out a new generation, SIGTERM/SIGINT stop every instance gracefully (a
//! second one kills them). The sockets are never closed before exit, so no
//! connection is refused while generations change. `--restart` decides
//! whether an instance that exits on its own is replaced.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use handoff::{Listener, Listeners, NamedListener};
use supervisor::{
    Backoff, Bounds, CommandSource, CommandSpec, Group, GroupConfig, Readiness, Restart, Sockets,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::EXIT_USAGE;
use crate::cli::{ExecArgs, ReadyMode};

pub fn main(args: ExecArgs) -> ExitCode {
    // Taken before the runtime starts its threads, so LISTEN_* is cleared.
    let inherited = match Listeners::inherit() {
        Ok(l) => l,
        Err(e) => return usage(&e),
    };
    let bounds = Bounds {
        instances: args.instances as usize,
        max_surge: args.max_surge as usize,
        max_unavailable: args.max_unavailable as usize,
    };
    if let Err(e) = bounds.validate() {
        return usage(&e);
    }
    let command = match CommandSpec::new(&args.command) {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    let listeners = match inherited {
        Some(l) => {
            if !args.listen.is_empty() {
                tracing::warn!("sockets inherited from the service manager; ignoring --listen");
            }
            l.into_vec()
        }
        None if args.listen.is_empty() => {
            return usage(
                &"no socket to hold: give --listen ADDR (or run under socket activation)",
            );
        }
        None => match bind_all(&args) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("baton: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    if let Err(e) = announce(&listeners) {
        eprintln!("baton: {e:#}");
        return ExitCode::FAILURE;
    }
    let config = GroupConfig {
        command: CommandSource::Fixed(command),
        sockets: Sockets::Shared(Arc::new(listeners)),
        bounds,
        readiness: match args.ready {
            ReadyMode::Notify => Readiness::Notify,
            ReadyMode::Delay(d) => Readiness::Delay(d),
        },
        ready_timeout: args.ready_timeout,
        drain_timeout: args.drain_timeout,
        backoff: Backoff::default(),
        restart: args.restart.into(),
        after_ready: None,
        before_stop: None,
    };
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("baton: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--restart`: the supervisor's [`Restart`] as the command line spells it
/// (the doc comments are the help's descriptions of the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartMode {
    /// Restart it whatever its exit status.
    Always,
    /// Restart it only after a non-zero exit code, a death by signal or a
    /// readiness failure; after exit code 0 its slot stays empty.
    OnFailure,
    /// Never restart it; its slot stays empty.
    Never,
}

impl From<RestartMode> for Restart {
    fn from(mode: RestartMode) -> Restart {
        match mode {
            RestartMode::Always => Restart::Always,
            RestartMode::OnFailure => Restart::OnFailure,
            RestartMode::Never => Restart::Never,
        }
    }
}

fn usage(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("baton: {e}");
    ExitCode::from(EXIT_USAGE)
}

fn bind_all(args: &ExecArgs) -> anyhow::Result<Vec<NamedListener>> {
    args.listen
        .iter()
        .map(|a| {
            Ok(NamedListener {
                name: a.name.clone(),
                listener: Listener::bind(&a.addr)?,
            })
        })
        .collect()
}

/// One stdout line per socket, with the real port when bound to port 0.
fn announce(listeners: &[NamedListener]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for l in listeners {
        let addr = l
            .listener
            .local_addr()
            .context("could not read a listener's address")?;
        writeln!(out, "listening on {addr}")?;
        tracing::info!(name = %l.name, %addr, "holding socket");
    }
    out.flush()?;
    Ok(())
}

async fn run(config: GroupConfig) -> anyhow::Result<ExitCode> {
    // Handlers before the first child exists: no signal may be missed.
    let mut hup = signal(SignalKind::hangup()).context("could not handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;

    let group = Group::start(config).context("could not start the app")?;
    let mut shutdown = None;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: replacing every instance");
                let group = group.clone();
                // The group logs the outcome; nothing waits for it here.
                tokio::spawn(async move { let _ = group.reload().await; });
            }
            _ = term.recv() => shutdown = Some(begin_stop(&group, shutdown)),
            _ = int.recv() => shutdown = Some(begin_stop(&group, shutdown)),
            summary = wait(&mut shutdown) => {
                let summary = summary.context("the supervisor stopped unexpectedly")?;
                return Ok(if summary.clean() {
                    tracing::info!(instances = summary.stopped, "all instances stopped cleanly");
                    ExitCode::SUCCESS
                } else {
                    tracing::error!(
                        instances = summary.stopped,
                        killed = summary.killed,
                        failed = summary.failed,
                        "instances did not all stop cleanly"
                    );
                    ExitCode::FAILURE
                });
            }
        }
    }
}

type Pending = tokio::task::JoinHandle<Result<supervisor::ExitSummary, supervisor::GroupError>>;

/// The first stop signal drains; a second one kills.
fn begin_stop(group: &Group, pending: Option<Pending>) -> Pending {
    match pending {
        None => {
            tracing::info!("stopping: draining every instance (signal again to kill)");
            let group = group.clone();
            tokio::spawn(async move { group.shutdown().await })
        }
        Some(p) => {
            tracing::warn!("second stop signal: killing every instance");
            group.kill();
            p
        }
    }
}

async fn wait(
    pending: &mut Option<Pending>,
) -> Result<supervisor::ExitSummary, supervisor::GroupError> {
    match pending {
        Some(p) => p.await.unwrap_or(Err(supervisor::GroupError)),
        None => std::future::pending().await,
    }
}
