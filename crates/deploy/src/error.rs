//! Why a deploy, a rollback or a pause did not happen ([`DeployError`]), why
//! a deploy that started failed and was undone ([`Failure`]), and why the
//! engine could not start from its saved state ([`StartError`]).
//!
//! Only types live here: the messages are what the CLI prints, so each says
//! what could not be done and carries its cause. No variant is ever compared
//! by its text.

use std::sync::Arc;
use std::time::Duration;

use crate::judge::Breach;

/// Why a deploy did not happen or did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    /// No service by that name.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// The request does not fit the service.
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    /// The service's supervisor is not running (baton is stopping).
    #[error("service {0:?} is not running")]
    NotRunning(String),
    /// Another deploy or rollback of the service is running.
    #[error("a deploy of {0:?} is already running; wait for it to finish")]
    Busy(String),
    /// Another node runs a deploy of the service, or the cluster-wide lock
    /// could not be taken.
    #[error(transparent)]
    Cluster(#[from] crate::LockError),
    /// The deploy failed and was rolled back; the old version serves.
    #[error("deploy failed and was rolled back: {0}")]
    Failed(#[source] Failure),
    /// baton is upgrading itself (a new process takes the services over).
    #[error("baton is upgrading itself; try again once the new process serves")]
    Upgrading,
    /// A blue-green deploy's rollback window is open (its old set stands
    /// by): an upgrade of baton waits until it closes.
    #[error(
        "the rollback window of {0:?} is open; upgrade baton once it closes (or after `baton rollback`)"
    )]
    RollbackWindow(String),
    /// No earlier version to go back to.
    #[error("service {0:?} has no earlier version to roll back to")]
    NothingToRollBack(String),
}

/// A request that does not fit the service it names; nothing changed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BadRequest {
    /// New targets for a supervised service.
    #[error("service {0:?} is supervised: deploy it by --version, not --target")]
    TargetsForSupervised(String),
    /// A supervised service's deploy without a version.
    #[error("service {0:?} is supervised: --version is required")]
    VersionRequired(String),
    /// An external service's deploy without targets.
    #[error("service {0:?} is external: name its new targets with --target")]
    TargetsRequired(String),
    /// A canary across the cluster sent to a node whose front door has no
    /// pool discovering the service: there is no traffic to judge it on.
    #[error(
        "a canary of {0:?} across the cluster is judged on the front door of the node it is sent to, and no pool of this node discovers {0:?}: send it to a node with such a pool"
    )]
    ClusterCanaryUnjudged(String),
    /// The proxy has no pool for the service.
    #[error(transparent)]
    UnknownPool(#[from] proxy::UnknownPool),
}

/// Why a deploy that started failed. By the time it is returned the deploy
/// has been undone (unless a variant says the undoing failed too).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A rolling deploy found no set with instances to replace.
    #[error("the service has no running instances to replace")]
    NoInstances,
    /// The service's supervisor stopped under the deploy (baton is
    /// stopping).
    #[error("the service's supervisor has stopped")]
    SupervisorStopped,
    /// A rolling deploy's new generation did not complete.
    #[error(transparent)]
    Rollout(#[from] supervisor::RolloutError),
    /// The new set's first generation did not complete, as its supervisor
    /// reported it.
    #[error("{0}")]
    NewInstances(String),
    /// The new set's supervisor stopped before its instances were ready.
    #[error("the new instances' supervisor stopped")]
    NewSupervisorStopped,
    /// The new set could not be started.
    #[error("could not start the new version: {0}")]
    Start(Arc<std::io::Error>),
    /// The deploy took longer than the service's `deploy_timeout`.
    #[error("not complete within the deploy timeout ({})", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// A smoke check answered a status outside 2xx.
    #[error("smoke check GET {path} on {member} answered {status}")]
    SmokeStatus {
        /// The path requested.
        path: String,
        /// The instance.
        member: String,
        /// Its answer.
        status: u16,
    },
    /// A smoke check got no answer.
    #[error("smoke check GET {path} on {member}: {source}")]
    SmokeProbe {
        /// The path requested.
        path: String,
        /// The instance.
        member: String,
        /// Why there was no status.
        source: balance::ProbeError,
    },
    /// A new target never passed its health check.
    #[error("target {target} was not healthy within {}: {last}", humantime::format_duration(*.ready_timeout))]
    TargetUnhealthy {
        /// The target.
        target: String,
        /// The service's `ready_timeout`.
        ready_timeout: Duration,
        /// What its last check saw.
        last: String,
    },
    /// A canary step did not see enough requests before the deploy timeout.
    #[error(
        "{}: the canary served {served} of the {needed} requests its {step}% step needs to be judged",
        Failure::Timeout(*.timeout)
    )]
    CanaryStarved {
        /// The deploy timeout.
        timeout: Duration,
        /// Requests the canary served in the step.
        served: u64,
        /// The step's `min_requests`.
        needed: u32,
        /// The step's share, in percent.
        step: u8,
    },
    /// The canary breached a gate.
    #[error(transparent)]
    Canary(#[from] Breach),
    /// A rolling deploy failed and the version before it could not be
    /// rolled out again; the instances that are up keep serving.
    #[error("{failure}; {undo}")]
    NotUndone {
        /// Why the deploy failed.
        failure: Box<Failure>,
        /// Why undoing it failed.
        undo: Undo,
    },
    /// A cluster-wide deploy failed on some nodes (each undid it there);
    /// the desired version was set back, and every node went back to it
    /// unless `not_back` says why not.
    #[error("{}{}", failed.iter().map(|(node, reason)| format!("on node {node}: {reason}")).collect::<Vec<_>>().join("; "), not_back.as_ref().map(|w| format!("; {w}")).unwrap_or_default())]
    OnNodes {
        /// The nodes that failed, with why.
        failed: Vec<(String, String)>,
        /// Why the nodes did not all go back, if they did not.
        not_back: Option<String>,
    },
    /// A cluster-wide deploy could not go on: the registry failed.
    #[error("the cluster registry failed: {0}")]
    Registry(String),
    /// A rollback found a saved version it cannot use.
    #[error("saved version {version:?}: {source}")]
    SavedVersion {
        /// As saved.
        version: String,
        /// Why it is not a version.
        source: config::InvalidVersion,
    },
    /// A rollback found saved targets it cannot use.
    #[error("saved targets: {0}")]
    SavedTargets(#[source] config::InvalidUpstreamAddr),
}

/// Why a failed rolling deploy could not put the old version back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Undo {
    /// The old version's name no longer parses.
    #[error("could not roll back: {0}")]
    Version(#[source] config::InvalidVersion),
    /// Its rollout failed as well.
    #[error("the rollback to {version} failed too: {source}")]
    Rollout {
        /// The old version.
        version: String,
        /// Why its rollout failed.
        source: supervisor::RolloutError,
    },
    /// The supervisor stopped.
    #[error("the service's supervisor has stopped")]
    SupervisorStopped,
}

/// Why the engine could not start from the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::state::StoreError),
    /// A service's saved version is not a version.
    #[error("saved state of {service}: {source}")]
    SavedVersion {
        /// The service.
        service: String,
        /// Why.
        source: config::InvalidVersion,
    },
    /// A service's saved targets are not addresses.
    #[error("saved state of {service}: {source}")]
    SavedTargets {
        /// The service.
        service: String,
        /// Why.
        source: config::InvalidUpstreamAddr,
    },
}
