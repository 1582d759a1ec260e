//! What each instance listens on, and the per-instance pieces a caller can
//! plug in: the command (rendered per instance, e.g. with its port and
//! version), a readiness probe, and a hook that runs before an instance is
//! told to stop (so a proxy stops routing to it first).
//!
//! Two socket models share one supervisor:
//! - `Shared`: every instance inherits the same sockets (`baton exec`, the
//!   handoff path);
//! - `PerInstance`: each instance gets its own port, behind the proxy.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use handoff::{ListenAddr, Listener, NamedListener};

use crate::command::{CommandError, CommandSpec};

/// Which sockets instances get.
#[derive(Clone)]
pub enum Sockets {
    /// Every instance inherits these, as fds 3...
    Shared(Arc<Vec<NamedListener>>),
    /// Each instance gets a port of its own on this address.
    PerInstance {
        /// The address to bind (port 0 is chosen).
        ip: IpAddr,
        /// Pass the bound socket as fd 3 (`LISTEN_FDS=1`); otherwise it is
        /// closed before the spawn and the app binds the port itself.
        pass_socket: bool,
        /// The socket's name in `LISTEN_FDNAMES`.
        name: String,
    },
}

/// What is known about an instance when its command is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Instance id (unique in the group).
    pub instance: u64,
    /// Its generation.
    pub generation: u64,
    /// Its own address (per-instance sockets only).
    pub addr: Option<SocketAddr>,
}

/// Makes the command of one instance.
pub type CommandFn =
    Arc<dyn Fn(&InstanceInfo) -> Result<CommandSpec, CommandError> + Send + Sync + 'static>;

/// A boxed future, for the hooks.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Probes an instance's address once: `true` when healthy.
pub type ProbeFn = Arc<dyn Fn(SocketAddr) -> BoxFuture<bool> + Send + Sync + 'static>;

/// Runs before an instance that was ready is sent SIGTERM.
pub type StopHook = Arc<dyn Fn(InstanceInfo) -> BoxFuture<()> + Send + Sync + 'static>;

/// Runs when an instance has proved ready, before the group counts it as
/// ready (and so before the plan may stop an instance it replaces).
pub type ReadyHook = Arc<dyn Fn(InstanceInfo) -> BoxFuture<()> + Send + Sync + 'static>;

/// The command of a generation.
#[derive(Clone)]
pub enum CommandSource {
    /// The same command line for every instance.
    Fixed(CommandSpec),
    /// A command made for each instance.
    PerInstance(CommandFn),
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("interval", &self.interval)
            .field("successes", &self.successes)
            .finish_non_exhaustive()
    }
}

impl CommandSource {
    pub(crate) fn make(&self, info: &InstanceInfo) -> io::Result<CommandSpec> {
        match self {
            CommandSource::Fixed(c) => Ok(c.clone()),
            CommandSource::PerInstance(f) => {
                f(info).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            }
        }
    }
}

/// An HTTP-style readiness probe: ready after `successes` passes in a row,
/// probing every `interval`.
#[derive(Clone)]
pub struct Probe {
    /// The check.
    pub check: ProbeFn,
    /// Time between probes.
    pub interval: Duration,
    /// Passes in a row needed.
    pub successes: u32,
}

/// The sockets one instance is started with.
pub(crate) enum Assigned {
    Shared(Arc<Vec<NamedListener>>),
    Own {
        listeners: Vec<NamedListener>,
        addr: SocketAddr,
    },
    PortOnly(SocketAddr),
}

impl Assigned {
    pub(crate) fn listeners(&self) -> &[NamedListener] {
        match self {
            Assigned::Shared(l) => l,
            Assigned::Own { listeners, .. } => listeners,
            Assigned::PortOnly(_) => &[],
        }
    }

    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        match self {
            Assigned::Shared(_) => None,
            Assigned::Own { addr, .. } | Assigned::PortOnly(addr) => Some(*addr),
        }
    }
}

impl Sockets {
    pub(crate) fn assign(&self) -> io::Result<Assigned> {
        match self {
            Sockets::Shared(l) => Ok(Assigned::Shared(l.clone())),
            Sockets::PerInstance {
                ip,
                pass_socket,
                name,
            } => {
                let listener = Listener::bind(&ListenAddr::Tcp(SocketAddr::new(*ip, 0)))
                    .map_err(io::Error::other)?;
                let addr = match listener.local_addr()? {
                    ListenAddr::Tcp(a) => a,
                    ListenAddr::Unix(_) => unreachable!("bound a TCP address"),
                };
                if *pass_socket {
                    Ok(Assigned::Own {
                        listeners: vec![NamedListener {
                            name: name.clone(),
                            listener,
                        }],
                        addr,
                    })
                } else {
                    // The app binds the port itself; there is a short window
                    // in which another process could take it.
                    Ok(Assigned::PortOnly(addr))
                }
            }
        }
    }
}
