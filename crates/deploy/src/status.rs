//! What `baton status` shows: every service's version, sets, members and
//! history, and every service discovered in the cluster registry with its
//! members and whether the registry can be read ([`Engine::status`]), as
//! plain serde types.
//!
//! Read-only: it copies what it needs from each piece of the engine's state
//! in turn and never changes any.

use std::collections::BTreeMap;

use crate::sets::members_of;
use crate::{Deploy, Engine};

/// One service as `baton status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// `supervised` or `external`.
    pub kind: String,
    /// The version serving (the last deployed).
    pub version: Option<String>,
    /// Its default strategy.
    pub strategy: String,
    /// The addresses the proxy routes to now.
    pub members: Vec<String>,
    /// Its sets of instances or targets: one, or two during a blue-green
    /// or canary deploy and a blue-green rollback window.
    pub sets: Vec<SetStatus>,
    /// Requests are being held.
    pub paused: bool,
    /// A deploy or rollback is running.
    pub deploying: bool,
    /// Its deploys, oldest first.
    pub history: Vec<Deploy>,
    /// A service discovered in the cluster registry (kind `discovered`):
    /// why the registry cannot be read and since when; its members are then
    /// the last ones read. Absent while it can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_unreachable: Option<String>,
}

/// One set of a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetStatus {
    /// Its version.
    pub version: String,
    /// Percent of the traffic.
    pub share: u8,
    /// Its ready instances or targets.
    pub members: Vec<String>,
    /// Kept after a blue-green switch for an instant rollback.
    pub standby: bool,
}

/// What the runtime of one service contributes.
#[derive(Default)]
struct Running {
    members: Vec<String>,
    sets: Vec<SetStatus>,
    deploying: bool,
}

impl Engine {
    /// Every service: its version, where it is routed, its history.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let services: Vec<config::Service> = self
            .inner
            .base
            .with(|base| base.services.values().cloned().collect());
        let mut running: BTreeMap<String, Running> = self.inner.services.with(|runtimes| {
            runtimes
                .iter()
                .map(|(name, rt)| {
                    let sets = rt
                        .sets
                        .iter()
                        .map(|set| SetStatus {
                            version: set.version.clone(),
                            share: set.share,
                            members: set.ready.iter().map(|(a, _)| a.authority.clone()).collect(),
                            standby: rt.standby.as_ref().is_some_and(|sb| sb.set == set.id),
                        })
                        .collect();
                    let members = members_of(rt)
                        .into_iter()
                        .map(|m| m.address.authority)
                        .collect();
                    let running = Running {
                        members,
                        sets,
                        deploying: rt.busy,
                    };
                    (name.clone(), running)
                })
                .collect()
        });
        let mut saved = self.inner.state.with(|state| state.services.clone());
        let proxy = self.proxy();
        services
            .into_iter()
            .map(|s| {
                let rt = running.remove(&s.name).unwrap_or_default();
                let saved = saved.remove(&s.name).unwrap_or_default();
                ServiceStatus {
                    kind: match &s.runner {
                        config::Runner::Supervised(_) => "supervised",
                        config::Runner::External(_) => "external",
                    }
                    .to_owned(),
                    version: Some(saved.version).filter(|v| !v.is_empty()),
                    strategy: s.strategy.to_string(),
                    members: rt.members,
                    sets: rt.sets,
                    paused: proxy.as_ref().is_some_and(|p| p.paused(&s.pool_name())),
                    deploying: rt.deploying,
                    history: saved.history,
                    name: s.name,
                    registry_unreachable: None,
                }
            })
            .chain(
                self.discovered()
                    .into_iter()
                    .map(|(name, d)| ServiceStatus {
                        name,
                        kind: "discovered".to_owned(),
                        version: None,
                        strategy: "-".to_owned(),
                        members: d.members.into_iter().map(|m| m.address.authority).collect(),
                        sets: Vec::new(),
                        paused: false,
                        deploying: false,
                        history: Vec::new(),
                        registry_unreachable: d.unreachable,
                    }),
            )
            .collect()
    }
}
