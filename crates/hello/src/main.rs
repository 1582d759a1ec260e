//! The `hello` binary: parses the command line and runs the app (see the
//! library's docs). `baton demo-app` runs the same app in-process.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    hello::run(hello::Args::parse_or_exit())
}
