//! The command line, as clap types. Parsing only: values are checked here
//! (durations, addresses, readiness modes) so that a subcommand receives
//! typed arguments and every bad input is a usage error (exit 64).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use handoff::ListenAddr;

/// Zero-downtime deploys for any HTTP service.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hold the listening sockets and run the app as children that inherit
    /// them; SIGHUP replaces every instance with no dropped connection.
    Exec(ExecArgs),
    /// Run the reverse proxy described by a config file; SIGHUP reloads it.
    Serve(ServeArgs),
    /// Check a config file and report every error with its position.
    Check(CheckArgs),
    /// Deploy a new version of a service (or new targets of an external
    /// one) through a running `baton serve`'s control socket, with live
    /// progress; exits 0 when it serves, 1 when it failed and was rolled
    /// back, 64 for a request that names nothing, 75 when another deploy of
    /// the service is running.
    #[command(disable_version_flag = true)]
    Deploy(DeployArgs),
    /// Roll a service back to the version that served before the current
    /// one (at once within a blue-green rollback window).
    Rollback(RollbackArgs),
    /// Show every service: version, strategy, instances routed to, state,
    /// last deploy.
    Status(StatusArgs),
    /// Hold a service's requests (bounded in time and count; past the
    /// bounds they get 503 with Retry-After) until `baton resume`.
    Pause(PauseArgs),
    /// Release a paused service's held requests.
    Resume(ResumeArgs),
    /// Make the running `baton serve` re-read its config file (as SIGHUP
    /// does): routes and pools at once, services deployed, scaled, started
    /// or stopped as the file says; reports the errors if it is refused
    /// (exit 1, or 75 when it changes a service being deployed).
    Reload(ReloadArgs),
    /// Print a systemd unit for `baton serve`: the `.service` unit, or with
    /// `--socket LISTENER` the `.socket` unit of one listener.
    SystemdUnit(SystemdUnitArgs),
    /// Replace the running `baton serve` by the baton binary on disk with no
    /// gap (as SIGUSR2 does): the new process takes the same listening
    /// sockets and the running instances, and the old one drains and exits
    /// once the new one serves; exits non-zero with the reason, the old one
    /// still serving, if the new one is refused.
    Upgrade(UpgradeArgs),
    /// Show what applying a config file would change in the running
    /// `baton serve`: listeners, routes, pools, services (fields old → new
    /// and the deploys it would start), certificates. Exits 0 when nothing
    /// would change, 1 when something would, 64 for a bad file.
    Diff(DiffArgs),
    /// Apply a config file to the running `baton serve`: shows the diff,
    /// then sends the file, follows the deploys it starts, and replaces
    /// the file at its `--config` once applied. Exits 0 when applied and
    /// every deploy succeeded, 1 when refused or a deploy was rolled back,
    /// 64 for a bad file, 75 when it changes a service being deployed.
    Apply(ApplyArgs),
    /// Run a demo: baton with two versions of an example app under load,
    /// deployed rolling, blue-green and canary, and a broken version rolled
    /// back; exits 0 only if no request failed.
    Demo(DemoArgs),
    /// The example app the demo deploys (the `hello` server, in-process).
    #[command(hide = true, disable_version_flag = true)]
    DemoApp(hello::Args),
}

/// How a client subcommand reaches the running `baton serve` and prints
/// its answer.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The running `baton serve`'s control API: its `--control` socket, or
    /// `http://HOST:PORT`, its `[admin]` listener (with a token).
    #[arg(long, value_name = "PATH|URL", value_parser = parse_control)]
    pub control: ControlAddr,
    /// With an `http://` control: the file that holds the admin token
    /// (else the BATON_TOKEN environment variable).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the answer as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where a client subcommand reaches `baton serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    /// The `--control` Unix socket.
    Socket(PathBuf),
    /// The `[admin]` listener, as `HOST:PORT`.
    Http(String),
}

