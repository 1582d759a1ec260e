//! baton's deploy engine — the control plane between the services of the
//! config and the proxy.
//!
//! Each service is a list of *sets* (`sets`): the instances (supervised, a
//! `supervisor::Group` each, `supervised`) or targets (external) of one
//! version, each with a share of the traffic. Normally a service has one set
//! with all of it. The engine (`engine`) publishes every service as a proxy
//! pool `service:NAME` whose members are the ready members of the sets that
//! carry traffic, weighted so that each set gets its share (`publish`).
//!
//! The strategies (`strategy`) are moves between sets:
//! - rolling: one set; its group replaces its instances a few at a time,
//!   within `max_surge` / `max_unavailable`;
//! - blue-green: a second set starts with no traffic, is smoke-checked
//!   directly, takes 100 % in one snapshot swap; the old set stays as a
//!   standby for the rollback window;
//! - canary: a second set takes the configured steps of traffic, each
//!   judged (`judge`) on the proxy's own measurements against the stable
//!   set.
//!
//! A member always leaves the published pool *before* it is told to stop,
//! and its requests in flight finish first: an instance stopped while the
//! proxy still routes to it would fail the requests sent to it.
//!
//! In a cluster (`cluster`), a supervised service's deploys are the
//! cluster's: the binary's [`ClusterDeploys`] sets the desired version, and
//! each node converges its own instances by a rolling deploy within its
//! share of the cluster-wide bounds ([`Engine::converge`]), or, blue-green,
//! starts a whole new set on standby ([`Engine::prepare_green`]) that the
//! cluster switches to ([`Green::switch`]) or gives up ([`Green::abandon`]).
//! A canary across the cluster is one weighted instance on the deploying
//! node, judged on its front door's requests (`cluster_canary`).
//!
//! Invariants: the engine never blocks the data plane (whole snapshots are
//! published through `Proxy::reload`, on a blocking thread, one at a time);
//! no std lock is held across an await, and no two are held at once
//! (`locked`); a deploy is recorded in progress in the state before
//! anything changes, and its outcome after (`state`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cluster;
mod cluster_canary;
mod engine;
mod error;
mod handover;
mod judge;
mod locked;
mod progress;
mod publish;
mod registry;
mod reload;
mod restore;
mod sets;
mod state;
mod status;
mod strategy;
mod supervised;

pub use cluster::{ClusterDeploys, DeployFuture, Green, TrafficWindow, slot_limits, slots};
pub use cluster_canary::{ClusterCanary, canary_share, canary_weight};
pub use engine::Engine;
pub use error::{BadRequest, DeployError, Failure, StartError, Undo};
pub use handover::HandedOver;
pub use judge::Breach;
pub use progress::{Progress, Reporter, Traffic};
pub use proxy::Hold;
pub use registry::{Confirmation, DeployLock, LockError, LockFuture, Registrar, Routed};
pub use reload::{ReloadError, ReloadOptions, Reloaded, Watcher};
pub use state::{Deploy, Outcome, ServiceState, State, Store, StoreError, UnknownOutcome};
pub use status::{ServiceStatus, SetStatus};

use std::time::Duration;

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    /// The service.
    pub service: String,
    /// The version; for an external service a label, optional.
    pub version: Option<config::Version>,
    /// Overrides the service's strategy.
    pub strategy: Option<config::Strategy>,
    /// External services: the new targets.
    pub targets: Vec<config::UpstreamAddr>,
}

/// A deploy that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    /// The version now serving.
    pub version: String,
    /// How it got there.
    pub strategy: config::Strategy,
    /// From the request to the new version taking all the traffic (and,
    /// for rolling and canary, the last old instance gone).
    pub duration: Duration,
    /// The service's requests during the deploy, measured by the proxy.
    pub traffic: Traffic,
}
