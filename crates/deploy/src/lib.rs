//! baton's deploy engine — the control plane between the services of the
//! config and the proxy.
//!
//! It runs each supervised service as a `supervisor::Group` (a port per
//! instance, readiness by the service's health check), and keeps the proxy's
//! view current: every service is published as a pool named `service:NAME`
//! whose members are the instances that are ready. An instance joins the
//! pool when it is ready, and leaves it *before* it is told to stop: it is
//! removed from the published snapshot, its requests in flight finish, and
//! only then does it get SIGTERM (failure mode 6). External services are
//! published with their configured targets.
//!
//! This is the first part of the engine: services are kept running and
//! routed. Deploy strategies (rolling, blue-green, canary), persistent state
//! and the control API build on it.
//!
//! Invariant: the engine never blocks the data plane; it publishes whole
//! snapshots through `Proxy::reload`, on a blocking thread, one at a time.

#![forbid(unsafe_code)]

mod state;
mod supervised;

pub use state::{Deploy, ServiceState, State, Store};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy::{BuildErrors, Proxy};
use supervisor::Group;

/// The running services and what the proxy is told about them.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// The config as read from the file (services included).
    base: Mutex<config::Config>,
    /// The members of each service's pool, by service name.
    members: Mutex<BTreeMap<String, Vec<config::Member>>>,
    proxy: Mutex<Option<Arc<Proxy>>>,
    /// One publish at a time, each with the latest state.
    publishing: tokio::sync::Mutex<()>,
    groups: Mutex<Vec<(String, Group)>>,
    store: Option<Store>,
    state: Mutex<State>,
}

