//! Cluster-wide deploys, run by the node the request was sent to: it takes
//! the service's cluster-wide lock, writes the desired version, and follows
//! every node's report until each that runs the service has converged
//! (streaming each node's progress to the client). If any node fails, the
//! desired version is set back at once and every node is followed back to
//! it; the client gets the failure with each node's reason. The nodes
//! converge by themselves (`converge`); this side only writes the desired
//! version and watches.
//!
//! Blue-green adds one write: once every node reports its new set on
//! `standby`, the service's active version is set to the new one — the
//! switch, one key that every front door's discovery reads with the
//! instances — and the nodes retire their old sets. A failure before it
//! sets the desired version back (every node stops its new set; the old
//! ones never stopped serving). A rolling deploy removes the active
//! version first: its nodes' new instances are `ready` ones.
//!
//! A canary runs on this node first (`deploy::ClusterCanary`: one weighted
//! instance, every front door sends it the step's share, judged on this
//! node's front door's requests); judged good it is followed by a rolling
//! deploy, judged bad nothing else changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster::{Active, Converge, Desired, Etcd, Name, NodeReport, Registry};
use deploy::{DeployError, DeployFuture, Deployed, Failure, LockError, Progress, Reporter};
use tokio::time::Instant;

/// What the engine calls for a deploy or rollback of a supervised service.
pub struct Deploys {
    etcd: Etcd,
    engine: deploy::Engine,
    lease_ttl: Duration,
}

impl Deploys {
    pub fn new(etcd: Etcd, engine: deploy::Engine, lease_ttl: Duration) -> Arc<Deploys> {
        Arc::new(Deploys {
            etcd,
            engine,
            lease_ttl,
        })
    }
}

/// Where a cluster deploy goes.
enum Goal {
    Version(config::Version),
    /// The desired version's `previous`.
    Back,
}

/// What a cluster deploy writes, and what it undoes to if a node fails.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The version desired.
    version: config::Version,
    /// Its `previous`.
    previous: Option<config::Version>,
    /// The version desired now (none before the first cluster deploy: the
    /// version this node runs), set back if a node fails.
    back: Option<config::Version>,
}

impl Goal {
    /// The plan from the desired version now; `None` when there is nothing
    /// to go back to. Asking again for the version already desired keeps
    /// its `previous`, so that a rollback still goes where it went before.
    fn plan(self, current: Option<&Desired>, running: Option<config::Version>) -> Option<Plan> {
        let back = current.map(|d| d.version.clone()).or(running);
        let (version, previous) = match self {
            Goal::Version(v) => match current {
                Some(d) if d.version == v => (v, d.previous.clone()),
                _ => (v, back.clone()),
            },
            Goal::Back => (current?.previous.clone()?, back.clone()),
        };
        Some(Plan {
            version,
            previous,
            back,
        })
    }
}

impl deploy::ClusterDeploys for Deploys {
    fn deploy(
        &self,
        service: &config::Service,
        version: config::Version,
        strategy: config::Strategy,
        reporter: Reporter,
    ) -> DeployFuture {
        let run = Run {
            etcd: self.etcd.clone(),
            engine: self.engine.clone(),
            lease_ttl: self.lease_ttl,
            service: service.clone(),
            reporter,
        };
        Box::pin(run.run(Goal::Version(version), strategy))
    }

    fn rollback(&self, service: &config::Service, reporter: Reporter) -> DeployFuture {
        let run = Run {
            etcd: self.etcd.clone(),
            engine: self.engine.clone(),
            lease_ttl: self.lease_ttl,
            service: service.clone(),
            reporter,
        };
        Box::pin(run.run(Goal::Back, config::Strategy::Rolling))
    }
}

/// Every node's report, as followed.
type Reports = tokio::sync::watch::Receiver<Option<BTreeMap<String, NodeReport>>>;

/// The failure a follow ended with.
fn not_converged(e: NotConverged) -> Failure {
    match e {
        NotConverged::Failed(failed) => Failure::OnNodes {
            failed,
            not_back: None,
        },
        NotConverged::Timeout(after) => Failure::Timeout(after),
        NotConverged::Registry(reason) => Failure::Registry(reason),
    }
}

struct Run {
    etcd: Etcd,
    engine: deploy::Engine,
    lease_ttl: Duration,
    service: config::Service,
    reporter: Reporter,
}

