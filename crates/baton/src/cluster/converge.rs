//! Each node converges its own instances of a supervised service to the
//! cluster's desired version: one task per service follows
//! `{prefix}/deploys/{service}/desired`, and when it names another version
//! than the one running here, waits for a slot of the cluster's semaphore,
//! replaces this node's instances by a rolling deploy within that slot's
//! share of the cluster-wide bounds, frees the slot, and reports where it
//! is (`waiting`, `deploying`, `converged`, `failed`) under its lease. A
//! node that starts, restarts or comes back converges the same way; a
//! version that failed here is not tried again until the desired version
//! changes.
//!
//! A blue-green desired version (until the service's active version names
//! it) takes no slot: the node starts a whole new set next to the old one,
//! registered as `standby`, reports `standby`, and waits for the switch
//! (the active version naming it: the new set takes the traffic and the
//! old one is retired) or for the deploy to be given up — the desired
//! version changed, or the deploy lock was freed (its node died) without a
//! switch — and then stops the new set. Once switched, a node that starts
//! or comes back converges like a rolling deploy: the front doors route to
//! the active version only, so its old instances take no traffic anyway.

use std::time::Duration;

use cluster::{Converge, DesiredAt, Etcd, Name, NodeReport, Registry};
use config::Version;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Follows the desired version of `service` (supervised) on this node.
pub(super) fn start(
    etcd: Etcd,
    engine: deploy::Engine,
    service: config::Service,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(name) = service.name.parse::<Name>() else {
            tracing::warn!(service = %service.name, "cannot follow the desired version of a service with this name");
            return;
        };
        Converger {
            etcd,
            engine,
            name,
            service,
        }
        .run()
        .await;
    })
}

struct Converger {
    etcd: Etcd,
    engine: deploy::Engine,
    name: Name,
    service: config::Service,
}

/// What ends a node's wait for a blue-green switch.
enum Next {
    /// The active version names the new one.
    Switch,
    /// The desired version changed (a failure elsewhere set it back).
    Superseded,
    /// The deploy ended without a switch.
    Abandon(String),
}

/// How a try at a desired version ended.
enum Tried {
    /// Converged, or failed (and undone here): done with this revision.
    Settled,
    /// A newer desired version came while waiting for a slot.
    Superseded,
}

impl Converger {
    async fn run(self) {
        let following = self.etcd.follow_desired(&self.name);
        let mut desired = following.receiver();
        // The revision of the desired version this node is done with.
        let mut done = None;
        loop {
            let current = desired.borrow_and_update().clone();
            if let Some(current) = current {
                let revision = current.as_ref().map_or(0, |d| d.revision);
                if done != Some(revision) {
                    match self.try_desired(current.as_ref(), &mut desired).await {
                        Tried::Settled => done = Some(revision),
                        Tried::Superseded => continue,
                    }
                }
            }
            if desired.changed().await.is_err() {
                return;
            }
        }
    }

