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

use std::time::Duration;

use cluster::{Converge, DesiredAt, Etcd, Name, NodeReport, Registry};
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