/// Why following the nodes ended without all of them converging.
enum NotConverged {
    /// These nodes failed (node, reason).
    Failed(Vec<(String, String)>),
    /// Not all within the bound.
    Timeout(Duration),
    /// The registry failed.
    Registry(String),
}

/// What every node must reach for [`Run::follow`] to end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Converged (or failed).
    Settled,
    /// Blue-green: its new set on standby (or converged already).
    Standby,
}

/// What each node last reported, as shown to the client.
type Seen = BTreeMap<String, (Converge, String)>;

impl Run {
    async fn run(self, goal: Goal, strategy: config::Strategy) -> Result<Deployed, DeployError> {
        let service = self.service.name.clone();
        let unavailable = |reason: String| {
            DeployError::Cluster(LockError::Unavailable {
                service: service.clone(),
                reason,
            })
        };
        let name: Name = service.parse().map_err(|e| unavailable(format!("{e}")))?;
        let lock = match self.etcd.lock("deploy", &name).await {
            Ok(lock) => lock,
            Err(cluster::LockError::Held { node, since }) => {
                return Err(DeployError::Cluster(LockError::Held {
                    service: service.clone(),
                    node,
                    since,
                }));
            }
            Err(cluster::LockError::Request(e)) => return Err(unavailable(e.to_string())),
        };
        let result = self.locked(&name, goal, strategy).await;
        if let Err(e) = lock.release().await {
            tracing::warn!(%service, error = %e, "could not release the deploy lock; it goes with the lease");
        }
        result
    }

    /// The deploy, under the cluster-wide lock.
    async fn locked(
        &self,
        name: &Name,
        goal: Goal,
        strategy: config::Strategy,
    ) -> Result<Deployed, DeployError> {
        let service = name.to_string();
        let registry = |e: cluster::RequestError| {
            DeployError::Cluster(LockError::Unavailable {
                service: service.clone(),
                reason: e.to_string(),
            })
        };
        let current = self.etcd.desired(name).await.map_err(registry)?;
        let running = self.engine.running_version(&service);
        let running = running.and_then(|v| v.parse().ok());
        let Some(Plan {
            version,
            previous,
            back,
        }) = goal.plan(current.as_ref().map(|d| &d.desired), running)
        else {
            return Err(DeployError::NothingToRollBack(service));
        };
        let instances = match &self.service.runner {
            config::Runner::Supervised(s) => s.instances as usize,
            config::Runner::External(e) => e.targets.len(),
        };
        self.reporter.send(Progress::Started {
            service: service.clone(),
            version: version.to_string(),
            strategy: strategy.to_string(),
            instances,
        });
        let window = self.engine.traffic_window(&service);
        let started = Instant::now();
        // Followed before the desired version is written: no report is missed.
        let following = self.etcd.follow_reports(name);
        let mut reports = following.receiver();
        if strategy != config::Strategy::BlueGreen {
            // The nodes' new instances (and a canary) are `ready` ones,
            // routed as such.
            self.etcd.clear_active(name).await.map_err(registry)?;
        }
        // A canary judged good is deployed on every node by a rolling
        // deploy; one judged bad changed nothing but itself.
        let written = match strategy {
            config::Strategy::Canary => {
                self.canary(&version).await?;
                config::Strategy::Rolling
            }
            other => other,
        };
        let desired = Desired {
            version: version.clone(),
            previous,
            rollback_of: None,
            strategy: written,
            by: self.etcd.node().to_string(),
            at: cluster::now_rfc3339(),
        };
        let revision = self
            .etcd
            .set_desired(name, &desired)
            .await
            .map_err(registry)?;
        let mut seen = Seen::new();
        let converged = match written {
            config::Strategy::BlueGreen => {
                match self
                    .switch(name, &version, &mut reports, revision, &mut seen)
                    .await
                {
                    Ok(()) => self
                        .follow(&mut reports, revision, &mut seen, Until::Settled)
                        .await
                        .map_err(|e| (e, true)),
                    Err(e) => Err((e, false)),
                }
            }
            _ => self
                .follow(&mut reports, revision, &mut seen, Until::Settled)
                .await
                .map_err(|e| (e, false)),
        };
        let failure = match converged {
            Ok(()) => {
                tracing::info!(%service, %version, "every node converged");
                return Ok(Deployed {
                    version: version.to_string(),
                    strategy,
                    duration: started.elapsed(),
                    traffic: window.traffic(),
                });
            }
            Err((e, true)) => {
                // After the switch there is no old set to go back to.
                let failure = not_converged(e);
                tracing::error!(%service, %version, failure = %failure, "a node did not complete after the blue-green switch");
                return Err(DeployError::Failed(failure));
            }
            Err((e, false)) => not_converged(e),
        };
        // Back everywhere: the version desired before, as desired again.
        let Some(back) = back else {
            return Err(DeployError::Failed(failure));
        };
        self.reporter.send(Progress::RollingBack {
            reason: failure.to_string(),
        });
        let undo = Desired {
            version: back.clone(),
            previous: current.and_then(|d| d.desired.previous),
            rollback_of: Some(version.clone()),
            strategy: config::Strategy::Rolling,
            by: self.etcd.node().to_string(),
            at: cluster::now_rfc3339(),
        };
        let not_back = match self.etcd.set_desired(name, &undo).await {
            Err(e) => Some(format!(
                "could not set the desired version back to {back}: {e}"
            )),
            Ok(revision) => match self
                .follow(&mut reports, revision, &mut seen, Until::Settled)
                .await
            {
                Ok(()) => None,
                Err(NotConverged::Failed(failed)) => {
                    let nodes: Vec<String> = failed
                        .iter()
                        .map(|(node, reason)| format!("{node} ({reason})"))
                        .collect();
                    Some(format!("not back to {back} on {}", nodes.join(", ")))
                }
                Err(NotConverged::Timeout(after)) => Some(format!(
                    "not every node back to {back} within {}",
                    humantime::format_duration(after)
                )),
                Err(NotConverged::Registry(reason)) => Some(reason),
            },
        };
        tracing::error!(%service, %version, %back, failure = %failure, "cluster deploy failed; the desired version was set back");
        let failure = match (failure, not_back) {
            (Failure::OnNodes { failed, .. }, not_back) => Failure::OnNodes { failed, not_back },
            (failure, None) => failure,
            (failure, Some(not_back)) => Failure::OnNodes {
                failed: vec![("(cluster)".to_owned(), failure.to_string())],
                not_back: Some(not_back),
            },
        };
        Err(DeployError::Failed(failure))
    }