fn parse_control(s: &str) -> Result<ControlAddr, String> {
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(
            "https:// is not supported: the admin listener speaks plain HTTP (keep it on loopback or a private network)"
                .into(),
        );
    }
    let Some(rest) = lower.starts_with("http://").then(|| &s["http://".len()..]) else {
        if s.is_empty() {
            return Err("expected a socket path or http://HOST:PORT".into());
        }
        return Ok(ControlAddr::Socket(PathBuf::from(s)));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let valid = !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', ' '])
        && authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return Err(format!(
            "invalid control URL {s:?}: expected http://HOST:PORT, like http://127.0.0.1:9901"
        ));
    }
    Ok(ControlAddr::Http(authority.to_owned()))
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The service whose requests to hold.
    pub service: String,
    /// Longest a request is held before it gets 503.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// Most requests held at once; more get 503 at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_requests: usize,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The paused service.
    pub service: String,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Apply a config that removes every service, or that changes a
    /// service while it is being deployed (its change then waits for that
    /// deploy); without it such a reload is refused and changes nothing.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The config file to compare with the running config.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The config file to apply.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Refuse (changing nothing) unless the running config is still this
    /// revision, the one `baton diff` printed.
    #[arg(long, value_name = "R")]
    pub revision: Option<String>,
    /// Only show the diff (as `baton diff`).
    #[arg(long)]
    pub dry_run: bool,
    /// Apply a config that removes every service, or changes one being
    /// deployed (after that deploy).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the final table as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the demo's directory (config, state, baton's log) afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The service to roll back to the version it had before.
    pub service: String,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The service to deploy (a `[service.NAME]` of the running config).
    pub service: String,
    /// The version to deploy (fills `{version}` in a supervised service's
    /// command; a label for an external one).
    #[arg(long)]
    pub version: Option<String>,
    /// `rolling`, `blue_green` or `canary`, instead of the service's own.
    #[arg(long, value_parser = parse_strategy())]
    pub strategy: Option<config::Strategy>,
    /// External services: a new target `HOST:PORT` (repeat for several).
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML config file (see docs/config.md).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Serve the control API (used by `baton deploy`) on this Unix socket,
    /// created with mode 0600.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Keep each service's version and deploy history in this directory,
    /// so a restarted baton comes back serving the same versions.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// How long the new process may take to be ready before it is stopped.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub to: ControlArgs,
}

#[derive(Debug, Args)]
pub struct SystemdUnitArgs {
    /// The TOML config file `baton serve` runs (checked; its listeners
    /// name the sockets).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The control socket `baton serve` opens.
    #[arg(long, value_name = "PATH", default_value = "/run/baton/control.sock")]
    pub control: PathBuf,
    /// The state directory (`baton serve --state`).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The baton binary the unit runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub exec: Option<PathBuf>,
    /// The unit's name (`NAME.service`, `NAME-LISTENER.socket`).
    #[arg(long, default_value = "baton", value_parser = parse_unit_name)]
    pub name: String,
    /// Print the `.socket` unit of this `[[listener]]` instead.
    #[arg(long, value_name = "LISTENER", conflicts_with = "socket_activated")]
    pub socket: Option<String>,
    /// The service takes every listener from its `.socket` unit
    /// (`Sockets=`).
    #[arg(long)]
    pub socket_activated: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The TOML config file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A socket to hold, as [NAME=]ADDR: `127.0.0.1:8080`, `http=[::1]:0`,
    /// `api=unix:/run/app.sock`. Repeatable. Ignored when baton itself was
    /// given sockets by systemd (LISTEN_FDS).
    #[arg(long = "listen", value_name = "[NAME=]ADDR", value_parser = parse_listen)]
    pub listen: Vec<NamedAddr>,

    /// How many instances of the app to run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub instances: u32,

    /// Extra instances allowed during a replacement.
    #[arg(long, default_value_t = 1)]
    pub max_surge: u32,

    /// Ready instances that may be missing during a replacement (0: an old
    /// instance stops only after its replacement is ready).
    #[arg(long, default_value_t = 0)]
    pub max_unavailable: u32,

    /// How an instance says it is ready: `notify` (sd_notify READY=1) or
    /// `delay:DUR` (ready after running DUR).
    #[arg(long, default_value = "notify", value_parser = parse_ready)]
    pub ready: ReadyMode,

    /// A new instance not ready after this long is stopped and the
    /// replacement abandoned; the old instances keep serving.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ready_timeout: Duration,

    /// How long a stopping instance may finish its requests before SIGKILL.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Whether an instance that exits on its own is started again (after
    /// backoff). A slot left empty stays empty until a SIGHUP rollout, which
    /// starts all `--instances` again.
    #[arg(long, value_enum, default_value_t = crate::exec::RestartMode::Always)]
    pub restart: crate::exec::RestartMode,

