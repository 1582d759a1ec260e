//! `baton systemd-unit`: the systemd units that run `baton serve` — a
//! `.service` unit, and with `--socket NAME` the `.socket` unit of one
//! `[[listener]]` (socket activation: connections that arrive while baton is
//! down wait in the socket's queue). Rendering is pure (`service`,
//! `socket`); the command only reads the config (so that a unit is never
//! written for a file `baton serve` would refuse) and prints.
//!
//! The choices, each explained in the unit itself:
//! - `Type=notify`: baton reports `READY=1` once its listeners serve.
//! - `ExecReload=baton upgrade`: `systemctl reload` starts the binary on disk
//!   as a new process that takes the same sockets and the running instances,
//!   re-reading the config; it waits for the new process and fails (the old
//!   one keeps serving) if it is refused. The new process becomes the main
//!   one by `MAINPID=`, sent by the old one, hence `NotifyAccess=all` (the
//!   instances never see systemd's socket: each gets a private one).
//! - `KillMode=mixed`: `systemctl stop` sends SIGTERM to baton alone, which
//!   takes each instance out of the pool, lets it finish and stops it; what
//!   is left when baton has exited is killed, so no instance outlives the
//!   unit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::EXIT_USAGE;
use crate::cli::SystemdUnitArgs;

/// How long `systemctl stop` lets baton drain before SIGKILL: more than
/// the default drain timeouts (30 s for instances and for client
/// connections), which follow one another.
const STOP_TIMEOUT_SECS: u32 = 90;

