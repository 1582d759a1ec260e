//! A reload: the services follow the file. Each service's change is what
//! `config::diff` plans for it, between the file as last applied and the
//! new one:
//! - a new service starts at once; its routes are withheld until its first
//!   instances are ready (or its first start failed), then published;
//! - a removed service leaves the routes and the pools in the reload's own
//!   snapshot, then its instances finish their requests and stop;
//! - a changed service is deployed with its strategy (a change to what a
//!   running set was started with needs a new set: blue-green instead of
//!   rolling), scaled within its bounds, or changed in place (settings the
//!   proxy reads).
//!
//! The version: a `version` changed in the file is a deploy of that
//! version (in a cluster, of a supervised service, a cluster-wide deploy,
//! as `baton deploy` sent to this node); an unchanged one keeps the version
//! serving (the state's, which `baton deploy` may have moved), even when
//! other fields change.
//!
//! A reload is refused, and changes nothing, when the proxy refuses the
//! config, when it would remove every service, or when it would change a
//! service whose deploy is running — the last two unless forced (a forced
//! change to a busy service waits for the deploy to end). Nothing here
//! waits on a deploy before returning: deploys, scaling and removals run on
//! a task of their own, which the caller may await ([`Reloaded::done`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use handoff::time::SaturatingAdd;
use tokio::time::Instant;

use crate::progress::{Progress, Reporter};
use crate::sets::SetPhase;
use crate::strategy::{self, Busy, Target};
use crate::{DeployError, Engine, Failure, Outcome};

/// How to reload.
#[derive(Clone, Default)]
pub struct ReloadOptions {
    /// Apply a config that removes every service, or changes one whose
    /// deploy is running (after that deploy).
    pub force: bool,
    /// Where the deploys it starts report their progress.
    pub reporter: Reporter,
    /// Told of each service's change as it starts and ends.
    pub watcher: Option<Arc<dyn Watcher>>,
}

/// Follows the changes a reload starts, service by service, each one
/// apart (what [`ReloadOptions::reporter`] mixes into one stream): the
/// dashboard shows them as it shows a `baton deploy`. Removals are not
/// changes here; a change applied in place runs nothing and is not told.
pub trait Watcher: Send + Sync {
    /// The change of `service` begins (it may still wait for a running
    /// deploy): the reporter it reports to, which should pass its events
    /// on to `reporter`, the reload's own.
    fn started(&self, service: &str, reporter: Reporter) -> Reporter;
    /// The change of `service` ended so (a failed deploy was rolled back).
    fn ended(&self, service: &str, result: &Result<(), DeployError>);
}

/// A reload that was accepted: the proxy serves the new routes and pools.
pub struct Reloaded {
    /// What happens to each service that changed.
    pub services: Vec<config::diff::ServiceDiff>,
    /// Resolves when every deploy, scaling and removal the reload started
    /// has ended, with each service's outcome (the services whose change
    /// was applied in place are not listed).
    pub done: tokio::task::JoinHandle<Vec<(String, Result<(), DeployError>)>>,
}

/// Why a reload was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy could not build the new config.
    #[error("{}", .0.0.join("; "))]
    Build(proxy::BuildErrors),
    /// The new config has no service and the running one has some.
    #[error(
        "the new config removes every service ({}): refused (reload with --force to remove them all)",
        .0.join(", ")
    )]
    RemovesEveryService(Vec<String>),
    /// A service the new config changes or removes is being deployed.
    #[error(
        "the new config changes {} while {} deployed: refused (wait for the deploy to end, or reload with --force to apply the change after it)",
        names(.0), if .0.len() == 1 { "it is being" } else { "they are being" }
    )]
    Busy(Vec<String>),
    /// A service the new config adds is still stopping after a removal.
    #[error(
        "service {0:?} is still stopping after its removal: refused (reload again once it stopped)"
    )]
    StillStopping(String),
}

