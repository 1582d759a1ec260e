//! The command line: what can be asked of `hello`, and the exit codes for
//! arguments it refuses. Owns parsing and validation only; it never touches
//! sockets or the runtime.

use std::time::Duration;

use clap::Parser;
use handoff::ListenAddr;
use http::HeaderValue;

/// Exit code for a bad command line (`EX_USAGE` of sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// The example app baton deploys: a small HTTP server with slow requests,
/// server-sent events, and switches that make it start slowly, never become
/// ready, fail its health check or crash.
#[derive(Debug, Parser)]
#[command(name = "hello", version)]
pub struct Cli {
    /// Address to listen on when no socket was inherited (LISTEN_FDS):
    /// IP:PORT (port 0 picks a free one) or unix:PATH. Repeatable.
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: Vec<ListenAddr>,

    /// Version shown in responses and in the x-instance header.
    #[arg(
        long,
        value_name = "V",
        env = "APP_VERSION",
        default_value = "v1",
        value_parser = parse_version
    )]
    pub app_version: String,

    /// Longest graceful drain before remaining connections are cut.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Wait this long after taking the sockets before accepting and
    /// reporting READY=1 (a slow-starting app).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub startup_delay: Option<Duration>,

    /// Take the sockets but never accept nor report readiness; exit 0 on
    /// SIGTERM/SIGINT (a version that hangs during start-up).
    #[arg(long)]
    pub never_ready: bool,

    /// Answer /healthz with 503.
    #[arg(long)]
    pub fail_health: bool,

    /// Exit abruptly with code 3 this long after becoming ready, without
    /// draining (a crashing version).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub exit_after: Option<Duration>,
}

impl Cli {
    /// Parses the process arguments. Help and version are printed and the
    /// process exits 0; a bad argument prints clap's message and exits 64.
    pub fn parse_or_exit() -> Cli {
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => {
                // Printing can only fail if stdout/stderr are closed; the exit
                // code still tells the caller what happened.
                let _ = e.print();
                let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
                std::process::exit(code.into());
            }
        }
    }
}

/// A version must fit in a header value and on one line of a response, so
/// it is restricted to visible ASCII without spaces.
fn parse_version(s: &str) -> Result<String, String> {
    let visible = |c: char| c.is_ascii_graphic();
    if s.is_empty() || !s.chars().all(visible) || HeaderValue::from_str(s).is_err() {
        return Err(format!(
            "invalid version {s:?}: expected visible ASCII characters without spaces, e.g. v2 or 1.4.0-rc1"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["hello"]).unwrap();
        assert_eq!(cli.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(cli.drain_timeout, Duration::from_secs(30));
        assert_eq!(cli.startup_delay, None);
        assert!(!cli.never_ready && !cli.fail_health);
    }

    #[test]
    fn repeatable_listen_and_durations() {
        let cli = Cli::try_parse_from([
            "hello",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "unix:/tmp/x.sock",
            "--exit-after",
            "200ms",
            "--app-version",
            "v2",
        ])
        .unwrap();
        assert_eq!(cli.listen.len(), 2);
        assert_eq!(cli.exit_after, Some(Duration::from_millis(200)));
        assert_eq!(cli.app_version, "v2");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["hello", "--drain-timeout", "5x"][..],
            &["hello", "--listen", "localhost"],
            &["hello", "--app-version", "v 2"],
            &["hello", "--app-version", ""],
            &["hello", "--bogus"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert!(err.use_stderr(), "{args:?}");
        }
    }
}
