//! The `baton` binary: parses the command line, takes inherited sockets while
//! the process is still single-threaded, and hands over to a subcommand.
//! It holds no logic of its own beyond exit codes.

#![forbid(unsafe_code)]

mod cli;
mod control;
mod exec;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// `EX_USAGE` from sysexits.h: bad arguments or configuration.
pub const EXIT_USAGE: u8 = 64;

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
        cli::Command::Exec(args) => exec::main(args),
        cli::Command::Serve(args) => serve::main(args),
        cli::Command::Check(args) => serve::check(args),
        cli::Command::Deploy(args) => deploy_main(args),
        cli::Command::Rollback(args) => rollback_main(args),
        cli::Command::Status(args) => status_main(args),
    }
}

/// The single-threaded runtime both long-running subcommands use: their
/// work is a few sockets and child processes, not CPU.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("baton: could not start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn deploy_main(args: cli::DeployArgs) -> ExitCode {
    let req = control::DeployRequest {
        service: args.service,
        version: args.version,
    };
    let json = args.json;
    run_client(
        |rt| rt.block_on(control::request_deploy(&args.control, &req)),
        json,
        "deployed",
    )
}

fn rollback_main(args: cli::RollbackArgs) -> ExitCode {
    let json = args.json;
    run_client(
        |rt| rt.block_on(control::request_rollback(&args.control, &args.service)),
        json,
        "rolled back",
    )
}

fn status_main(args: cli::StatusArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(control::request_status(&args.control)) {
        Ok(value) if args.json => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Ok(value) => {
            println!(
                "{:<16} {:<11} {:<12} {:>7}  LAST DEPLOY",
                "SERVICE", "KIND", "VERSION", "ROUTED"
            );
            for s in value.as_array().into_iter().flatten() {
                let last = s["history"]
                    .as_array()
                    .and_then(|h| h.last())
                    .map(|d| {
                        format!(
                            "{} {} ({})",
                            d["started"].as_str().unwrap_or(""),
                            d["version"].as_str().unwrap_or(""),
                            d["outcome"].as_str().unwrap_or("")
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<16} {:<11} {:<12} {:>7}  {last}",
                    s["name"].as_str().unwrap_or("?"),
                    s["kind"].as_str().unwrap_or("?"),
                    s["version"].as_str().unwrap_or("-"),
                    s["members"].as_array().map_or(0, |m| m.len()),
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baton: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a deploy-like request and turns the answer into output and an exit
/// code: 0 done, 1 failed (nothing changed, the old version serves), 64 for
/// a request that names nothing (unknown service, bad version).
fn run_client(
    call: impl FnOnce(&tokio::runtime::Runtime) -> anyhow::Result<(u16, control::DeployResponse)>,
    json: bool,
    verb: &str,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match call(&runtime) {
        Ok((status, answer)) => {
            if json {
                println!("{}", serde_json::to_string(&answer).unwrap_or_default());
            }
            if status == 200 {
                if !json {
                    println!(
                        "{verb} {} {} (generation {}) in {:.1} s",
                        answer.service,
                        answer.version,
                        answer.generation.unwrap_or_default(),
                        answer.duration_ms.unwrap_or_default() as f64 / 1000.0
                    );
                }
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "baton: {}",
                answer.error.as_deref().unwrap_or("request failed")
            );
            if matches!(status, 400 | 404) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("baton: {e:#}");
            ExitCode::FAILURE
        }
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
