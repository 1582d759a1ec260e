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
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let req = control::DeployRequest {
        service: args.service,
        version: args.version,
    };
    match runtime.block_on(control::request_deploy(&args.control, &req)) {
        Ok((status, answer)) => {
            if args.json {
                println!("{}", serde_json::to_string(&answer).unwrap_or_default());
            }
            match (status, &answer.error) {
                (200, _) => {
                    if !args.json {
                        println!(
                            "deployed {} {} (generation {}) in {:.1} s",
                            answer.service,
                            answer.version,
                            answer.generation.unwrap_or_default(),
                            answer.duration_ms.unwrap_or_default() as f64 / 1000.0
                        );
                    }
                    ExitCode::SUCCESS
                }
                (status, error) => {
                    eprintln!("baton: {}", error.as_deref().unwrap_or("deploy failed"));
                    // An unknown service or a bad version changed nothing.
                    if matches!(status, 400 | 404) {
                        ExitCode::from(EXIT_USAGE)
                    } else {
                        ExitCode::FAILURE
                    }
                }
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
