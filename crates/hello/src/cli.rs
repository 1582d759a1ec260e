//! The command line: what can be asked of `hello`, and the exit codes for
//! arguments it refuses. Owns parsing and validation only; it never touches
//! sockets or the runtime. [`Args`] is public so that `baton demo-app` can
//! embed it (`#[command(flatten)]` or a subcommand's fields).

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;
use handoff::ListenAddr;
use http::HeaderValue;

use crate::faults::{self, Faults, TagError};

/// Exit code for a bad command line (`EX_USAGE` of sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// The example app baton deploys: a small HTTP server with slow requests,
/// server-sent events, and switches that make it start slowly, never become
/// ready, fail its health check, crash, answer errors or answer slowly.
///
/// With --faults-from-version the switches can also come from the version
/// (--app-version v4_errors), so a broken version deploys like any other.
#[derive(Debug, Clone, Parser)]
#[command(name = "hello", version)]
pub struct Args {
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

    /// Answer this share of the ordinary requests (GET / and
    /// GET /users/{id}) with 500, from 0 to 1, spread evenly: 0.25 fails
    /// every fourth request. /healthz keeps passing.
    #[arg(long, value_name = "FLOAT", default_value_t = 0.0, value_parser = faults::parse_rate)]
    pub error_rate: f64,

    /// Delay the ordinary requests (GET / and GET /users/{id}) by this
    /// long; /healthz stays fast.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub added_latency: Option<Duration>,

    /// Also take faults from the version: tags after its name, each after
    /// a '_', act like the flags (e.g. v4_errors, v7_slow-200ms_crash).
    ///
    /// Tags: never-ready (--never-ready), fail-health (--fail-health),
    /// crash[-DUR] (--exit-after, default 200ms), errors[-RATE]
    /// (--error-rate, default 0.5), slow[-DUR] (--added-latency, default
    /// 50ms). A value may also follow '=' (errors=0.2), though baton's
    /// versions allow only letters, digits, '.', '_' and '-'. A tag's value
    /// replaces the flag's. The full version, tags included, is still what
    /// responses and x-instance show. An unknown tag exits 64.
    #[arg(long)]
    pub faults_from_version: bool,
}

impl Args {
    /// Parses the process arguments. Help and version are printed and the
    /// process exits 0; a bad argument prints clap's message and exits 64.
    pub fn parse_or_exit() -> Args {
        Args::parse_from_or_exit(std::env::args_os())
    }

    /// Parses `args` (the first one is the program name) like
    /// [`Args::parse_or_exit`].
    pub fn parse_from_or_exit<I, T>(args: I) -> Args
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match Args::try_parse_from(args) {
            Ok(args) => args,
            Err(e) => {
                // Printing can only fail if stdout/stderr are closed; the exit
                // code still tells the caller what happened.
                let _ = e.print();
                let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
                std::process::exit(code.into());
            }
        }
    }

    /// The faults switched on by the flags and, with
    /// `--faults-from-version`, by the version's tags.
    pub(crate) fn faults(&self) -> Result<Faults, TagError> {
        let flags = Faults {
            never_ready: self.never_ready,
            fail_health: self.fail_health,
            exit_after: self.exit_after,
            error_rate: self.error_rate,
            added_latency: self.added_latency,
        };
        match self.faults_from_version {
            true => flags.with_version_tags(&self.app_version),
            false => Ok(flags),
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
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["hello"]).unwrap();
        assert_eq!(args.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(args.drain_timeout, Duration::from_secs(30));
        assert_eq!(args.startup_delay, None);
        assert!(!args.never_ready && !args.fail_health);
        assert_eq!(args.error_rate, 0.0);
        assert_eq!(args.added_latency, None);
        assert!(!args.faults_from_version);
        assert_eq!(args.faults(), Ok(Faults::default()));
    }

    #[test]
    fn error_rate_and_added_latency_flags() {
        let args =
            Args::try_parse_from(["hello", "--error-rate", "0.25", "--added-latency", "75ms"])
                .unwrap();
        let faults = args.faults().unwrap();
        assert_eq!(faults.error_rate, 0.25);
        assert_eq!(faults.added_latency, Some(Duration::from_millis(75)));
        for rate in ["1.5", "-0.1", "half", "NaN", ""] {
            let flag = format!("--error-rate={rate}");
            let err = Args::try_parse_from(["hello", flag.as_str()]).unwrap_err();
            assert!(err.use_stderr(), "{rate}");
            assert!(err.to_string().contains("from 0 to 1"), "{rate}: {err}");
        }
    }

    #[test]
    fn version_tags_count_only_with_faults_from_version() {
        let plain = Args::try_parse_from(["hello", "--app-version", "v4_bogus"]).unwrap();
        assert_eq!(plain.faults(), Ok(Faults::default()));

        let tagged = Args::try_parse_from([
            "hello",
            "--faults-from-version",
            "--app-version",
            "v4_errors_never-ready",
            "--fail-health",
        ])
        .unwrap();
        assert_eq!(tagged.app_version, "v4_errors_never-ready");
        let faults = tagged.faults().unwrap();
        assert!(faults.never_ready && faults.fail_health);
        assert_eq!(faults.error_rate, 0.5);

        let unknown = Args::try_parse_from([
            "hello",
            "--faults-from-version",
            "--app-version",
            "v4_bogus",
        ])
        .unwrap();
        assert!(matches!(unknown.faults(), Err(TagError::Unknown { .. })));
    }

    /// How `baton demo-app` embeds the app: as the fields of a hidden
    /// subcommand, or flattened into another command.
    #[test]
    fn args_embed_in_another_command() {
        #[derive(Debug, Parser)]
        #[command(name = "baton")]
        struct Baton {
            #[command(subcommand)]
            command: Command,
        }
        #[derive(Debug, clap::Subcommand)]
        enum Command {
            #[command(hide = true)]
            DemoApp(Args),
            Other {
                #[command(flatten)]
                app: Args,
                #[arg(long)]
                extra: bool,
            },
        }
        Baton::command().debug_assert();

        let baton = Baton::try_parse_from([
            "baton",
            "demo-app",
            "--listen",
            "127.0.0.1:0",
            "--app-version",
            "v4_errors",
            "--faults-from-version",
        ])
        .unwrap();
        let Command::DemoApp(args) = baton.command else {
            panic!("{baton:?}");
        };
        assert_eq!(args.listen, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(args.faults().unwrap().error_rate, 0.5);

        let baton = Baton::try_parse_from(["baton", "other", "--never-ready", "--extra"]).unwrap();
        assert!(matches!(
            baton.command,
            Command::Other { ref app, extra: true } if app.never_ready
        ));
    }

    #[test]
    fn repeatable_listen_and_durations() {
        let args = Args::try_parse_from([
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
        assert_eq!(args.listen.len(), 2);
        assert_eq!(args.exit_after, Some(Duration::from_millis(200)));
        assert_eq!(args.app_version, "v2");
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
            let err = Args::try_parse_from(args).unwrap_err();
            assert!(err.use_stderr(), "{args:?}");
        }
    }
}
