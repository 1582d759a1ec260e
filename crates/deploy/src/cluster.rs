//! Deploys across a cluster, without depending on one (the binary wires a
//! [`ClusterDeploys`] to the `cluster` crate): with one set, `baton deploy`
//! and `baton rollback` of a supervised service go to it instead of this
//! node's strategies — it sets the cluster's desired version and follows
//! every node to it — and each node converges its own instances with
//! [`Engine::converge`], a rolling deploy within its share of the
//! cluster-wide bounds ([`slots`], [`slot_limits`]).
//!
//! A blue-green deploy across the cluster is two steps on each node:
//! [`Engine::prepare_green`] starts a whole new set next to the old one,
//! with no traffic here, and registers its ready instances as `standby`;
//! then [`Green::switch`] gives it all of this node's traffic and retires
//! the old set (out of the pool and the registry first), or
//! [`Green::abandon`] retires the new set and leaves the old one serving.
//! Which of the two, and when, is the cluster's decision.
//!
//! A reload that changes a supervised service's `version` in the file goes
//! the same way ([`Engine::reload_in_cluster`]): the version is the
//! cluster's, so this node never runs it alone.
//!
//! Nothing here talks to a registry or waits on one itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use handoff::time::SaturatingAdd;
use tokio::time::Instant;

use crate::progress::{Progress, Reporter, Traffic, millis};
use crate::strategy::traffic::{retire, set_shares};
use crate::strategy::{self, Busy, Target, blue_green};
use crate::{Deploy, DeployError, Deployed, Engine, Failure, Outcome, state};

/// What [`ClusterDeploys`] returns.
pub type DeployFuture = Pin<Box<dyn Future<Output = Result<Deployed, DeployError>> + Send>>;

/// Runs the deploys of supervised services across the cluster.
pub trait ClusterDeploys: Send + Sync {
    /// Deploys `version` of `service` on every node that runs it.
    fn deploy(
        &self,
        service: &config::Service,
        version: config::Version,
        strategy: config::Strategy,
        reporter: Reporter,
    ) -> DeployFuture;

    /// Goes back to the version before the cluster's current one, on
    /// every node.
    fn rollback(&self, service: &config::Service, reporter: Reporter) -> DeployFuture;
}

/// How many nodes may replace instances of a service at once under the
/// cluster-wide `rolling` bounds: one slot per unit of the larger bound
/// (each holder's share is one instance, [`slot_limits`]).
pub fn slots(rolling: &config::Rolling) -> usize {
    rolling.max_surge.max(rolling.max_unavailable).max(1) as usize
}

/// The share of the cluster-wide `rolling` bounds that the holder of slot
/// `index` (below [`slots`]) may use: one extra instance if `index` is
/// below `max_surge`, one missing if below `max_unavailable`. Summed over
/// every slot, at most `max_surge` extra and `max_unavailable` missing
/// instances in the whole cluster; never both 0.
pub fn slot_limits(rolling: &config::Rolling, index: usize) -> supervisor::Limits {
    supervisor::Limits {
        max_surge: usize::from(index < rolling.max_surge as usize),
        max_unavailable: usize::from(index < rolling.max_unavailable as usize),
    }
}

/// The requests this node's proxy routed to a service from a moment on.
pub struct TrafficWindow {
    stats: Option<(proxy::PoolStats, proxy::StatsSnapshot)>,
}

impl TrafficWindow {
    /// The requests since the window opened.
    pub fn traffic(&self) -> Traffic {
        let Some((stats, before)) = &self.stats else {
            return Traffic::default();
        };
        let window = stats.snapshot().since(before);
        Traffic {
            requests: window.requests(),
            failures: window.failures(),
            p99_ms: window.quantile(0.99).map(millis),
        }
    }
}

impl Engine {
    /// Connects the engine to the cluster's deploys; call before
    /// [`Engine::start`]. Returns `false` (and changes nothing) if one was
    /// set already.
    pub fn set_cluster_deploys(&self, cluster: Arc<dyn ClusterDeploys>) -> bool {
        self.inner.cluster_deploys.set(cluster).is_ok()
    }

    /// The version `service` runs on this node (the last deployed), if it
    /// is a service of the config.
    pub fn running_version(&self, service: &str) -> Option<String> {
        self.service(service)?;
        Some(self.saved(service).version)
    }

    /// Opens a window on the requests this node's proxy routes to
    /// `service` from now on.
    pub fn traffic_window(&self, service: &str) -> TrafficWindow {
        let stats = self.service(service).and_then(|s| {
            let stats = self.proxy()?.pool_stats(&s.pool_name())?;
            let before = stats.snapshot();
            Some((stats, before))
        });
        TrafficWindow { stats }
    }