fn names(v: &[String]) -> String {
    v.iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One service's work after the swap.
enum Job {
    Remove(config::Service),
    Change(config::Service, config::diff::ServicePlan),
}

impl Engine {
    /// Applies `config`: routes, pools and settings at once, in one
    /// snapshot; the services as described in this module. On `Err`
    /// nothing changed.
    pub async fn reload(
        &self,
        mut config: config::Config,
        options: ReloadOptions,
    ) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let file = self.inner.file.get();
        let changes = config::diff::services(&file, &config.services);
        if !options.force && !file.is_empty() && config.services.is_empty() {
            return Err(ReloadError::RemovesEveryService(
                file.keys().cloned().collect(),
            ));
        }

        // Claim every service with work to do before anything changes: a
        // deploy requested meanwhile is refused as busy, and a service
        // already busy refuses the reload (or, forced, is claimed later).
        let mut claimed: BTreeMap<String, Busy> = BTreeMap::new();
        let mut busy = Vec::new();
        for change in &changes {
            let name = &change.name;
            match change.change {
                config::diff::Change::Added => {
                    if self.with_runtime(name, |rt| rt.busy || !rt.sets.is_empty()) {
                        return Err(ReloadError::StillStopping(name.clone()));
                    }
                }
                config::diff::Change::Changed
                    if change.plan.as_ref().is_some_and(|p| p.in_place()) => {}
                _ => match Busy::claim(self, name, &options.reporter) {
                    Ok(b) => {
                        claimed.insert(name.clone(), b);
                    }
                    Err(_) => busy.push(name.clone()),
                },
            }
        }
        if !busy.is_empty() && !options.force {
            return Err(ReloadError::Busy(busy));
        }

        // The services as they will run: each keeps the version (or
        // targets) it serves until its deploy moves it; a new one starts
        // at the state's version if the state knows it, else the file's.
        let file_services = config.services.clone();
        let previous = self.inner.base.get();
        let added: Vec<String> = changes
            .iter()
            .filter(|c| c.change == config::diff::Change::Added)
            .map(|c| c.name.clone())
            .collect();
        for (name, service) in config.services.iter_mut() {
            if previous.services.contains_key(name) {
                keep_serving(service, &self.saved(name));
            }
        }
        let mut fresh = config.clone();
        fresh.services.retain(|name, _| added.contains(name));
        let saved = self.inner.state.with(|state| {
            let mut next = state.clone();
            crate::restore::restore(&mut fresh, &mut next).map(|changed| (next, changed))
        });
        match saved {
            Ok((next, changed)) => {
                for (name, service) in fresh.services {
                    config.services.insert(name, service);
                }
                if changed {
                    self.inner.state.with(|state| *state = next);
                    self.persist().await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the state's version of a new service is unusable; starting the file's")
            }
        }
        let withheld: BTreeSet<String> = added
            .iter()
            .filter(|name| {
                matches!(
                    config.services.get(*name).map(|s| &s.runner),
                    Some(config::Runner::Supervised(_))
                )
            })
            .cloned()
            .collect();

        self.inner.base.with(|base| *base = config.clone());
        self.inner
            .withheld
            .with(|w| w.extend(withheld.iter().cloned()));
        if let Err(errors) = self.publish().await {
            self.inner.base.with(|base| *base = previous);
            self.inner
                .withheld
                .with(|w| w.retain(|name| !withheld.contains(name)));
            return Err(ReloadError::Build(errors));
        }
        self.inner.file.with(|f| *f = file_services);

        // Start the new services; their routes come once they are ready.
        for name in &added {
            let Some(service) = config.services.get(name).cloned() else {
                continue;
            };
            self.start_added(service).await;
        }

        let mut jobs = Vec::new();
        for change in changes.clone() {
            let job = match change.change {
                config::diff::Change::Added => continue,
                config::diff::Change::Removed => match previous.services.get(&change.name) {
                    Some(s) => Job::Remove(s.clone()),
                    None => continue,
                },
                config::diff::Change::Changed => {
                    let plan = change.plan.clone().unwrap_or_default();
                    match config.services.get(&change.name) {
                        Some(s) if !plan.in_place() => Job::Change(s.clone(), plan),
                        _ => continue,
                    }
                }
            };
            jobs.push((change.name.clone(), job, claimed.remove(&change.name)));
        }
        let (engine, reporter, watcher) = (
            self.clone(),
            options.reporter.clone(),
            options.watcher.clone(),
        );
        let done = tokio::spawn(async move {
            let runs = jobs.into_iter().map(|(name, job, claim)| {
                let (engine, mut reporter) = (engine.clone(), reporter.clone());
                let watcher = watcher.clone().filter(|_| matches!(job, Job::Change(..)));
                if let Some(w) = &watcher {
                    reporter = w.started(&name, reporter);
                }
                async move {
                    let mut busy = Some(match claim {
                        Some(b) => b,
                        None => {
                            tracing::info!(service = %name, "waiting for the running deploy to end before applying the new config");
                            Busy::claim_when_free(&engine, &name, &reporter).await
                        }
                    });
                    let result = match job {
                        Job::Remove(service) => {
                            engine.remove_service(&service).await;
                            Ok(())
                        }
                        // A new version of a supervised service in a
                        // cluster is the cluster's (`cluster.rs`).
                        Job::Change(service, plan) => match engine.cluster_version(&service, &plan) {
                            Some(to) => {
                                engine
                                    .reload_in_cluster(&service, &plan, to, &reporter, &mut busy)
                                    .await
                            }
                            None => engine.change_service(&service, &plan, &reporter).await,
                        },
                    };
                    drop(busy);
                    if let Some(w) = &watcher {
                        w.ended(&name, &result);
                    }
                    (name, result)
                }
            });
            futures_util::future::join_all(runs).await
        });
        Ok(Reloaded {
            services: changes,
            done,
        })
    }

    /// Starts a service the reload added: an external one's targets are
    /// routed at once; a supervised one's routes are published once its
    /// first instances are ready (or failed to be: the service then exists
    /// without a healthy member, as at baton's start).
    async fn start_added(&self, service: config::Service) {
        match &service.runner {
            config::Runner::External(e) => {
                let version = self.saved(&service.name).version;
                let id = self.add_external_set(&service.name, &e.targets, version, 100);
                self.with_set(&service.name, id, |set| {
                    set.ready = e.targets.iter().map(|t| (t.clone(), 0)).collect();
                    set.phase.send_replace(SetPhase::Ready);
                });
                self.publish_logged(&service.name).await;
                tracing::info!(service = %service.name, "service added");
            }
            config::Runner::Supervised(spec) => {
                let name = service.name.clone();
                match self.start_set(&service, spec, 100) {
                    Ok((_, mut phase)) => {
                        let engine = self.clone();
                        tokio::spawn(async move {
                            let outcome = phase
                                .wait_for(|p| *p != SetPhase::Starting)
                                .await
                                .map(|p| p.clone());
                            match outcome {
                                Ok(SetPhase::Failed(reason)) => {
                                    tracing::error!(service = %name, %reason, "new service's first instances failed; routing to it anyway")
                                }
                                _ => {
                                    tracing::info!(service = %name, "service added and ready; routing to it")
                                }
                            }
                            engine.inner.withheld.with(|w| w.remove(&name));
                            engine.publish_logged(&name).await;
                        });
                    }
                    Err(e) => {
                        tracing::error!(service = %name, error = %e, "could not start the new service");
                        self.inner.withheld.with(|w| w.remove(&name));
                        self.publish_logged(&name).await;
                    }
                }
            }
        }
    }

    /// A removed service: already out of the routes and pools; its sets
    /// finish their requests and stop, then it is forgotten (state
    /// included: added again, it starts afresh from the file).
    async fn remove_service(&self, service: &config::Service) {
        let name = service.name.as_str();
        let sets: Vec<u64> = self.with_runtime(name, |rt| {
            if let Some(standby) = rt.standby.take() {
                let _ = standby.cancel.send(());
            }
            rt.sets.iter().map(|s| s.id).collect()
        });
        let retiring = sets
            .iter()
            .map(|&set| strategy::traffic::retire(self, service, set));
        futures_util::future::join_all(retiring).await;
        self.inner.services.with(|services| services.remove(name));
        let removed = self
            .inner
            .state
            .with(|state| state.services.remove(name).is_some());
        if removed {
            self.persist().await;
        }
        tracing::info!(service = name, "service removed");
    }

    /// A changed service: its deploy, then its scaling.
    pub(crate) async fn change_service(
        &self,
        service: &config::Service,
        plan: &config::diff::ServicePlan,
        reporter: &Reporter,
    ) -> Result<(), DeployError> {
        let name = service.name.as_str();
        // In a cluster, one deploy of a service at a time in the whole
        // cluster, as for `baton deploy`.
        let _cluster = self.lock_deploy(name).await?;
        if let Some(deploy) = &plan.deploy {
            let strategy = match service.strategy {
                config::Strategy::Rolling if deploy.new_set => config::Strategy::BlueGreen,
                s => s,
            };
            let saved = self.saved(name);
            let (label, target) = match &service.runner {
                config::Runner::Supervised(spec) => {
                    let mut spec = spec.clone();
                    // Without a new version in the file, the one serving
                    // (which `keep_serving` put in).
                    if let Some(v) = &deploy.version {
                        spec.version = v.clone();
                    }
                    (spec.version.to_string(), Target::Version(spec))
                }
                config::Runner::External(e) => (saved.version, Target::Targets(e.targets.clone())),
            };
            strategy::run(
                self,
                service,
                strategy,
                label,
                target,
                reporter,
                Outcome::Deployed,
                None,
            )
            .await?;
        }
        if let Some((_, to)) = plan.scale {
            self.scale(service, to, reporter).await?;
        }
        Ok(())
    }

    /// Runs `to` instances in the service's routed set, within its bounds;
    /// one not done within the deploy timeout goes back to the number
    /// before.
    async fn scale(
        &self,
        service: &config::Service,
        to: u32,
        reporter: &Reporter,
    ) -> Result<(), DeployError> {
        let name = service.name.as_str();
        let to = to as usize;
        let found = self.with_runtime(name, |rt| {
            rt.sets
                .iter_mut()
                .find(|s| s.share > 0 && s.group.is_some())
                .and_then(|s| {
                    let from = s.size;
                    s.size = to;
                    Some((s.id, s.group.clone()?, from))
                })
        });
        let Some((set, group, from)) = found else {
            return Err(DeployError::Failed(Failure::NoInstances));
        };
        reporter.send(Progress::Scaling {
            service: name.to_owned(),
            from,
            to,
        });
        tracing::info!(service = name, from, to, "scaling");
        let deadline = Instant::now().saturating_add(service.deploy_timeout);
        match tokio::time::timeout_at(deadline, group.scale(to)).await {
            Ok(Ok(())) => {
                tracing::info!(service = name, instances = to, "service scaled");
                Ok(())
            }
            Ok(Err(_)) => Err(DeployError::Failed(Failure::SupervisorStopped)),
            Err(_) => {
                let reason = Failure::Timeout(service.deploy_timeout);
                reporter.send(Progress::RollingBack {
                    reason: reason.to_string(),
                });
                self.with_set(name, set, |s| s.size = from);
                let back = Instant::now().saturating_add(service.deploy_timeout);
                if tokio::time::timeout_at(back, group.scale(from))
                    .await
                    .is_err()
                {
                    tracing::error!(
                        service = name,
                        instances = from,
                        "could not scale back in time"
                    );
                }
                Err(DeployError::Failed(reason))
            }
        }
    }
}

/// A service that stays keeps the version (or targets) serving now, as
/// the state says, until its deploy moves it.
fn keep_serving(service: &mut config::Service, saved: &crate::ServiceState) {
    match &mut service.runner {
        config::Runner::Supervised(s) => {
            if let Ok(version) = saved.version.parse() {
                s.version = version;
            }
        }
        config::Runner::External(e) => {
            let targets: Result<Vec<config::UpstreamAddr>, _> =
                saved.targets.iter().map(|t| t.parse()).collect();
            if let Ok(targets) = targets
                && !targets.is_empty()
            {
                e.targets = targets;
            }
        }
    }
}
