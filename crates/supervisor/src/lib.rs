//! The process supervisor shared by `baton exec` and the deploy engine.
//!
//! It runs *instances* of one command that inherit listening sockets held by
//! this process (the systemd `LISTEN_FDS` protocol), learns when each is ready
//! (`sd_notify` `READY=1` on a private socket, or a fixed delay), restarts the
//! ones that die with exponential backoff as its [`Restart`] policy says, and
//! replaces a whole generation on request without ever letting the number of
//! ready instances drop below what the bounds allow (`max_surge` /
//! `max_unavailable`: a semaphore on the extra and the missing instances).
//!
//! It never binds or closes a listening socket: the caller owns them, so the
//! kernel's accept queue outlives every generation.

#![deny(missing_docs)]

mod adopt;
mod backoff;
mod command;
mod group;
mod instance;
mod notify_socket;
mod plan;
mod restart;
mod sockets;
mod spawn;

pub use adopt::{AdoptError, Adopted, start_time_of, stop};
pub use backoff::Backoff;
pub use command::{CommandError, CommandSpec};
pub use group::{Event, ExitSummary, Group, GroupConfig, GroupError, Readiness, RolloutError};
pub use plan::{Bounds, BoundsError, Limits};
pub use restart::Restart;
pub use sockets::{
    BoxFuture, CommandFn, CommandSource, InstanceInfo, Probe, ProbeFn, ReadyHook, Sockets, StopHook,
};
