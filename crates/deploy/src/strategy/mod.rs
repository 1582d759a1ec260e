//! The deploy strategies as moves between a service's sets, each with its
//! own way back: `rolling`, `two_sets` (a new set next to the old one) with
//! `blue_green` and `canary` moving the traffic, `traffic` (shares and
//! retiring a set) and `rollback`. This module checks a request, claims the
//! service and records the deploy around whichever runs.
//!
//! Every wait is bounded by the deploy's deadline (the service's
//! `deploy_timeout`) and a deploy that fails undoes itself before it
//! returns: nothing is left half-applied for a caller that went away.

pub(crate) mod blue_green;
pub(crate) mod canary;
pub(crate) mod rollback;
mod rolling;
pub(crate) mod traffic;
mod two_sets;

use handoff::time::SaturatingAdd;
use tokio::time::Instant;

use crate::progress::{Progress, Reporter};
use crate::{BadRequest, Deploy, DeployError, DeployRequest, Deployed, Engine, Outcome, state};

/// What a deploy puts in place.
#[derive(Clone)]
pub(crate) enum Target {
    Version(config::Supervised),
    Targets(Vec<config::UpstreamAddr>),
}

/// Marks the service busy for the life of a deploy or rollback.
pub(crate) struct Busy {
    engine: Engine,
    service: String,
}

impl Busy {
    pub(crate) fn claim(
        engine: &Engine,
        service: &str,
        reporter: &Reporter,
    ) -> Result<Busy, DeployError> {
        // Under the lock `begin_upgrade` checks `busy` with: either the
        // upgrade sees this deploy, or this deploy sees the upgrade.
        engine.with_runtime(service, |rt| {
            if engine
                .inner
                .upgrading
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(DeployError::Upgrading);
            }
            if rt.busy {
                return Err(DeployError::Busy(service.to_owned()));
            }
            rt.busy = true;
            rt.reporter = reporter.clone();
            Ok(())
        })?;
        Ok(Busy {
            engine: engine.clone(),
            service: service.to_owned(),
        })
    }
}

impl Busy {
    /// Claims the service once its running deploy (or rollback, or
    /// removal) has ended.
    pub(crate) async fn claim_when_free(
        engine: &Engine,
        service: &str,
        reporter: &Reporter,
    ) -> Busy {
        loop {
            let released = engine.with_runtime(service, |rt| rt.released.clone());
            let notified = released.notified();
            tokio::pin!(notified);
            // Registered before the check: a release in between wakes it.
            notified.as_mut().enable();
            if let Ok(busy) = Busy::claim(engine, service, reporter) {
                return busy;
            }
            notified.await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let released = self.engine.with_runtime(&self.service, |rt| {
            rt.busy = false;
            rt.reporter = Reporter::none();
            rt.released.clone()
        });
        released.notify_waiters();
    }
}

pub(crate) async fn deploy(
    engine: &Engine,
    req: DeployRequest,
    reporter: Reporter,
) -> Result<Deployed, DeployError> {
    let service = engine
        .service(&req.service)
        .ok_or_else(|| DeployError::UnknownService(req.service.clone()))?;
    let name = service.name.clone();
    let (label, target) = match &service.runner {
        config::Runner::Supervised(spec) => {
            if !req.targets.is_empty() {
                return Err(BadRequest::TargetsForSupervised(name).into());
            }
            let Some(version) = req.version.clone() else {
                return Err(BadRequest::VersionRequired(name).into());
            };
            let mut spec = spec.clone();
            spec.version = version;
            (spec.version.to_string(), Target::Version(spec))
        }
        config::Runner::External(_) => {
            if req.targets.is_empty() {
                return Err(BadRequest::TargetsRequired(name).into());
            }
            let mut targets = req.targets.clone();
            targets.dedup();
            let label = req.version.as_ref().map(ToString::to_string);
            (label.unwrap_or_default(), Target::Targets(targets))
        }
    };
    let strategy = req.strategy.unwrap_or(service.strategy);
    // In a cluster, a supervised service's version is the cluster's:
    // every node that runs the service converges to it.
    if let (Target::Version(spec), Some(cluster)) = (&target, engine.inner.cluster_deploys.get()) {
        let version = spec.version.clone();
        return cluster.deploy(&service, version, strategy, reporter).await;
    }
    let _busy = Busy::claim(engine, &name, &reporter)?;
    let _cluster = engine.lock_deploy(&name).await?;
    run(
        engine,
        &service,
        strategy,
        label,
        target,
        &reporter,
        Outcome::Deployed,
        None,
    )
    .await
}

/// Deploys `target`, recording it; the service is already claimed. A
/// rolling deploy keeps within `limits` too (a node's share of a
/// cluster-wide bound).
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one deploy, each used once"
)]
pub(crate) async fn run(
    engine: &Engine,
    service: &config::Service,
    strategy: config::Strategy,
    label: String,
    target: Target,
    reporter: &Reporter,
    success: Outcome,
    limits: Option<supervisor::Limits>,
) -> Result<Deployed, DeployError> {
    let name = service.name.as_str();
    // A new deploy ends the previous one's rollback window.
    blue_green::end_standby(engine, name).await;
    let record = Deploy {
        version: label.clone(),
        targets: match &target {
            Target::Version(_) => Vec::new(),
            Target::Targets(t) => t.iter().map(|t| t.authority.clone()).collect(),
        },
        started: state::now(),
        outcome: Outcome::InProgress,
    };
    engine.note(name, &record, Outcome::InProgress).await;
    reporter.send(Progress::Started {
        service: name.to_owned(),
        version: label.clone(),
        strategy: strategy.to_string(),
        instances: match &target {
            Target::Version(spec) => spec.instances as usize,
            Target::Targets(t) => t.len(),
        },
    });
    tracing::info!(service = name, version = %label, %strategy, "deploy started");
    let window = engine.traffic_window(name);
    let started = Instant::now();
    let deadline = started.saturating_add(service.deploy_timeout);

    let outcome = match (&target, strategy) {
        (Target::Version(spec), config::Strategy::Rolling) => {
            rolling::rolling(engine, service, spec, reporter, deadline, limits).await
        }
        _ => two_sets::two_sets(engine, service, strategy, &target, reporter, deadline).await,
    };
    let traffic = window.traffic();
    match outcome {
        Ok(()) => {
            tracing::info!(service = name, version = %label, duration_ms = started.elapsed().as_millis() as u64, requests = traffic.requests, failures = traffic.failures, "deploy complete");
            engine.note(name, &record, success).await;
            Ok(Deployed {
                version: label,
                strategy,
                duration: started.elapsed(),
                traffic,
            })
        }
        Err(reason) => {
            tracing::error!(service = name, version = %label, %reason, "deploy failed and was rolled back; the previous version keeps serving");
            engine
                .note(name, &record, Outcome::Failed(reason.to_string()))
                .await;
            Err(DeployError::Failed(reason))
        }
    }
}
