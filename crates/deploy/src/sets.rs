//! The set model: a service is a list of sets (the instances or targets of
//! one version, each with a share of the traffic); [`members_of`] turns them
//! into the weighted pool members the proxy routes to. Also the engine's
//! moves on sets that every strategy shares: adding one, and members
//! joining and leaving it as they pass or fail their checks.
//!
//! The arithmetic is pure; nothing here waits or publishes (callers publish
//! after a change).

use std::sync::atomic::Ordering;

use supervisor::Group;
use tokio::sync::{oneshot, watch};

use crate::{Engine, Progress, Reporter, supervised};

/// One service's sets.
#[derive(Default)]
pub(crate) struct Runtime {
    pub sets: Vec<Set>,
    /// A deploy or rollback is running.
    pub busy: bool,
    /// Progress of the running deploy (instances becoming ready).
    pub reporter: Reporter,
    /// The set a blue-green deploy switched away from, kept for its
    /// rollback window.
    pub standby: Option<Standby>,
    /// Woken when `busy` is cleared.
    pub released: std::sync::Arc<tokio::sync::Notify>,
}

pub(crate) struct Standby {
    pub set: u64,
    /// Ends the rollback window early (a rollback or a new deploy).
    pub cancel: oneshot::Sender<()>,
}

/// The instances or targets of one version.
pub(crate) struct Set {
    pub id: u64,
    pub version: String,
    /// External targets (empty for a supervised set).
    pub targets: Vec<config::UpstreamAddr>,
    pub group: Option<Group>,
    /// Instances or targets it should have.
    pub size: usize,
    /// Members that passed their readiness check, with the generation of
    /// the group they belong to (0 for targets).
    pub ready: Vec<(config::UpstreamAddr, u64)>,
    /// Percent of the service's traffic.
    pub share: u8,
    /// The new set of a blue-green deploy across the cluster, before the
    /// switch: no traffic here, but its ready instances are registered as
    /// `standby`.
    pub standby: bool,
    /// A canary across the cluster: no traffic here, but its ready
    /// instances are registered `ready` with this weight (0: not one).
    pub canary_weight: u32,
    /// Starting, ready, or failed (the first generation of a new set).
    pub phase: watch::Sender<SetPhase>,
}

/// How far a new set got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetPhase {
    Starting,
    Ready,
    /// Why, as the set's supervisor reported it.
    Failed(String),
}

