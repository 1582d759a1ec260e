//! Upstream pools of baton's proxy data plane: which member serves the next
//! request, and whether a member may serve at all.
//!
//! The proxy builds an immutable snapshot (routes → pools → members) for each
//! configuration and swaps it atomically on reload. A [`Pool`] belongs to one
//! snapshot and never changes (its weights included); the health of a member
//! lives in a [`MemberHealth`] shared *across* snapshots through an `Arc`, so a
//! member that survives a reload keeps its health, its ejection backoff and its
//! in-flight count.
//!
//! - [`health`](MemberHealth): the shared atomics and the availability watch
//!   the proxy subscribes to in order to purge pooled idle connections.
//! - [`Pool::pick`]: smooth weighted round-robin (exactly nginx's) or least
//!   requests by power of two choices, over available members only.
//! - [`Queue`]: where a request that finds every member at its connection
//!   limit waits for a slot, in arrival order, within bounds; woken by
//!   events (a slot released, a member available, a new snapshot).
//! - [`Picked::report`]: passive ejection after consecutive failures, with
//!   exponential backoff.
//! - [`Stats`]: requests, failures and a latency histogram per member,
//!   recorded by [`Picked::report`] whether or not passive ejection is on;
//!   read as [`StatsSnapshot`]s.
//! - [`spawn_active`]: active HTTP/1.1 checks with healthy and unhealthy
//!   thresholds ([`spawn_active_over`]: over the caller's [`Handshake`],
//!   e.g. TLS, and in a pool: [`Peers`], through which timeouts alone never
//!   take the pool's last available member out). A probe's timeout counts
//!   the member's time, not the time the prober was kept from running.
//!
//! This crate never opens a connection on behalf of a request and never
//! blocks: picking is a few atomic loads and, for round-robin, one short lock;
//! waiting in a [`Queue`] is an `await` on an event.
//! Timing logic is written as pure state machines ([`ActiveState`],
//! [`PassiveState`]) that take the time as an argument, so it is tested with
//! injected instants or tokio's paused clock.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod active;
mod health;
mod passive;
mod peers;
mod pick;
mod pool;
mod probe;
mod queue;
mod stats;

pub use active::{ActiveCheck, ActiveState, HealthTransition, ProbeResult};
pub use health::{Availability, CarriedHealth, HealthSnapshot, MemberHealth, Troubles};
pub use passive::{Outcome, PassiveConfig, PassiveState, PassiveTransition};
pub use peers::Peers;
pub use pool::{Member, MemberSpec, NoPick, Picked, Policy, Pool};
pub use probe::{
    ActiveHandle, Handshake, ProbeError, ProbeIo, probe, probe_over, spawn_active,
    spawn_active_over,
};
pub use queue::{Attempt, Queue, QueueBounds, QueueStats, Refusal, Turn};
pub use stats::{BUCKETS, Stats, StatsSnapshot};