    /// Canary: one instance of `version` on this node, registered with the
    /// weight that gives it each step's share of every front door, judged
    /// at each step on this node's front door's requests; taken out of the
    /// registry and stopped at the end, whatever the verdict.
    async fn canary(&self, version: &config::Version) -> Result<(), DeployError> {
        let service = self.service.name.as_str();
        let canary = self
            .engine
            .start_canary(service, version.clone(), &self.reporter)
            .await?;
        for &step in &self.service.canary.steps {
            if step >= 100 {
                break;
            }
            let (stable, size) = (canary.stable_members(), canary.size());
            let weight = deploy::canary_weight(step, stable, size, cluster::MAX_WEIGHT);
            let judged = match canary.set_weight(weight).await {
                Ok(()) => {
                    let percent = deploy::canary_share(weight, stable, size);
                    tracing::info!(service, %version, step, weight, percent, stable, "canary registered with its step's weight");
                    self.reporter.send(Progress::Traffic { percent });
                    canary.judge(step, &self.reporter).await
                }
                Err(failure) => Err(failure),
            };
            if let Err(failure) = judged {
                self.reporter.send(Progress::RollingBack {
                    reason: failure.to_string(),
                });
                canary.abandon(&failure.to_string()).await;
                return Err(DeployError::Failed(failure));
            }
        }
        tracing::info!(service, %version, "canary passed every step: deploying it on every node");
        canary.promote().await;
        Ok(())
    }

    /// Blue-green: follows the nodes until every one has its new set on
    /// standby, then switches every front door to `version` with one write
    /// of the service's active version. If that write fails, the active
    /// version is removed (in case it landed after all) before the deploy
    /// is undone: the front doors then route to the old sets' `ready`
    /// instances, never to nothing.
    async fn switch(
        &self,
        name: &Name,
        version: &config::Version,
        reports: &mut Reports,
        revision: i64,
        seen: &mut Seen,
    ) -> Result<(), NotConverged> {
        self.follow(reports, revision, seen, Until::Standby).await?;
        let active = Active {
            version: version.clone(),
            by: self.etcd.node().to_string(),
            at: cluster::now_rfc3339(),
        };
        if let Err(e) = self.etcd.set_active(name, &active).await {
            if let Err(again) = self.etcd.clear_active(name).await {
                tracing::error!(service = %name, error = %again, "could not remove the active version after a failed switch");
            }
            return Err(NotConverged::Registry(format!(
                "could not switch to {version}: {e}"
            )));
        }
        tracing::info!(service = %name, %version, "every node ready: switched to the new version");
        self.reporter.send(Progress::Traffic { percent: 100 });
        Ok(())
    }