impl Engine {
    /// An engine for `config`; nothing runs until [`Engine::start`]. With a
    /// state store, each supervised service starts at the version it last
    /// had, not the file's.
    pub fn new(mut config: config::Config, store: Option<Store>) -> std::io::Result<Engine> {
        let mut state = match &store {
            Some(store) => store.load()?,
            None => State::default(),
        };
        let mut fresh = false;
        for (name, service) in config.services.iter_mut() {
            let Some(saved) = state.services.get(name) else {
                // First start: the file's version is the one to come back to.
                if let config::Runner::Supervised(s) = &service.runner {
                    let entry = state.services.entry(name.clone()).or_default();
                    entry.version = s.version.to_string();
                    entry.record(Deploy {
                        version: s.version.to_string(),
                        started: state::now(),
                        outcome: "initial".into(),
                    });
                    fresh = true;
                }
                continue;
            };
            if let Some(last) = saved.history.last()
                && last.outcome == "in progress"
            {
                tracing::warn!(
                    service = %name,
                    version = %last.version,
                    serving = %saved.version,
                    "baton stopped during a deploy; it did not complete"
                );
            }
            if let config::Runner::Supervised(s) = &mut service.runner
                && !saved.version.is_empty()
            {
                s.version = saved.version.parse().map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("saved version of {name}: {e}"),
                    )
                })?;
                tracing::info!(service = %name, version = %s.version, "version restored from the state directory");
            }
        }
        let members = config
            .services
            .iter()
            .map(|(name, service)| {
                let initial = match &service.runner {
                    config::Runner::External(e) => e
                        .targets
                        .iter()
                        .map(|t| config::Member {
                            address: t.clone(),
                            weight: 1,
                        })
                        .collect(),
                    // Instances join as they become ready.
                    config::Runner::Supervised(_) => Vec::new(),
                };
                (name.clone(), initial)
            })
            .collect();
        if fresh && let Some(store) = &store {
            store.save(&state)?;
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                base: Mutex::new(config),
                members: Mutex::new(members),
                proxy: Mutex::new(None),
                publishing: tokio::sync::Mutex::new(()),
                groups: Mutex::new(Vec::new()),
                store,
                state: Mutex::new(state),
            }),
        })
    }

    /// Every service: its version, where it is routed, its history.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let base = lock(&self.inner.base);
        let members = lock(&self.inner.members);
        let state = lock(&self.inner.state);
        base.services
            .values()
            .map(|s| ServiceStatus {
                name: s.name.clone(),
                kind: match &s.runner {
                    config::Runner::Supervised(_) => "supervised",
                    config::Runner::External(_) => "external",
                },
                version: match &s.runner {
                    config::Runner::Supervised(sup) => Some(sup.version.to_string()),
                    config::Runner::External(_) => None,
                },
                members: members
                    .get(&s.name)
                    .map(|m| m.iter().map(|m| m.address.authority.clone()).collect())
                    .unwrap_or_default(),
                history: state
                    .services
                    .get(&s.name)
                    .map(|st| st.history.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The persisted state as it is now.
    pub fn state(&self) -> State {
        lock(&self.inner.state).clone()
    }

    /// Deploys the version that served before the current one.
    pub async fn rollback(
        &self,
        service: &str,
    ) -> Result<(config::Version, Deployed), DeployError> {
        let previous = lock(&self.inner.state)
            .services
            .get(service)
            .and_then(|s| s.previous().map(str::to_owned));
        let Some(previous) = previous else {
            return Err(DeployError::NothingToRollBack(service.to_owned()));
        };
        let version: config::Version = previous
            .parse()
            .map_err(|e| DeployError::Failed(format!("saved version {previous:?}: {e}")))?;
        let done = self
            .deploy_as(service, version.clone(), "rolled back")
            .await?;
        Ok((version, done))
    }

    /// Records a deploy's progress in the state and saves it.
    fn note(&self, service: &str, version: &config::Version, outcome: &str, started: &str) {
        let mut state = lock(&self.inner.state);
        let entry = state.services.entry(service.to_owned()).or_default();
        match entry.history.last_mut() {
            Some(last) if last.outcome == "in progress" && last.started == started => {
                last.outcome = outcome.to_owned();
            }
            _ => entry.record(Deploy {
                version: version.to_string(),
                started: started.to_owned(),
                outcome: outcome.to_owned(),
            }),
        }
        if outcome == "deployed" || outcome == "rolled back" {
            entry.version = version.to_string();
        }
        if let Some(store) = &self.inner.store
            && let Err(e) = store.save(&state)
        {
            tracing::error!(service, error = %e, "could not save the state");
        }
    }

    /// The config the proxy should run now: the file's, with a pool for
    /// every service holding its current members.
    pub fn effective(&self) -> config::Config {
        let mut cfg = lock(&self.inner.base).clone();
        let members = lock(&self.inner.members);
        for (name, service) in &cfg.services {
            let current = members.get(name).cloned().unwrap_or_default();
            cfg.pools.insert(service.pool_name(), service.pool(current));
        }
        cfg
    }

    /// Starts every supervised service; their instances join `proxy`'s
    /// pools as they become ready. Must be called within a tokio runtime.
    pub fn start(&self, proxy: Arc<Proxy>) -> std::io::Result<()> {
        *lock(&self.inner.proxy) = Some(proxy);
        let services: Vec<config::Service> =
            lock(&self.inner.base).services.values().cloned().collect();
        for service in services {
            if let config::Runner::Supervised(s) = &service.runner {
                let group = supervised::start(self.clone(), &service, s)?;
                lock(&self.inner.groups).push((service.name.clone(), group));
            }
        }
        Ok(())
    }

    /// Replaces the file's config (routes, pools, settings) and publishes.
    /// Services keep running as they are; changes to them take effect at
    /// the next start.
    pub async fn reload(&self, config: config::Config) -> Result<(), BuildErrors> {
        {
            let mut base = lock(&self.inner.base);
            if base.services != config.services {
                tracing::warn!("changes to [service.*] take effect at the next start");
            }
            let services = base.services.clone();
            *base = config;
            base.services = services;
        }
        self.publish().await
    }

    /// Stops every supervised service gracefully; resolves when all their
    /// instances have exited. Returns whether every stop was clean.
    pub async fn shutdown(&self) -> bool {
        let groups = std::mem::take(&mut *lock(&self.inner.groups));
        let mut clean = true;
        for (name, group) in groups {
            match group.shutdown().await {
                Ok(summary) => {
                    clean &= summary.clean();
                    tracing::info!(service = %name, stopped = summary.stopped, clean = summary.clean(), "service stopped");
                }
                Err(e) => {
                    clean = false;
                    tracing::error!(service = %name, error = %e, "service supervisor gone");
                }
            }
        }
        clean
    }

    /// Rolls a supervised service out to `version`: a new generation of
    /// instances replaces the old one within the service's `max_surge` /
    /// `max_unavailable`, each new instance joins the pool once ready and
    /// each old one leaves it before being stopped. On failure (an instance
    /// never ready, or exiting) the old instances keep serving.
    pub async fn deploy(
        &self,
        service: &str,
        version: config::Version,
    ) -> Result<Deployed, DeployError> {
        self.deploy_as(service, version, "deployed").await
    }

    async fn deploy_as(
        &self,
        service: &str,
        version: config::Version,
        success: &str,
    ) -> Result<Deployed, DeployError> {
        let (group, mut spec) = {
            let base = lock(&self.inner.base);
            let Some(svc) = base.services.get(service) else {
                return Err(DeployError::UnknownService(service.to_owned()));
            };
            let config::Runner::Supervised(spec) = &svc.runner else {
                return Err(DeployError::NotSupervised(service.to_owned()));
            };
            let groups = lock(&self.inner.groups);
            let group = groups
                .iter()
                .find(|(name, _)| name == service)
                .map(|(_, g)| g.clone())
                .ok_or_else(|| DeployError::NotRunning(service.to_owned()))?;
            (group, spec.clone())
        };
        let started = std::time::Instant::now();
        let stamp = state::now();
        self.note(service, &version, "in progress", &stamp);
        spec.version = version.clone();
        tracing::info!(service, %version, "deploy started");
        let result = group
            .reload_with(Some(supervisor::CommandSource::PerInstance(
                supervised::command_fn(spec),
            )))
            .await
            .map_err(|_| DeployError::NotRunning(service.to_owned()))?;
        match result {
            Ok(generation) => {
                tracing::info!(service, %version, generation, "deploy complete");
                self.note(service, &version, success, &stamp);
                if let Some(svc) = lock(&self.inner.base).services.get_mut(service)
                    && let config::Runner::Supervised(s) = &mut svc.runner
                {
                    s.version = version.clone();
                }
                Ok(Deployed {
                    generation,
                    duration: started.elapsed(),
                })
            }
            Err(e) => {
                tracing::error!(service, %version, reason = %e, "deploy failed; the previous version keeps serving");
                self.note(service, &version, &format!("failed: {e}"), &stamp);
                Err(DeployError::Failed(e.to_string()))
            }
        }
    }

    pub(crate) fn add_member(&self, service: &str, member: config::Member) {
        // It passed the same health check the pool uses: route to it as
        // soon as it is published (no second round of checks, during which
        // a pool whose old members already left could have none healthy).
        if let Some(proxy) = lock(&self.inner.proxy).as_ref() {
            proxy.verified(&format!("service:{service}"), &member.address.authority);
        }
        let mut members = lock(&self.inner.members);
        let list = members.entry(service.to_owned()).or_default();
        if !list.iter().any(|m| m.address == member.address) {
            list.push(member);
        }
    }

    pub(crate) fn remove_member(&self, service: &str, address: &config::UpstreamAddr) -> bool {
        let mut members = lock(&self.inner.members);
        let Some(list) = members.get_mut(service) else {
            return false;
        };
        let before = list.len();
        list.retain(|m| &m.address != address);
        list.len() != before
    }

    /// Requests in flight to one member of a service's pool.
    pub(crate) fn in_flight(&self, service: &str, member: &str) -> Option<proxy::InFlight> {
        let proxy = lock(&self.inner.proxy).clone()?;
        proxy.in_flight_counter(&format!("service:{service}"), member)
    }

    /// Publishes the current state to the proxy.
    pub(crate) async fn publish(&self) -> Result<(), BuildErrors> {
        let _one_at_a_time = self.inner.publishing.lock().await;
        let Some(proxy) = lock(&self.inner.proxy).clone() else {
            return Ok(());
        };
        let cfg = self.effective();
        tokio::task::spawn_blocking(move || proxy.reload(&cfg))
            .await
            .unwrap_or_else(|e| Err(BuildErrors(vec![format!("could not publish: {e}")])))
    }
}

/// One service as `baton status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// `supervised` or `external`.
    pub kind: &'static str,
    /// The version serving (supervised services).
    pub version: Option<String>,
    /// The addresses the proxy routes to now.
    pub members: Vec<String>,
    /// Its deploys, oldest first.
    pub history: Vec<Deploy>,
}

/// A deploy that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The new generation of instances.
    pub generation: u64,
    /// From the request to the last old instance gone.
    pub duration: Duration,
}

/// Why a deploy did not happen or did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployError {
    /// No service by that name.
    UnknownService(String),
    /// The service is external; it is deployed by naming new targets.
    NotSupervised(String),
    /// The service's supervisor is not running (baton is stopping).
    NotRunning(String),
    /// The rollout failed and was abandoned; the old version serves.
    Failed(String),
    /// No earlier version to go back to.
    NothingToRollBack(String),
}

impl std::fmt::Display for DeployError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeployError::UnknownService(s) => write!(f, "unknown service {s:?}"),
            DeployError::NotSupervised(s) => write!(
                f,
                "service {s:?} is external: deploying it by new targets is not available yet"
            ),
            DeployError::NotRunning(s) => write!(f, "service {s:?} is not running"),
            DeployError::NothingToRollBack(s) => {
                write!(f, "service {s:?} has no earlier version to roll back to")
            }
            DeployError::Failed(reason) => {
                write!(
                    f,
                    "deploy failed, the previous version keeps serving: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for DeployError {}

/// Waits until `counter` reaches zero, checking every few milliseconds, or
/// until `limit` passes.
pub(crate) async fn wait_idle(counter: proxy::InFlight, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while counter.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
