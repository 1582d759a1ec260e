//! A node of the cluster: the connection to etcd (made at start, so that a
//! wrong endpoint or password is said at once), the registrar the engine
//! calls, and one task per discovered service that turns each change of its
//! registered instances into one snapshot swap, then records in the node's
//! registry entry the revision its front door now routes by.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cluster::{Discovery, Etcd, Name, Options, Reachability, Registry};
use tokio::task::JoinHandle;

use super::converge;
use super::deploys::Deploys;
use super::registrar::Registrar;

/// This node in the cluster; [`Node::leave`] at the end.
pub struct Node {
    etcd: Etcd,
    /// The services the file's pools discover.
    discover: BTreeSet<Name>,
    /// The supervised services, which converge to the cluster's desired
    /// version.
    supervised: Vec<config::Service>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects to the registry of `cfg`'s `[cluster]` (none: `None`) and
/// connects `engine` to it, so that the instances it starts are
/// registered. Call before `Engine::start`, then [`Node::follow`] after.
pub async fn join(cfg: &config::Config, engine: &deploy::Engine) -> anyhow::Result<Option<Node>> {
    let Some(settings) = &cfg.cluster else {
        return Ok(None);
    };
    let options = Options::for_ttl(settings.lease_ttl);
    let etcd = Etcd::connect(settings, options)
        .await
        .context("could not join the cluster")?;
    // Seen alive by every node from now on, whatever it runs.
    if let Err(e) = etcd.announce().await {
        tracing::warn!(error = %e, "could not write this node's record in the registry");
    }
    let mut discover = BTreeSet::new();
    for pool in cfg.pools.values() {
        if let Some(service) = &pool.discover {
            let name = service
                .parse()
                .with_context(|| format!("pool {:?} discovers an invalid name", pool.name))?;
            discover.insert(name);
        }
    }
    // A removal waits for every live node's front door; a dead node's
    // record lasts its lease, so one TTL covers it.
    let (registrar, task) = Registrar::start(etcd.clone(), settings.lease_ttl, options);
    engine.set_registrar(Arc::new(registrar));
    engine.set_cluster_deploys(Deploys::new(
        etcd.clone(),
        engine.clone(),
        settings.lease_ttl,
    ));
    let supervised = cfg
        .services
        .values()
        .filter(|s| matches!(s.runner, config::Runner::Supervised(_)))
        .cloned()
        .collect();
    tracing::info!(node = %etcd.node(), discover = discover.len(), "joined the cluster");
    Ok(Some(Node {
        etcd,
        discover,
        supervised,
        tasks: vec![task],
    }))
}

impl Node {
    /// What `GET /v1/cluster` reads.
    pub fn viewer(&self) -> super::Viewer {
        super::Viewer::new(self.etcd.clone())
    }

    /// Fills the pools that discover a service from the registry, and
    /// converges the supervised services to the cluster's desired
    /// versions, from now on (call once the engine publishes to the proxy).
    pub fn follow(&mut self, engine: &deploy::Engine) {
        for service in &self.supervised {
            let task = converge::start(self.etcd.clone(), engine.clone(), service.clone());
            self.tasks.push(task);
        }
        for service in &self.discover {
            let discovery = self.etcd.discover(service);
            let task = follow(
                self.etcd.clone(),
                engine.clone(),
                service.clone(),
                discovery,
            );
            self.tasks.push(tokio::spawn(task));
        }
    }

    /// Leaves the cluster: stops following and revokes the lease, so that
    /// whatever this node still registered disappears at once. For the end
    /// of `baton serve`, after its instances have stopped.
    pub async fn leave(self) {
        for task in &self.tasks {
            task.abort();
        }
        match tokio::time::timeout(Duration::from_secs(5), self.etcd.close()).await {
            Ok(Ok(())) => tracing::info!(node = %self.etcd.node(), "left the cluster"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not revoke the registry lease; it expires on its own")
            }
            Err(_) => {
                tracing::warn!("could not revoke the registry lease in time; it expires on its own")
            }
        }
    }
}

/// Follows one discovered service: each change of its routed instances
/// (its `ready` ones, or with an active version that version's) is one
/// snapshot swap (through the engine, so that member health survives),
/// after which the node records the revision its front door applied.
async fn follow(etcd: Etcd, engine: deploy::Engine, service: Name, discovery: Discovery) {
    let mut members = discovery.members.clone();
    let mut reachability = discovery.reachability.clone();
    loop {
        tokio::select! {
            changed = members.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = Arc::clone(&members.borrow_and_update());
                let mut list: Vec<config::Member> = Vec::new();
                for (_, instance) in current.routed() {
                    // Two registrants may name one address: it is one member.
                    if !list.iter().any(|m| m.address == instance.address) {
                        list.push(config::Member {
                            address: instance.address.clone(),
                            weight: instance.weight,
                        });
                    }
                }
                let count = list.len();
                match engine.set_discovered(service.as_str(), list).await {
                    Ok(()) => {
                        tracing::info!(%service, members = count, revision = current.revision, "discovered members applied");
                        if let Err(e) = etcd.applied(&service, current.revision).await {
                            tracing::warn!(%service, error = %e, "could not record the applied revision");
                        }
                    }
                    Err(errors) => {
                        for e in &errors.0 {
                            tracing::error!(%service, "could not apply the discovered members: {e}");
                        }
                    }
                }
            }
            changed = reachability.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = match &*reachability.borrow_and_update() {
                    Reachability::Unreachable { since, reason } => Some(format!(
                        "since {}: {reason}",
                        humantime::format_rfc3339_seconds(*since)
                    )),
                    Reachability::Connecting | Reachability::Reachable => None,
                };
                engine.set_registry_state(service.as_str(), state);
            }
        }
    }
}