    /// Follows the nodes' reports until every node that runs the service
    /// has reached `until` on `revision`, reporting each node's progress;
    /// ends at the first failure.
    async fn follow(
        &self,
        reports: &mut Reports,
        revision: i64,
        seen: &mut Seen,
        until: Until,
    ) -> Result<(), NotConverged> {
        // Each node's rollout is bounded by the deploy timeout, and at
        // least one node holds a slot at any time; a node that dies stops
        // being waited for within the lease's TTL.
        let mut deadline = None;
        loop {
            let current = reports.borrow_and_update().clone();
            if let Some(current) = current {
                let within = self.service.deploy_timeout * (current.len().max(1) as u32 + 1)
                    + self.lease_ttl;
                let deadline = *deadline.get_or_insert(Instant::now() + within);
                let mut failed = Vec::new();
                let mut settled = !current.is_empty();
                for (node, report) in &current {
                    if report.desired < revision {
                        settled = false;
                        continue;
                    }
                    let now = (report.state, report.version.clone());
                    if seen.get(node) != Some(&now) {
                        self.reporter.send(Progress::Node {
                            node: node.clone(),
                            state: report.state.to_string(),
                            version: report.version.clone(),
                            reason: report.reason.clone(),
                        });
                        seen.insert(node.clone(), now);
                    }
                    settled &= match until {
                        Until::Settled => report.state.settled(),
                        Until::Standby => {
                            matches!(report.state, Converge::Standby | Converge::Converged)
                        }
                    };
                    if report.state == Converge::Failed {
                        let reason = report.reason.clone().unwrap_or_default();
                        failed.push((node.clone(), reason));
                    }
                }
                if !failed.is_empty() {
                    return Err(NotConverged::Failed(failed));
                }
                if settled {
                    return Ok(());
                }
                match tokio::time::timeout_at(deadline, reports.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        return Err(NotConverged::Registry("stopped following the nodes".into()));
                    }
                    Err(_) => return Err(NotConverged::Timeout(within)),
                }
            } else {
                let first = tokio::time::timeout(self.lease_ttl, reports.changed()).await;
                if !matches!(first, Ok(Ok(()))) {
                    return Err(NotConverged::Registry(
                        "could not read the nodes' reports".into(),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> config::Version {
        text.parse().unwrap()
    }

    fn desired(version: &str, previous: Option<&str>) -> Desired {
        Desired {
            version: v(version),
            previous: previous.map(v),
            rollback_of: None,
            strategy: config::Strategy::Rolling,
            by: "node-a".into(),
            at: "t".into(),
        }
    }

    fn plan(version: &str, previous: Option<&str>, back: Option<&str>) -> Option<Plan> {
        Some(Plan {
            version: v(version),
            previous: previous.map(v),
            back: back.map(v),
        })
    }

    #[test]
    fn a_deploy_desires_its_version_after_the_current_one_and_a_rollback_goes_back() {
        // The first cluster deploy: the version before is the one running.
        let first = Goal::Version(v("v2")).plan(None, Some(v("v1")));
        assert_eq!(first, plan("v2", Some("v1"), Some("v1")));
        let now = desired("v2", Some("v1"));
        let next = Goal::Version(v("v3")).plan(Some(&now), Some(v("v1")));
        assert_eq!(next, plan("v3", Some("v2"), Some("v2")));
        // The version already desired, asked again (a deploy repeated, a
        // file reloaded with it): the version before stays, and a failure
        // sets back the same version.
        let again = Goal::Version(v("v2")).plan(Some(&now), Some(v("v2")));
        assert_eq!(again, plan("v2", Some("v1"), Some("v2")));
        let back = Goal::Back.plan(Some(&now), None);
        assert_eq!(back, plan("v1", Some("v2"), Some("v2")));
        assert_eq!(Goal::Back.plan(None, Some(v("v1"))), None);
        assert_eq!(Goal::Back.plan(Some(&desired("v2", None)), None), None);
    }
}