    /// Brings this node's instances of the supervised `service` to
    /// `version` by a rolling deploy within `limits` (its share of the
    /// cluster's bounds), once no other deploy of the service runs here.
    /// Takes no cluster-wide lock: the node that runs the cluster's deploy
    /// holds it. A failure is undone here before it returns, as for every
    /// deploy.
    pub async fn converge(
        &self,
        service: &str,
        version: config::Version,
        limits: supervisor::Limits,
        reporter: Reporter,
    ) -> Result<Deployed, DeployError> {
        let (svc, spec) = self.supervised_at(service, version)?;
        let _busy = Busy::claim_when_free(self, service, &reporter).await;
        strategy::run(
            self,
            &svc,
            config::Strategy::Rolling,
            spec.version.to_string(),
            Target::Version(spec),
            &reporter,
            Outcome::Deployed,
            Some(limits),
        )
        .await
    }
}

/// This node's part of a blue-green deploy across the cluster, between
/// its new set getting ready and the cluster's decision: end it with
/// [`Green::switch`] or [`Green::abandon`]. The service stays claimed
/// meanwhile. Dropped without either, it is abandoned in the background.
pub struct Green {
    engine: Engine,
    service: config::Service,
    /// The new set.
    set: u64,
    /// The sets that served before it.
    old: Vec<u64>,
    record: Deploy,
    started: Instant,
    window: TrafficWindow,
    reporter: Reporter,
    /// Released (the service free again) when the deploy ends.
    busy: Option<Busy>,
}

impl Engine {
    /// Starts a whole new set of `version` of the supervised `service` next
    /// to the one that serves, with no traffic on this node; once its
    /// instances are ready (and pass the smoke checks) they are registered
    /// as `standby`. Bounded by the service's `deploy_timeout`; a failure
    /// retires the new set before it returns, and the old one never
    /// stopped serving.
    pub async fn prepare_green(
        &self,
        service: &str,
        version: config::Version,
        reporter: Reporter,
    ) -> Result<Green, DeployError> {
        let (svc, spec) = self.supervised_at(service, version)?;
        let busy = Busy::claim_when_free(self, service, &reporter).await;
        blue_green::end_standby(self, service).await;
        let record = Deploy {
            version: spec.version.to_string(),
            targets: Vec::new(),
            started: state::now(),
            outcome: Outcome::InProgress,
        };
        self.note(service, &record, Outcome::InProgress).await;
        reporter.send(Progress::Started {
            service: service.to_owned(),
            version: record.version.clone(),
            strategy: config::Strategy::BlueGreen.to_string(),
            instances: spec.instances as usize,
        });
        tracing::info!(service, version = %record.version, "starting the new set of a blue-green deploy across the cluster");
        let started = Instant::now();
        let deadline = started.saturating_add(svc.deploy_timeout);
        let old: Vec<u64> = self.with_runtime(service, |rt| {
            rt.sets
                .iter()
                .filter(|s| s.share > 0)
                .map(|s| s.id)
                .collect()
        });
        let failed = async |reason: Failure| {
            tracing::error!(service, version = %record.version, %reason, "the new set of a blue-green deploy failed; the previous version keeps serving");
            self.note(service, &record, Outcome::Failed(reason.to_string()))
                .await;
            Err(DeployError::Failed(reason))
        };
        let (set, mut phase) = match self.start_set(&svc, &spec, 0) {
            Ok(started) => started,
            Err(e) => return failed(Failure::Start(Arc::new(e))).await,
        };
        // Registered as `standby` as its instances get ready.
        self.with_set(service, set, |s| s.standby = true);
        let window = self.traffic_window(service);
        let failure = match crate::sets::ready_by(&mut phase, deadline, svc.deploy_timeout).await {
            None => blue_green::smoke(self, &svc, set, &reporter, deadline)
                .await
                .err(),
            failed => failed,
        };
        if let Some(reason) = failure {
            reporter.send(Progress::RollingBack {
                reason: reason.to_string(),
            });
            drop_green(self, &svc, set).await;
            return failed(reason).await;
        }
        // Every ready instance registered as `standby` before it returns.
        self.publish_logged(service).await;
        Ok(Green {
            engine: self.clone(),
            service: svc,
            set,
            old,
            record,
            started,
            window,
            reporter,
            busy: Some(busy),
        })
    }
}

/// Retires a new set that never took traffic: out of the registry first,
/// then stopped.
async fn drop_green(engine: &Engine, service: &config::Service, set: u64) {
    engine.with_set(&service.name, set, |s| s.standby = false);
    retire(engine, service, set).await;
}

impl Green {
    /// The cluster switched to the new version: the new set takes all of
    /// this node's traffic in one snapshot (and is registered `ready`),
    /// the old sets leave the pool and the registry — every front door
    /// having applied it — and are stopped once drained.
    pub async fn switch(mut self) -> Result<Deployed, DeployError> {
        let engine = self.engine.clone();
        let name = self.service.name.clone();
        engine.with_set(&name, self.set, |s| s.standby = false);
        set_shares(&engine, &name, &self.old, self.set, 100).await;
        self.reporter.send(Progress::Traffic { percent: 100 });
        for &set in &self.old {
            let version = engine
                .with_set(&name, set, |s| s.version.clone())
                .unwrap_or_default();
            self.reporter.send(Progress::Draining { version });
            retire(&engine, &self.service, set).await;
        }
        let traffic = self.window.traffic();
        tracing::info!(service = %name, version = %self.record.version, duration_ms = self.started.elapsed().as_millis() as u64, "deploy complete");
        engine.note(&name, &self.record, Outcome::Deployed).await;
        self.busy = None;
        Ok(Deployed {
            version: self.record.version.clone(),
            strategy: config::Strategy::BlueGreen,
            duration: self.started.elapsed(),
            traffic,
        })
    }