pub fn main(args: SystemdUnitArgs) -> ExitCode {
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let exe = match args.exec.clone().map_or_else(std::env::current_exe, Ok) {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("baton: could not find baton's own path (give --exec PATH): {e}");
            return ExitCode::FAILURE;
        }
    };
    let paths = match Paths::new(&args, exe) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("baton: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let port_zero =
        |l: &config::Listener| matches!(&l.address, handoff::ListenAddr::Tcp(sa) if sa.port() == 0);
    let wanted: Vec<&config::Listener> = match &args.socket {
        Some(name) => cfg.listeners.iter().filter(|l| &l.name == name).collect(),
        None if args.socket_activated => cfg.listeners.iter().collect(),
        None => Vec::new(),
    };
    if let Some(l) = wanted.into_iter().find(|l| port_zero(l)) {
        eprintln!(
            "baton: {}: [[listener]] {:?} listens on port 0, which a .socket unit cannot bind: give it a port",
            args.config.display(),
            l.name
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let text = match &args.socket {
        None => {
            let sockets: Vec<String> = if args.socket_activated {
                cfg.listeners.iter().map(|l| l.name.clone()).collect()
            } else {
                Vec::new()
            };
            service(&paths, &args.name, &sockets)
        }
        Some(name) => match cfg.listeners.iter().find(|l| &l.name == name) {
            Some(l) => socket(&args.name, l),
            None => {
                let names: Vec<&str> = cfg.listeners.iter().map(|l| l.name.as_str()).collect();
                eprintln!(
                    "baton: {}: no [[listener]] named {name:?} (there are: {})",
                    args.config.display(),
                    names.join(", ")
                );
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// The absolute paths a unit names.
pub struct Paths {
    pub exe: PathBuf,
    pub config: PathBuf,
    pub control: PathBuf,
    pub state: Option<PathBuf>,
}

/// Why a path given to `baton systemd-unit` cannot go into a unit file.
#[derive(Debug, thiserror::Error)]
enum PathError {
    #[error("{what} {}: {source}", path.display())]
    Unresolved {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} {path:?}: a path in a unit file must not contain spaces, quotes, '%', '$' or '\\'"
    )]
    Unquotable { what: &'static str, path: String },
}

impl Paths {
    fn new(args: &SystemdUnitArgs, exe: PathBuf) -> Result<Paths, PathError> {
        let absolute = |what: &'static str, p: &Path| -> Result<PathBuf, PathError> {
            let p = if p.is_absolute() {
                p.to_owned()
            } else {
                std::path::absolute(p).map_err(|source| PathError::Unresolved {
                    what,
                    path: p.to_owned(),
                    source,
                })?
            };
            let text = p.to_string_lossy();
            // A unit file's command line is split on whitespace and reads
            // `%` and `$` specially: such paths would not survive it.
            if text
                .chars()
                .any(|c| c.is_whitespace() || "%$\\\"'".contains(c))
            {
                return Err(PathError::Unquotable {
                    what,
                    path: text.into_owned(),
                });
            }
            Ok(p)
        };
        Ok(Paths {
            exe: absolute("--exec", &exe)?,
            config: absolute("--config", &args.config)?,
            control: absolute("--control", &args.control)?,
            state: args
                .state
                .as_deref()
                .map(|s| absolute("--state", s))
                .transpose()?,
        })
    }
}

/// The `.service` unit; `sockets` are the listeners that come from
/// `.socket` units (`NAME-LISTENER.socket`).
pub fn service(paths: &Paths, name: &str, sockets: &[String]) -> String {
    let exe = paths.exe.display();
    let control = paths.control.display();
    let mut serve = format!(
        "{exe} serve --config {} --control {control}",
        paths.config.display()
    );
    if let Some(state) = &paths.state {
        let _ = write!(serve, " --state {}", state.display());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {name}.service, written by `baton systemd-unit` (baton {}).",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("[Unit]\n");
    let _ = writeln!(
        out,
        "Description=baton: zero-downtime deploys ({})",
        paths.config.display()
    );
    out.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    if !sockets.is_empty() {
        let units: Vec<String> = sockets
            .iter()
            .map(|s| format!("{name}-{s}.socket"))
            .collect();
        let _ = writeln!(out, "Requires={}", units.join(" "));
        let _ = writeln!(out, "After={}", units.join(" "));
    }
    out.push_str("\n[Service]\n");
    out.push_str(
        "# baton says READY=1 once its listeners serve. An upgrade starts a new\n\
         # baton, which the old one names the main process (MAINPID=) once it\n\
         # serves: both must be heard. Instances never see this socket (each\n\
         # has a private NOTIFY_SOCKET).\n\
         Type=notify\n\
         NotifyAccess=all\n",
    );
    if !sockets.is_empty() {
        let units: Vec<String> = sockets
            .iter()
            .map(|s| format!("{name}-{s}.socket"))
            .collect();
        let _ = writeln!(out, "Sockets={}", units.join(" "));
    }
    let _ = writeln!(out, "ExecStart={serve}");
    out.push_str(
        "# `systemctl reload`: upgrade to the baton binary on disk, which also\n\
         # re-reads the config. The new process takes the same listening sockets\n\
         # and the running instances; this waits until it serves and fails,\n\
         # leaving the old one serving, if it is refused. (`baton reload` or\n\
         # SIGHUP re-reads the config only.)\n",
    );
    let _ = writeln!(out, "ExecReload={exe} upgrade --control {control}");
    out.push_str(
        "# SIGTERM to baton alone: it takes each instance out of the pool, lets it\n\
         # finish its requests and stops it; anything left once baton has exited\n\
         # is killed, so no instance outlives the unit.\n\
         KillMode=mixed\n",
    );
    let _ = writeln!(out, "TimeoutStopSec={STOP_TIMEOUT_SECS}s");
    out.push_str(
        "Restart=on-failure\n\
         RestartSec=1s\n\
         # baton holds a descriptor per client and per upstream connection.\n\
         LimitNOFILE=524288\n\
         # The control socket's directory, kept across restarts.\n",
    );
    let _ = writeln!(out, "RuntimeDirectory={name}");
    out.push_str("RuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=restart\n");
    out.push_str(
        "# Hardening. The instances baton runs inherit it: loosen what an app\n\
         # needs (ProtectSystem=full keeps /usr, /boot and /etc read-only).\n\
         NoNewPrivileges=yes\n\
         PrivateTmp=yes\n\
         ProtectSystem=full\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictRealtime=yes\n\
         RestrictNamespaces=yes\n\
         LockPersonality=yes\n\
         SystemCallArchitectures=native\n\
         UMask=0077\n",
    );
    if let Some(state) = &paths.state {
        let _ = writeln!(out, "ReadWritePaths=-{}", state.display());
    }
    out.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    out
}

/// The `.socket` unit of one listener: systemd binds it and holds its
/// queue while baton is down; baton takes it by its name.
pub fn socket(name: &str, listener: &config::Listener) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {name}-{}.socket, written by `baton systemd-unit --socket {}` (baton {}).",
        listener.name,
        listener.name,
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("[Unit]\n");
    let _ = writeln!(
        out,
        "Description=baton listener {} ({})",
        listener.name, listener.address
    );
    out.push_str("\n[Socket]\n");
    let address = match &listener.address {
        handoff::ListenAddr::Tcp(sa) => sa.to_string(),
        handoff::ListenAddr::Unix(path) => path.display().to_string(),
    };
    let _ = writeln!(out, "ListenStream={address}");
    out.push_str("# baton matches an inherited socket to its [[listener]] by this name.\n");
    let _ = writeln!(out, "FileDescriptorName={}", listener.name);
    let _ = writeln!(out, "Service={name}.service");
    out.push_str(
        "# As deep as baton's own: connections wait here while baton restarts.\n\
         Backlog=4096\n",
    );
    if let handoff::ListenAddr::Unix(_) = &listener.address {
        out.push_str("SocketMode=0660\n");
    }
    out.push_str("\n[Install]\nWantedBy=sockets.target\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(state: bool) -> Paths {
        Paths {
            exe: "/usr/local/bin/baton".into(),
            config: "/etc/baton/baton.toml".into(),
            control: "/run/baton/control.sock".into(),
            state: state.then(|| "/var/lib/baton".into()),
        }
    }

    #[test]
    fn service_unit_runs_serve_and_upgrades_on_reload() {
        let unit = service(&paths(true), "baton", &[]);
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/baton serve --config /etc/baton/baton.toml \
             --control /run/baton/control.sock --state /var/lib/baton\n"
        ));
        assert!(unit.contains(
            "ExecReload=/usr/local/bin/baton upgrade --control /run/baton/control.sock\n"
        ));
        for line in [
            "Type=notify",
            "NotifyAccess=all",
            "KillMode=mixed",
            "Restart=on-failure",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
        }
        assert!(unit.contains("ReadWritePaths=-/var/lib/baton\n"));
        assert!(!unit.contains("Sockets="));
        let without = service(&paths(false), "baton", &[]);
        assert!(!without.contains("--state") && !without.contains("ReadWritePaths"));
    }

    #[test]
    fn socket_activated_service_names_its_sockets() {
        let unit = service(&paths(false), "edge", &["http".into(), "admin".into()]);
        assert!(
            unit.contains("Sockets=edge-http.socket edge-admin.socket\n"),
            "{unit}"
        );
        assert!(unit.contains("Requires=edge-http.socket edge-admin.socket\n"));
    }
}
