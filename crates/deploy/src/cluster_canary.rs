//! A canary across the cluster, on the node that runs the deploy
//! ([`Engine::start_canary`]): one instance of the new version, with no
//! traffic in this node's own pool, registered `ready` with a weight that
//! gives it each step's share of every front door's requests
//! ([`canary_weight`]), and judged at each step by the same gates as a
//! canary on one node (`judge`) — on the requests of this node's front door,
//! the pool that discovers the service: the canary's members against every
//! other member of that pool over the same step. A failure takes it out of
//! the registry (every front door having applied that) before it stops.
//!
//! Nothing here talks to a registry or waits on one itself: the registrar
//! and discovery do.

use handoff::time::SaturatingAdd;
use tokio::time::Instant;

use crate::judge::judge;
use crate::progress::{Progress, Reporter, millis};
use crate::strategy::canary::{sum, until_any, window};
use crate::strategy::traffic::retire;
use crate::strategy::{Busy, blue_green};
use crate::{BadRequest, Deploy, DeployError, Engine, Failure, Outcome, state};

/// The weight of each of `canary` instances so that they get `percent` of
/// the requests of a pool whose `stable` other members have weight 1:
/// `percent × stable / ((100 − percent) × canary)`, rounded, within 1 to
/// `max` (the share is then the nearest one weights can give; see
/// [`canary_share`]).
pub fn canary_weight(percent: u8, stable: usize, canary: usize, max: u32) -> u32 {
    let percent = u64::from(percent.min(99));
    let (stable, canary) = (stable as u64, canary.max(1) as u64);
    let denominator = (100 - percent) * canary;
    let weight = (percent * stable * 2 + denominator) / (denominator * 2);
    u32::try_from(weight).unwrap_or(max).clamp(1, max)
}

/// The percent of the requests `canary` instances of `weight` get next to
/// `stable` members of weight 1.
pub fn canary_share(weight: u32, stable: usize, canary: usize) -> u8 {
    let canary = u64::from(weight) * canary as u64;
    let total = canary + stable as u64;
    if total == 0 {
        return 0;
    }
    u8::try_from(canary * 100 / total).unwrap_or(100)
}

/// The canary instance of a deploy across the cluster, on this node.
pub struct ClusterCanary {
    engine: Engine,
    service: config::Service,
    /// The pool of this node's front door that discovers the service.
    pool: String,
    set: u64,
    record: Deploy,
    deadline: Instant,
    busy: Option<Busy>,
}

impl Engine {
    /// The pool of this node's front door that discovers `service`, if any.
    pub fn discovering_pool(&self, service: &str) -> Option<String> {
        self.inner.base.with(|base| {
            base.pools
                .values()
                .find(|p| p.discover.as_deref() == Some(service))
                .map(|p| p.name.clone())
        })
    }

    /// Starts one instance of `version` of the supervised `service` with no
    /// traffic here, for a canary across the cluster; resolves once it is
    /// ready (not yet registered: [`ClusterCanary::set_weight`] does).
    /// Refused when no pool of this node discovers the service (the canary
    /// is judged on that pool's requests). Bounded by `deploy_timeout`,
    /// which also bounds its steps.
    pub async fn start_canary(
        &self,
        service: &str,
        version: config::Version,
        reporter: &Reporter,
    ) -> Result<ClusterCanary, DeployError> {
        let (svc, mut spec) = self.supervised_at(service, version)?;
        let Some(pool) = self.discovering_pool(service) else {
            return Err(BadRequest::ClusterCanaryUnjudged(service.to_owned()).into());
        };
        spec.instances = 1;
        let busy = Busy::claim_when_free(self, service, reporter).await;
        blue_green::end_standby(self, service).await;
        let record = Deploy {
            version: spec.version.to_string(),
            targets: Vec::new(),
            started: state::now(),
            outcome: Outcome::InProgress,
        };
        self.note(service, &record, Outcome::InProgress).await;
        let deadline = Instant::now().saturating_add(svc.deploy_timeout);
        let (set, mut phase) = match self.start_set(&svc, &spec, 0) {
            Ok(started) => started,
            Err(e) => {
                let reason = Failure::Start(std::sync::Arc::new(e));
                self.note(service, &record, Outcome::Failed(reason.to_string()))
                    .await;
                return Err(DeployError::Failed(reason));
            }
        };
        let failure = crate::sets::ready_by(&mut phase, deadline, svc.deploy_timeout).await;
        let canary = ClusterCanary {
            engine: self.clone(),
            service: svc,
            pool,
            set,
            record,
            deadline,
            busy: Some(busy),
        };
        if let Some(reason) = failure {
            canary.abandon(&reason.to_string()).await;
            return Err(DeployError::Failed(reason));
        }
        Ok(canary)
    }
}

impl ClusterCanary {
    /// The canary's members, as this node's pools name them.
    fn members(&self) -> Vec<config::UpstreamAddr> {
        self.engine
            .with_set(&self.service.name, self.set, |s| {
                s.ready.iter().map(|(a, _)| a.clone()).collect()
            })
            .unwrap_or_default()
    }

    /// Whether the discovered `member` is the canary's `mine`: the same
    /// address, or the same port when instances listen on every address.
    fn same(member: &config::UpstreamAddr, mine: &config::UpstreamAddr) -> bool {
        member.authority == mine.authority
            || (mine.ip.is_some_and(|ip| ip.ip().is_unspecified()) && member.port == mine.port)
    }

    /// How many members of the discovering pool are not the canary.
    pub fn stable_members(&self) -> usize {
        let mine = self.members();
        self.engine
            .discovered_members(&self.service.name)
            .iter()
            .filter(|m| !mine.iter().any(|c| Self::same(&m.address, c)))
            .count()
    }