    /// The cluster gave up the deploy (`reason`): the new set leaves the
    /// registry and stops; the old one never stopped serving.
    pub async fn abandon(mut self, reason: &str) {
        let busy = self.busy.take();
        end(&self.engine, &self.service, self.set, &self.record, reason).await;
        drop(busy);
    }
}

/// Abandons the new set `set` and records why.
async fn end(engine: &Engine, service: &config::Service, set: u64, record: &Deploy, reason: &str) {
    tracing::warn!(service = %service.name, version = %record.version, reason, "blue-green deploy abandoned; the previous version keeps serving");
    drop_green(engine, service, set).await;
    engine
        .note(&service.name, record, Outcome::Failed(reason.to_owned()))
        .await;
}

impl Drop for Green {
    fn drop(&mut self) {
        let Some(busy) = self.busy.take() else {
            return;
        };
        let (engine, service) = (self.engine.clone(), self.service.clone());
        let (set, record) = (self.set, self.record.clone());
        tokio::spawn(async move {
            end(
                &engine,
                &service,
                set,
                &record,
                "given up before the switch",
            )
            .await;
            drop(busy);
        });
    }
}

impl Engine {
    /// The version a reload's `plan` deploys if it must go to the cluster:
    /// with [`ClusterDeploys`] set, a supervised service whose file names
    /// another version than the one this node runs.
    pub(crate) fn cluster_version(
        &self,
        service: &config::Service,
        plan: &config::diff::ServicePlan,
    ) -> Option<(Arc<dyn ClusterDeploys>, config::Version)> {
        let cluster = self.inner.cluster_deploys.get()?;
        let config::Runner::Supervised(_) = &service.runner else {
            return None;
        };
        let version = plan.deploy.as_ref()?.version.clone()?;
        let new = version.as_str() != self.saved(&service.name).version;
        new.then(|| (Arc::clone(cluster), version))
    }

    /// A reload's change of a supervised service whose file names a new
    /// `version`, in a cluster: settings that need a new set first, on this
    /// node at the version it runs; then the version, cluster-wide (every
    /// node converges to it, this one within its slot like the others, so
    /// the service is released to its converger meanwhile); then the new
    /// number of instances here.
    pub(crate) async fn reload_in_cluster(
        &self,
        service: &config::Service,
        plan: &config::diff::ServicePlan,
        (cluster, version): (Arc<dyn ClusterDeploys>, config::Version),
        reporter: &Reporter,
        busy: &mut Option<Busy>,
    ) -> Result<(), DeployError> {
        let name = service.name.as_str();
        if plan.deploy.as_ref().is_some_and(|d| d.new_set) {
            let settings = config::diff::ServicePlan {
                deploy: Some(config::diff::Deploy {
                    version: None,
                    targets: false,
                    new_set: true,
                }),
                scale: None,
            };
            self.change_service(service, &settings, reporter).await?;
        }
        tracing::info!(service = name, %version, "the file names a new version: deploying it across the cluster");
        *busy = None;
        cluster
            .deploy(service, version, service.strategy, reporter.clone())
            .await?;
        if let Some(scale) = plan.scale {
            *busy = Some(Busy::claim_when_free(self, name, reporter).await);
            let instances = config::diff::ServicePlan {
                deploy: None,
                scale: Some(scale),
            };
            self.change_service(service, &instances, reporter).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the bounds, the shares of all the slots add up to no more
    /// than the cluster-wide bounds, and each holder can make progress.
    #[test]
    fn the_slots_shares_add_up_to_the_cluster_bounds() {
        for surge in 0..=4 {
            for unavailable in 0..=4 {
                if surge == 0 && unavailable == 0 {
                    continue;
                }
                let rolling = config::Rolling {
                    max_surge: surge,
                    max_unavailable: unavailable,
                };
                let n = slots(&rolling);
                let shares: Vec<_> = (0..n).map(|i| slot_limits(&rolling, i)).collect();
                let total_surge: usize = shares.iter().map(|l| l.max_surge).sum();
                let total_missing: usize = shares.iter().map(|l| l.max_unavailable).sum();
                assert_eq!(total_surge, surge as usize, "{rolling:?}");
                assert_eq!(total_missing, unavailable as usize, "{rolling:?}");
                assert!(
                    shares.iter().all(|l| l.max_surge + l.max_unavailable > 0),
                    "{rolling:?}"
                );
            }
        }
    }
}