/// Waits until a new set is no longer starting, at most until `deadline`:
/// `None` when it is ready, else why it is not (`timeout` is the deploy
/// timeout `deadline` came from, for the message).
pub(crate) async fn ready_by(
    phase: &mut watch::Receiver<SetPhase>,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Option<crate::Failure> {
    let ready = tokio::time::timeout_at(deadline, async {
        phase
            .wait_for(|p| *p != SetPhase::Starting)
            .await
            .map(|p| p.clone())
    })
    .await;
    match ready {
        Ok(Ok(SetPhase::Ready)) => None,
        Ok(Ok(SetPhase::Failed(reason))) => Some(crate::Failure::NewInstances(reason)),
        // `wait_for` returns only when the phase is not `Starting`.
        Ok(Ok(SetPhase::Starting)) | Ok(Err(_)) => Some(crate::Failure::NewSupervisorStopped),
        Err(_) => Some(crate::Failure::Timeout(timeout)),
    }
}

/// Each member's weight is the share of its set spread over the set's ready
/// members, in units of 1/10,000 of a percent, so that a set of 1 and a set
/// of 9 at 50 % each get half the requests.
const PER_PERCENT: u32 = 10_000;

/// The most a member's weight can be (the config's bound).
const MAX_WEIGHT: u32 = 1_000_000;

/// The pool members of a service: the ready members of every set with a
/// share of the traffic, weighted so that each set gets its share whatever
/// its size. With one such set every member has weight 1.
pub(crate) fn members_of(rt: &Runtime) -> Vec<config::Member> {
    let routed: Vec<&Set> = rt
        .sets
        .iter()
        .filter(|s| s.share > 0 && !s.ready.is_empty())
        .collect();
    let single = routed.len() == 1;
    let mut out: Vec<config::Member> = Vec::new();
    for set in routed {
        let weight = if single {
            1
        } else {
            (u32::from(set.share) * PER_PERCENT / set.ready.len() as u32).max(1)
        };
        for (address, _) in &set.ready {
            match out.iter_mut().find(|m| m.address == *address) {
                // The same target in both sets (an external deploy that
                // keeps one): it carries both shares.
                Some(m) => m.weight = (m.weight + weight).min(MAX_WEIGHT),
                None => out.push(config::Member {
                    address: address.clone(),
                    weight,
                }),
            }
        }
    }
    out
}

impl Engine {
    /// Adds a set of external targets (not ready until checked).
    pub(crate) fn add_external_set(
        &self,
        service: &str,
        targets: &[config::UpstreamAddr],
        version: String,
        share: u8,
    ) -> u64 {
        let id = self.inner.next_set.fetch_add(1, Ordering::Relaxed);
        self.with_runtime(service, |rt| {
            rt.sets.push(Set {
                id,
                version,
                targets: targets.to_vec(),
                group: None,
                size: targets.len(),
                ready: Vec::new(),
                share,
                standby: false,
                canary_weight: 0,
                phase: watch::channel(SetPhase::Starting).0,
            })
        });
        id
    }

    /// Starts a set of instances of `spec`'s version; it joins the traffic
    /// with `share` percent once its instances are ready.
    pub(crate) fn start_set(
        &self,
        service: &config::Service,
        spec: &config::Supervised,
        share: u8,
    ) -> std::io::Result<(u64, watch::Receiver<SetPhase>)> {
        self.start_set_adopting(service, spec, share, Vec::new())
    }

    /// [`Engine::start_set`] with instances another baton started.
    pub(crate) fn start_set_adopting(
        &self,
        service: &config::Service,
        spec: &config::Supervised,
        share: u8,
        adopted: Vec<supervisor::Adopted>,
    ) -> std::io::Result<(u64, watch::Receiver<SetPhase>)> {
        let id = self.inner.next_set.fetch_add(1, Ordering::Relaxed);
        let (phase, phase_rx) = watch::channel(SetPhase::Starting);
        // The group starts under the lock `shutdown` takes to collect the
        // groups: either it is collected, or it never starts.
        self.with_runtime(&service.name, |rt| {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("baton is stopping"));
            }
            // `supervised::start` only spawns tasks; they call into the
            // engine later, when they run.
            let group = supervised::start(self.clone(), service, spec, id, adopted)?;
            rt.sets.push(Set {
                id,
                version: spec.version.to_string(),
                targets: Vec::new(),
                group: Some(group),
                size: spec.instances as usize,
                ready: Vec::new(),
                share,
                standby: false,
                canary_weight: 0,
                phase,
            });
            Ok((id, phase_rx))
        })
    }

    /// A member of `set` passed its readiness check.
    pub(crate) fn add_member(
        &self,
        service: &str,
        set: u64,
        address: config::UpstreamAddr,
        generation: u64,
    ) {
        // It passed the same health check the pool uses: route to it as
        // soon as it is published (no second round of checks, during which
        // a pool whose old members already left could have none healthy).
        if let Some(proxy) = self.proxy() {
            proxy.verified(&format!("service:{service}"), &address.authority);
        }
        let (reporter, ready, of) = self.with_runtime(service, |rt| {
            let Some(s) = rt.sets.iter_mut().find(|s| s.id == set) else {
                return (Reporter::none(), 0, 0);
            };
            if !s.ready.iter().any(|(a, _)| *a == address) {
                s.ready.push((address.clone(), generation));
            }
            // During a rolling deploy the set also holds the old instances.
            let ready = s.ready.iter().filter(|(_, g)| *g == generation).count();
            (rt.reporter.clone(), ready, s.size)
        });
        reporter.send(Progress::Ready {
            address: address.authority,
            ready,
            of,
        });
    }

    /// A member of `set` left it; whether it was there.
    pub(crate) fn remove_member(
        &self,
        service: &str,
        set: u64,
        address: &config::UpstreamAddr,
    ) -> bool {
        self.with_set(service, set, |s| {
            let before = s.ready.len();
            s.ready.retain(|(a, _)| a != address);
            s.ready.len() != before
        })
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> config::UpstreamAddr {
        config::UpstreamAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn set(id: u64, share: u8, ports: &[u16]) -> Set {
        Set {
            id,
            version: format!("v{id}"),
            targets: Vec::new(),
            group: None,
            size: ports.len(),
            ready: ports.iter().map(|&p| (addr(p), 1)).collect(),
            share,
            standby: false,
            canary_weight: 0,
            phase: watch::channel(SetPhase::Ready).0,
        }
    }

    fn runtime(sets: Vec<Set>) -> Runtime {
        Runtime {
            sets,
            ..Runtime::default()
        }
    }

    fn weights(rt: &Runtime) -> Vec<(u16, u32)> {
        members_of(rt)
            .into_iter()
            .map(|m| {
                (
                    m.address
                        .authority
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap(),
                    m.weight,
                )
            })
            .collect()
    }

    /// Each set's members together get the set's share of the total weight.
    fn share_of(rt: &Runtime, ports: &[u16]) -> f64 {
        let all = weights(rt);
        let total: u32 = all.iter().map(|(_, w)| w).sum();
        let mine: u32 = all
            .iter()
            .filter(|(p, _)| ports.contains(p))
            .map(|(_, w)| w)
            .sum();
        f64::from(mine) / f64::from(total)
    }

    #[test]
    fn one_set_weighs_one_each() {
        let rt = runtime(vec![set(1, 100, &[1, 2, 3])]);
        assert_eq!(weights(&rt), [(1, 1), (2, 1), (3, 1)]);
        // The share does not matter when it is the only routed set.
        let rt = runtime(vec![set(1, 40, &[1, 2]), set(2, 60, &[])]);
        assert_eq!(weights(&rt), [(1, 1), (2, 1)]);
    }

    #[test]
    fn each_set_gets_its_share_whatever_its_size() {
        for (canary, stable) in [(1, 99), (10, 90), (50, 50), (90, 10), (99, 1)] {
            let rt = runtime(vec![
                set(1, stable, &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
                set(2, canary, &[10]),
            ]);
            let got = share_of(&rt, &[10]);
            assert!(
                (got - f64::from(canary) / 100.0).abs() < 1e-4,
                "{canary}% canary got {got}"
            );
        }
    }

    #[test]
    fn sets_without_traffic_or_ready_members_are_left_out() {
        let rt = runtime(vec![set(1, 100, &[1, 2]), set(2, 0, &[3])]);
        assert_eq!(weights(&rt), [(1, 1), (2, 1)]);
        let rt = runtime(vec![set(1, 0, &[1]), set(2, 0, &[2])]);
        assert!(members_of(&rt).is_empty());
        assert!(members_of(&runtime(Vec::new())).is_empty());
    }

    #[test]
    fn a_target_in_both_sets_carries_both_shares() {
        // An external deploy that keeps target 2: it is in the old set (30 %,
        // two targets) and the new one (70 %, two targets).
        let rt = runtime(vec![set(1, 30, &[1, 2]), set(2, 70, &[2, 3])]);
        assert_eq!(weights(&rt), [(1, 150_000), (2, 500_000), (3, 350_000)]);
    }

    #[test]
    fn weights_stay_within_bounds() {
        // A target in both sets at 100 % each (a share is at most 100) stays
        // within the config's maximum.
        let rt = runtime(vec![set(1, 100, &[1]), set(2, 100, &[1])]);
        assert_eq!(weights(&rt), [(1, 1_000_000)]);
    }
}