    /// The app's command line.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone)]
pub struct NamedAddr {
    pub name: String,
    pub addr: ListenAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyMode {
    Notify,
    Delay(Duration),
}

fn parse_listen(s: &str) -> Result<NamedAddr, String> {
    let (name, addr) = match s.split_once('=') {
        Some((name, addr)) => {
            if name.is_empty()
                || name.len() > 255
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(format!(
                    "invalid socket name {name:?}: use letters, digits, '_', '-' or '.'"
                ));
            }
            (name.to_owned(), addr)
        }
        None => ("unknown".to_owned(), s),
    };
    let addr = addr.parse::<ListenAddr>().map_err(|e| e.to_string())?;
    Ok(NamedAddr { name, addr })
}

fn parse_unit_name(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 200
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(format!(
            "invalid unit name {s:?}: use letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(s.to_owned())
}

fn parse_ready(s: &str) -> Result<ReadyMode, String> {
    match s {
        "notify" => Ok(ReadyMode::Notify),
        _ => match s.strip_prefix("delay:") {
            Some(d) => parse_duration(d).map(ReadyMode::Delay),
            None => Err(format!("expected `notify` or `delay:DUR`, got {s:?}")),
        },
    }
}

/// A strategy by its name ([`config::Strategy::name`], or `blue-green`),
/// the names listed in the help and in the error.
fn parse_strategy() -> impl clap::builder::TypedValueParser<Value = config::Strategy> {
    use clap::builder::TypedValueParser;
    let names = config::Strategy::ALL.map(config::Strategy::name);
    clap::builder::PossibleValuesParser::new(
        names
            .into_iter()
            .map(clap::builder::PossibleValue::new)
            .chain([clap::builder::PossibleValue::new("blue-green").hide(true)]),
    )
    .try_map(|name| name.parse::<config::Strategy>())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (e.g. 500ms, 30s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_names_and_addresses() {
        let a = parse_listen("http=127.0.0.1:0").unwrap();
        assert_eq!(a.name, "http");
        let b = parse_listen("[::1]:80").unwrap();
        assert_eq!(b.name, "unknown");
        let c = parse_listen("api=unix:/run/a.sock").unwrap();
        assert_eq!(c.addr, ListenAddr::Unix("/run/a.sock".into()));
        assert!(parse_listen("a:b=127.0.0.1:1").is_err());
        assert!(parse_listen("http=nonsense").is_err());
    }

    #[test]
    fn ready_modes() {
        assert_eq!(parse_ready("notify").unwrap(), ReadyMode::Notify);
        assert_eq!(
            parse_ready("delay:250ms").unwrap(),
            ReadyMode::Delay(Duration::from_millis(250))
        );
        assert!(parse_ready("delay:soon").is_err());
        assert!(parse_ready("http").is_err());
    }

    #[test]
    fn strategies_parse_through_their_names() {
        for strategy in config::Strategy::ALL {
            let cli = Cli::try_parse_from([
                "baton",
                "deploy",
                "web",
                "--control",
                "c.sock",
                "--strategy",
                strategy.name(),
            ])
            .unwrap();
            let Command::Deploy(args) = cli.command else {
                panic!("not a deploy: {:?}", cli.command);
            };
            assert_eq!(args.strategy, Some(strategy));
        }
        let e = Cli::try_parse_from([
            "baton",
            "deploy",
            "web",
            "--control",
            "c",
            "--strategy",
            "x",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("rolling, blue_green, canary"), "{e}");
    }

    #[test]
    fn control_is_a_socket_path_or_an_http_url() {
        assert_eq!(
            parse_control("/run/baton.sock").unwrap(),
            ControlAddr::Socket("/run/baton.sock".into())
        );
        assert_eq!(
            parse_control("http://127.0.0.1:9901/").unwrap(),
            ControlAddr::Http("127.0.0.1:9901".into())
        );
        assert_eq!(
            parse_control("HTTP://[::1]:9901").unwrap(),
            ControlAddr::Http("[::1]:9901".into())
        );
        for bad in [
            "",
            "http://",
            "http://host",
            "http://h:99999",
            "http://h:1/v1",
            "https://h:1",
        ] {
            assert!(parse_control(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
