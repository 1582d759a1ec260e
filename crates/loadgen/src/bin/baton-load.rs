//! `baton-load`: run a failure-counting load against an HTTP service and report.
//!
//! A thin shell over [`loadgen::Load`]: parse arguments, run until `--duration`, `--max-requests` or Ctrl-C,
//! print the report (human or `--json`), and exit 1 if any request failed, 0 if none did, 64 on bad arguments.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use humantime::parse_duration;
use loadgen::{Load, LoadConfig, Report};

/// Exit status for a usage error (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// Load an HTTP service (HTTP/1.1, HTTP/2, WebSocket, SSE) and count every failed request.
#[derive(Debug, Parser)]
#[command(name = "baton-load", version)]
struct Args {
    /// Address to load, e.g. 127.0.0.1:8080.
    #[arg(long)]
    target: SocketAddr,
    /// Host header to send (default: the target address).
    #[arg(long)]
    host: Option<String>,
    /// How long to run, e.g. 500ms, 10s, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Workers sending GET / on one keep-alive connection each.
    #[arg(long, default_value_t = 2)]
    keepalive: usize,
    /// Workers sending GET / on a new connection per request.
    #[arg(long, default_value_t = 2)]
    fresh: usize,
    /// Workers sending POST /echo (1 B .. 64 KiB) on keep-alive connections.
    #[arg(long, default_value_t = 1)]
    post: usize,
    /// Workers sending GET /slow?ms=N on keep-alive connections.
    #[arg(long, default_value_t = 1)]
    slow: usize,
    /// Milliseconds each slow request asks the server to take.
    #[arg(long, default_value_t = 300)]
    slow_ms: u64,
    /// Workers sending binary messages on a WebSocket each (GET /ws, echoed).
    #[arg(long, default_value_t = 0)]
    websocket: usize,
    /// Workers reading a server-sent event stream each (GET /events).
    #[arg(long, default_value_t = 0)]
    sse: usize,
    /// Milliseconds between the events each stream asks for.
    #[arg(long, default_value_t = 50)]
    sse_interval_ms: u64,
    /// Workers sending GET / and POST /echo on an HTTP/2 connection each (cleartext).
    #[arg(long, default_value_t = 0)]
    h2: usize,
    /// A request not completely answered within this time is a timeout failure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Stop after this many requests in total.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Pause each worker takes after every request, e.g. 10ms.
    #[arg(long, value_parser = parse_duration)]
    pace: Option<Duration>,
    /// Print the report as one line of JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn config(&self) -> LoadConfig {
        LoadConfig {
            target: self.target,
            host_header: self.host.clone(),
            keepalive_workers: self.keepalive,
            fresh_workers: self.fresh,
            post_workers: self.post,
            slow_workers: self.slow,
            slow_ms: self.slow_ms,
            websocket_workers: self.websocket,
            sse_workers: self.sse,
            sse_interval_ms: self.sse_interval_ms,
            h2_workers: self.h2,
            request_timeout: self.timeout,
            max_duration: self.duration,
            max_requests: self.max_requests,
            pace: self.pace,
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // --help and --version are not errors; everything else clap rejects is a usage error.
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let cfg = args.config();
    if let Err(problem) = cfg.validate() {
        eprintln!("baton-load: {problem}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("baton-load: could not start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(cfg));
    if args.json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(error) => {
                eprintln!("baton-load: could not encode the report: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{report}");
        if report.failures > 0 {
            eprint!("{}", report.failure_description());
        }
    }
    if report.failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(cfg: LoadConfig) -> Report {
    let load = Load::start(cfg);
    tokio::select! {
        () = load.stopping() => {}
        interrupted = tokio::signal::ctrl_c() => {
            if interrupted.is_ok() {
                eprintln!("baton-load: interrupted; finishing requests in flight");
            }
        }
    }
    load.stop().await
}
