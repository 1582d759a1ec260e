//! The engine's two links to a cluster registry, without depending on one
//! (the binary wires them to the `cluster` crate):
//!
//! - a [`Registrar`], told after every publish which instances this node
//!   routes to, so that it registers them; an instance about to stop has
//!   left that list, and the publish that removed it waits for the
//!   registrar to confirm that it left the registry (and every front door)
//!   before the instance is signalled;
//! - the members of pools with `discover`, set by whoever follows the
//!   registry ([`Engine::set_discovered`]), and whether the registry could
//!   be read ([`Engine::set_registry_state`]), for `baton status`.
//!
//! Nothing here talks to a registry or waits on one itself.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use proxy::BuildErrors;

use crate::Engine;

/// One instance this node routes to: what a registry entry says about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Routed {
    /// The service.
    pub service: String,
    /// The version its set runs.
    pub version: String,
    /// Where it listens on this node.
    pub address: std::net::SocketAddr,
    /// Ready but without traffic yet: the new set of a blue-green deploy
    /// across the cluster, before its switch.
    pub standby: bool,
    /// Its weight in every front door (1 but for a canary across the
    /// cluster).
    pub weight: u32,
}

/// What a registrar's [`Registrar::publish`] returns: resolves once the
/// registry reflects the list (or the registrar gave up waiting, which it
/// logs).
pub type Confirmation = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The cluster-wide lock of a service's deploys, held while it lives.
pub type DeployLock = Box<dyn Send + Sync>;

/// What [`Registrar::lock_deploy`] returns.
pub type LockFuture = Pin<Box<dyn Future<Output = Result<DeployLock, LockError>> + Send>>;

/// Why a deploy could not take the cluster-wide lock of its service: it is
/// refused at once, nothing changed (exit 75: try again later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// A deploy or rollback of the service runs on another node (or on
    /// this one).
    #[error(
        "a deploy of {service:?} is running on node {node} (since {since}); wait for it to finish"
    )]
    Held {
        /// The service.
        service: String,
        /// The node running it.
        node: String,
        /// Since when, as the lock says.
        since: String,
    },
    /// The registry could not be asked.
    #[error("could not take the cluster-wide deploy lock of {service:?}: {reason}")]
    Unavailable {
        /// The service.
        service: String,
        /// Why, for people.
        reason: String,
    },
}

/// Keeps a registry in step with the instances this node routes to.
pub trait Registrar: Send + Sync {
    /// Takes the cluster-wide lock of `service`'s deploys: one deploy or
    /// rollback of a service at a time in the whole cluster.
    fn lock_deploy(&self, service: &str) -> LockFuture;

    /// Called after every publish, in publish order, with every instance of
    /// a supervised service that the published pools route to (and the
    /// ready instances of a cluster blue-green's new set, `standby`, and of
    /// a canary across the cluster, weighted). The returned
    /// future resolves when instances that are no longer in the list have
    /// left the registry and every front door that routes by it, and new
    /// ones are registered; it must be bounded in time.
    fn publish(&self, routed: Vec<Routed>) -> Confirmation;
}

/// The address instances listen on: loopback on one machine; with
/// `[cluster]`, the advertised address when it is an IP address of this host
/// (else every address), so that other nodes reach them.
pub(crate) fn instance_ip(config: &config::Config) -> IpAddr {
    match &config.cluster {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(cluster) => cluster
            .advertise
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0])),
    }
}

/// The registry's members of one discovered service, as the engine
/// publishes them, and whether they are current.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovered {
    pub members: Vec<config::Member>,
    /// `None` while the registry can be read; otherwise why not, and since
    /// when (for `baton status`).
    pub unreachable: Option<String>,
}

impl Engine {
    /// Connects the engine to a registry; call before [`Engine::start`].
    /// Returns `false` (and changes nothing) if one was set already.
    pub fn set_registrar(&self, registrar: Arc<dyn Registrar>) -> bool {
        self.inner.registrar.set(registrar).is_ok()
    }

    /// The cluster-wide lock of `service`'s deploys (none without a
    /// registry), for the life of a deploy or rollback.
    pub(crate) async fn lock_deploy(
        &self,
        service: &str,
    ) -> Result<Option<DeployLock>, crate::DeployError> {
        let Some(registrar) = self.inner.registrar.get() else {
            return Ok(None);
        };
        Ok(Some(registrar.lock_deploy(service).await?))
    }

    /// Replaces the members of every pool that discovers `service`, and
    /// publishes them in one snapshot; resolves once the proxy routes by
    /// them.
    pub async fn set_discovered(
        &self,
        service: &str,
        members: Vec<config::Member>,
    ) -> Result<(), BuildErrors> {
        self.inner.discovered.with(|d| {
            d.entry(service.to_owned()).or_default().members = members.clone();
        });
        // The registrar's confirmation is not waited for: it may itself be
        // waiting for this node's front door to apply a change.
        self.publish_to_proxy().await?;
        self.inner.discovered_published.send_modify(|published| {
            published.insert(service.to_owned(), members);
        });
        Ok(())
    }

    /// The members of the pools that discover `service` as the proxy routes
    /// by them (the last publish that returned).
    pub fn discovered_members(&self, service: &str) -> Vec<config::Member> {
        self.inner
            .discovered_published
            .borrow()
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Records whether the registry can be read for `service` (`None`: it
    /// can; otherwise why not), as `baton status` shows it. Publishes
    /// nothing: the members stay as they were.
    pub fn set_registry_state(&self, service: &str, unreachable: Option<String>) {
        self.inner.discovered.with(|d| {
            d.entry(service.to_owned()).or_default().unreachable = unreachable;
        });
    }

    /// Fills the members of the pools of `cfg` that discover a service.
    pub(crate) fn fill_discovered(&self, cfg: &mut config::Config) {
        self.inner.discovered.with(|d| {
            for pool in cfg.pools.values_mut() {
                if let Some(service) = &pool.discover {
                    pool.members = d
                        .get(service)
                        .map(|found| found.members.clone())
                        .unwrap_or_default();
                }
            }
        });
    }

    /// Every instance of a supervised service that the pools route to now,
    /// and those of a cluster blue-green's new set before its switch.
    pub(crate) fn routed(&self) -> Vec<Routed> {
        let mut out = Vec::new();
        let versions = self.inner.versions.get();
        self.inner.services.with(|services| {
            for (name, rt) in services {
                let registered = |s: &&crate::sets::Set| {
                    (s.share > 0 || s.standby || s.canary_weight > 0) && s.group.is_some()
                };
                for set in rt.sets.iter().filter(registered) {
                    for (address, _) in &set.ready {
                        let Some(address) = address.ip else { continue };
                        let version = match versions.get(&address) {
                            Some((_, version)) => version.clone(),
                            None => set.version.clone(),
                        };
                        out.push(Routed {
                            service: name.clone(),
                            version,
                            address,
                            standby: set.share == 0 && set.standby,
                            weight: set.canary_weight.max(1),
                        });
                    }
                }
            }
        });
        out.sort();
        out
    }

    /// The discovered services and what is known of them, by name.
    pub(crate) fn discovered(&self) -> Vec<(String, Discovered)> {
        self.inner
            .discovered
            .with(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