    /// How many instances the canary has.
    pub fn size(&self) -> usize {
        self.members().len().max(1)
    }

    /// Registers the canary with `weight`, and waits until this node's
    /// front door routes to it with that weight — its proxy has the member,
    /// so that its requests can be counted — within the deadline.
    pub async fn set_weight(&self, weight: u32) -> Result<(), Failure> {
        let name = self.service.name.as_str();
        self.engine
            .with_set(name, self.set, |s| s.canary_weight = weight);
        self.engine.publish_logged(name).await;
        let mine = self.members();
        let applied = || {
            let members = self.engine.discovered_members(name);
            mine.iter().all(|c| {
                members
                    .iter()
                    .any(|m| Self::same(&m.address, c) && m.weight == weight)
            })
        };
        let mut changes = self.engine.inner.discovered_published.subscribe();
        let waited = tokio::time::timeout_at(self.deadline, async {
            while !applied() {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.map_err(|_| Failure::Timeout(self.service.deploy_timeout))
    }

    /// Holds the step (`percent`) for the service's canary `pause` and
    /// until the canary served `min_requests` through this node's front
    /// door, then judges it against the pool's other members over the
    /// same time.
    pub async fn judge(&self, percent: u8, reporter: &Reporter) -> Result<(), Failure> {
        let gates = &self.service.canary;
        let Some(proxy) = self.engine.proxy() else {
            return Err(Failure::Timeout(self.service.deploy_timeout));
        };
        let mine = self.members();
        let members = self.engine.discovered_members(&self.service.name);
        let (canary, stable): (Vec<_>, Vec<_>) = members
            .iter()
            .partition(|m| mine.iter().any(|c| Self::same(&m.address, c)));
        let stats = |of: &[&config::Member]| -> Vec<proxy::MemberStats> {
            of.iter()
                .filter_map(|m| proxy.member_stats(&self.pool, &m.address.authority))
                .collect()
        };
        let (canary_stats, stable_stats) = (stats(&canary), stats(&stable));
        tracing::info!(service = %self.service.name, pool = %self.pool, canary = canary_stats.len(), of = canary.len(), stable = stable_stats.len(), percent, "judging the canary step on this front door's requests");
        let (canary_before, stable_before) = (sum(&canary_stats), sum(&stable_stats));
        let judged_at = Instant::now()
            .saturating_add(gates.pause)
            .min(self.deadline);
        tokio::time::sleep_until(judged_at).await;
        let served = || sum(&canary_stats).since(&canary_before).requests();
        let enough = || served() >= u64::from(gates.min_requests);
        let counted =
            tokio::time::timeout_at(self.deadline, until_any(&canary_stats, &enough)).await;
        if counted.is_err() && !enough() {
            return Err(Failure::CanaryStarved {
                timeout: self.service.deploy_timeout,
                served: served(),
                needed: gates.min_requests,
                step: percent,
            });
        }
        let canary = window(&sum(&canary_stats).since(&canary_before));
        let stable = window(&sum(&stable_stats).since(&stable_before));
        judge(&canary, &stable, gates)?;
        reporter.send(Progress::Judged {
            percent,
            canary_requests: canary.requests,
            canary_error_rate: canary.error_rate(),
            canary_p99_ms: canary.p99.map(millis),
            stable_p99_ms: stable.p99.map(millis),
        });
        Ok(())
    }

    /// The canary passed: it leaves the registry and stops (the version is
    /// then deployed on every node); the service is free again.
    pub async fn promote(mut self) {
        let busy = self.busy.take();
        self.retire().await;
        drop(busy);
    }

    /// The canary failed (`reason`): it leaves the registry and stops.
    pub async fn abandon(mut self, reason: &str) {
        let busy = self.busy.take();
        tracing::warn!(service = %self.service.name, version = %self.record.version, reason, "canary across the cluster rolled back");
        self.retire().await;
        let outcome = Outcome::Failed(reason.to_owned());
        self.engine
            .note(&self.service.name, &self.record, outcome)
            .await;
        drop(busy);
    }

    async fn retire(&self) {
        let name = self.service.name.as_str();
        self.engine
            .with_set(name, self.set, |s| s.canary_weight = 0);
        retire(&self.engine, &self.service, self.set).await;
    }
}

impl Drop for ClusterCanary {
    fn drop(&mut self) {
        let Some(busy) = self.busy.take() else {
            return;
        };
        let (engine, service, set) = (self.engine.clone(), self.service.clone(), self.set);
        tokio::spawn(async move {
            engine.with_set(&service.name, set, |s| s.canary_weight = 0);
            retire(&engine, &service, set).await;
            drop(busy);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canarys_weight_gives_it_the_nearest_share_weights_can() {
        // 6 stable members, 1 canary: 20 % is weight 1.5, rounded to 2 (25 %).
        assert_eq!(canary_weight(20, 6, 1, 1000), 2);
        assert_eq!(canary_share(2, 6, 1), 25);
        // 50 %: as many as the stable members.
        assert_eq!(canary_weight(50, 6, 1, 1000), 6);
        assert_eq!(canary_share(6, 6, 1), 50);
        // Never below 1, never above the bound, 100 % taken as 99 %.
        assert_eq!(canary_weight(1, 6, 1, 1000), 1);
        assert_eq!(canary_weight(99, 600, 1, 1000), 1000);
        assert_eq!(canary_weight(100, 6, 1, 1000), 594);
        assert_eq!(canary_weight(10, 0, 1, 1000), 1);
        assert_eq!(canary_share(1, 0, 1), 100);
        assert_eq!(canary_share(0, 0, 0), 0);
        // Two canary instances share the weight.
        assert_eq!(canary_weight(50, 6, 2, 1000), 3);
    }
}