    /// Brings this node to `desired` (none: reports what runs here).
    async fn try_desired(
        &self,
        desired: Option<&DesiredAt>,
        follow: &mut watch::Receiver<Option<Option<DesiredAt>>>,
    ) -> Tried {
        let running = self.engine.running_version(self.name.as_str());
        let running = running.unwrap_or_default();
        let Some(desired) = desired else {
            self.report(Converge::Converged, &running, 0, None).await;
            return Tried::Settled;
        };
        let (version, revision) = (&desired.desired.version, desired.revision);
        if running == version.as_str() {
            self.report(Converge::Converged, &running, revision, None)
                .await;
            return Tried::Settled;
        }
        if desired.desired.strategy == config::Strategy::BlueGreen {
            let active = self.etcd.active(&self.name).await;
            let switched = matches!(&active, Ok(Some(a)) if a.version == *version);
            if !switched {
                return self.blue_green(version, revision, follow).await;
            }
        }
        self.report(Converge::Waiting, &running, revision, None)
            .await;
        let rolling = self.service.rolling;
        let semaphore = self.etcd.deploy_slots(&self.name);
        let slots = deploy::slots(&rolling);
        let slot = loop {
            // Given up only while waiting, never mid-claim: a claim sent
            // completes, so no slot is left taken by a wait given up.
            let superseded = async {
                if follow.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let acquired = self
                .etcd
                .acquire_or(&semaphore, slots, self.service.deploy_timeout, superseded)
                .await;
            match acquired {
                Ok(Some(slot)) => break slot,
                Ok(None) => {
                    tracing::info!(service = %self.name, version = %version, "desired version changed while waiting for a slot");
                    return Tried::Superseded;
                }
                Err(e) => {
                    tracing::info!(service = %self.name, error = %e, "still waiting for a slot of the cluster's rolling bounds");
                    // A registry that failed gives no event to wait for.
                    if matches!(e, cluster::SemaphoreError::Request(_)) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        };
        let limits = deploy::slot_limits(&rolling, slot.index());
        tracing::info!(service = %self.name, version = %version, slot = slot.index(), max_surge = limits.max_surge, max_unavailable = limits.max_unavailable, "converging to the cluster's desired version");
        self.report(Converge::Deploying, version.as_str(), revision, None)
            .await;
        let result = self
            .engine
            .converge(
                self.name.as_str(),
                version.clone(),
                limits,
                deploy::Reporter::none(),
            )
            .await;
        if let Err(e) = slot.release().await {
            tracing::warn!(service = %self.name, error = %e, "could not free the slot; it goes with the lease");
        }
        match result {
            Ok(_) => {
                self.report(Converge::Converged, version.as_str(), revision, None)
                    .await;
            }
            Err(e) => {
                tracing::error!(service = %self.name, version = %version, error = %e, "could not converge to the cluster's desired version");
                let running = self
                    .engine
                    .running_version(self.name.as_str())
                    .unwrap_or_default();
                self.report(Converge::Failed, &running, revision, Some(e.to_string()))
                    .await;
            }
        }
        Tried::Settled
    }

    /// This node's part of a blue-green deploy of `version` (desired at
    /// `revision`): a new set on standby, then the switch or its end.
    async fn blue_green(
        &self,
        version: &Version,
        revision: i64,
        follow: &mut watch::Receiver<Option<Option<DesiredAt>>>,
    ) -> Tried {
        // Followed before the new set starts: no switch is missed.
        let active = self.etcd.follow_active(&self.name);
        let mut active = active.receiver();
        let lock = self.etcd.follow_lock("deploy", &self.name);
        let mut lock = lock.receiver();
        self.report(Converge::Deploying, version.as_str(), revision, None)
            .await;
        // Never given up halfway: the start is bounded by the deploy
        // timeout, and a set left half-started would outlive the deploy.
        let prepared = self
            .engine
            .prepare_green(
                self.name.as_str(),
                version.clone(),
                deploy::Reporter::none(),
            )
            .await;
        let green = match prepared {
            Ok(green) => green,
            Err(e) => {
                tracing::error!(service = %self.name, %version, error = %e, "could not start the new set of a blue-green deploy");
                self.report_failed(revision, e.to_string()).await;
                return Tried::Settled;
            }
        };
        self.report(Converge::Standby, version.as_str(), revision, None)
            .await;
        let is_switch = |a: &Option<Option<cluster::Active>>| matches!(a, Some(Some(a)) if a.version == *version);
        let next = loop {
            if is_switch(&active.borrow_and_update()) {
                break Next::Switch;
            }
            if follow.has_changed().unwrap_or(false) {
                break Next::Superseded;
            }
            if matches!(*lock.borrow_and_update(), Some(None)) {
                // The lock went before the switch was seen: a fresh read
                // says whether the switch was written first.
                match self.etcd.active(&self.name).await {
                    Ok(Some(a)) if a.version == *version => break Next::Switch,
                    _ => {
                        break Next::Abandon(
                            "the deploy ended without switching to it (its node stopped or went away)"
                                .to_owned(),
                        );
                    }
                }
            }
            // A follower that ended gives no more events (never busy).
            let superseded = async {
                if follow.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = active.changed() => {}
                () = superseded => break Next::Superseded,
                _ = lock.changed() => {}
            }
        };
        match next {
            Next::Switch => match green.switch().await {
                Ok(_) => {
                    self.report(Converge::Converged, version.as_str(), revision, None)
                        .await;
                }
                Err(e) => self.report_failed(revision, e.to_string()).await,
            },
            Next::Superseded => {
                tracing::info!(service = %self.name, %version, "desired version changed before the switch; stopping the new set");
                green
                    .abandon("the desired version changed before the switch")
                    .await;
                return Tried::Superseded;
            }
            Next::Abandon(reason) => {
                green.abandon(&reason).await;
                self.report_failed(revision, reason).await;
            }
        }
        Tried::Settled
    }

    /// Reports `failed` with the version that runs here.
    async fn report_failed(&self, revision: i64, reason: String) {
        let running = self
            .engine
            .running_version(self.name.as_str())
            .unwrap_or_default();
        self.report(Converge::Failed, &running, revision, Some(reason))
            .await;
    }

    async fn report(&self, state: Converge, version: &str, desired: i64, reason: Option<String>) {
        let instances = match &self.service.runner {
            config::Runner::Supervised(s) => s.instances,
            config::Runner::External(e) => e.targets.len() as u32,
        };
        let report = NodeReport {
            node: self.etcd.node().to_string(),
            version: version.to_owned(),
            state,
            desired,
            instances,
            reason,
            at: cluster::now_rfc3339(),
        };
        if let Err(e) = self.etcd.report(&self.name, &report).await {
            tracing::warn!(service = %self.name, error = %e, "could not report this node's deploy state");
        }
    }
}
