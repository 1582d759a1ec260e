//! baton's deploy engine — the control plane between the services of the
//! config and the proxy.
//!
//! Each service is a list of *sets*: the instances (supervised, a
//! `supervisor::Group` each) or targets (external) of one version, each
//! with a share of the traffic. Normally a service has one set with all of
//! it. The engine publishes every service as a proxy pool `service:NAME`
//! whose members are the ready members of the sets that carry traffic,
//! weighted so that each set gets its share.
//!
//! The strategies (`strategy`) are moves between sets:
//! - rolling: one set; its group replaces its instances a few at a time
//!   (the seed's semaphore, `max_surge` / `max_unavailable`);
//! - blue-green: a second set starts with no traffic, is smoke-checked
//!   directly, takes 100 % in one snapshot swap; the old set stays as a
//!   standby for the rollback window;
//! - canary: a second set takes the configured steps of traffic, each
//!   judged on the proxy's own measurements against the stable set.
//!
//! A member always leaves the published pool *before* it is told to stop,
//! and its requests in flight finish first (failure mode 6).
//!
//! Invariants: the engine never blocks the data plane (whole snapshots are
//! published through `Proxy::reload`, on a blocking thread, one at a time);
//! no std lock is held across an await; a deploy is recorded "in progress"
//! in the state before anything changes, and its outcome after.

#![forbid(unsafe_code)]

mod error;
mod judge;
mod progress;
mod state;
mod strategy;
mod supervised;

pub use error::{BadRequest, DeployError, Failure, StartError, Undo};
pub use judge::Breach;
pub use progress::{Progress, Reporter, Traffic};
pub use proxy::Hold;
pub use state::{Deploy, Outcome, ServiceState, State, Store, StoreError, UnknownOutcome};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy::{BuildErrors, Proxy};
use supervisor::Group;
use tokio::sync::{oneshot, watch};

/// The running services and what the proxy is told about them.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// The config as read from the file (services included).
    base: Mutex<config::Config>,
    /// By service name.
    services: Mutex<BTreeMap<String, Runtime>>,
    proxy: Mutex<Option<Arc<Proxy>>>,
    /// One publish at a time, each with the latest state.
    publishing: tokio::sync::Mutex<()>,
    store: Option<Store>,
    state: Mutex<State>,
    next_set: AtomicU64,
    /// The in-flight counter of every member ever published, by (service,
    /// address), kept until the member is drained: once a member leaves
    /// the published pool the proxy forgets it, but its requests in flight
    /// must still be waited for before SIGTERM.
    /// Several per member when it left the pool and came back (a standby
    /// set switched back to): the proxy then counts it afresh.
    counters: Mutex<std::collections::HashMap<(String, String), Vec<proxy::InFlight>>>,
    /// Set by `shutdown`: no new set starts after it (its instances would
    /// outlive baton).
    stopping: std::sync::atomic::AtomicBool,
}

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
    /// Starting, ready, or failed (the first generation of a new set).
    pub phase: watch::Sender<SetPhase>,
}

/// How far a new set got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetPhase {
    Starting,
    Ready,
    Failed(String),
}

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    /// The service.
    pub service: String,
    /// The version; for an external service a label, optional.
    pub version: Option<config::Version>,
    /// Overrides the service's strategy.
    pub strategy: Option<config::Strategy>,
    /// External services: the new targets.
    pub targets: Vec<config::UpstreamAddr>,
}

impl Engine {
    /// An engine for `config`; nothing runs until [`Engine::start`]. With a
    /// state store, each service starts at the version (or targets) it last
    /// had, not the file's.
    pub fn new(mut config: config::Config, store: Option<Store>) -> Result<Engine, StartError> {
        let mut state = match &store {
            Some(store) => store.load()?,
            None => State::default(),
        };
        let mut fresh = false;
        for (name, service) in config.services.iter_mut() {
            let Some(saved) = state.services.get(name) else {
                // First start: the file's version is the one to come back to.
                let entry = state.services.entry(name.clone()).or_default();
                let (version, targets) = match &service.runner {
                    config::Runner::Supervised(s) => (s.version.to_string(), Vec::new()),
                    config::Runner::External(e) => (
                        String::new(),
                        e.targets.iter().map(|t| t.authority.clone()).collect(),
                    ),
                };
                entry.version = version.clone();
                entry.targets = targets.clone();
                entry.record(Deploy {
                    version,
                    targets,
                    started: state::now(),
                    outcome: Outcome::Initial,
                });
                fresh = true;
                continue;
            };
            if let Some(last) = saved.history.last()
                && last.outcome == Outcome::InProgress
            {
                tracing::warn!(
                    service = %name,
                    version = %last.version,
                    serving = %saved.version,
                    "baton stopped during a deploy; it did not complete"
                );
            }
            match &mut service.runner {
                config::Runner::Supervised(s) if !saved.version.is_empty() => {
                    s.version =
                        saved
                            .version
                            .parse()
                            .map_err(|source| StartError::SavedVersion {
                                service: name.clone(),
                                source,
                            })?;
                    tracing::info!(service = %name, version = %s.version, "version restored from the state directory");
                }
                config::Runner::External(e) if !saved.targets.is_empty() => {
                    e.targets = saved
                        .targets
                        .iter()
                        .map(|t| t.parse())
                        .collect::<Result<_, _>>()
                        .map_err(|source| StartError::SavedTargets {
                            service: name.clone(),
                            source,
                        })?;
                    tracing::info!(service = %name, targets = ?saved.targets, "targets restored from the state directory");
                }
                _ => {}
            }
        }
        if fresh && let Some(store) = &store {
            store.save(&state)?;
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                base: Mutex::new(config),
                services: Mutex::new(BTreeMap::new()),
                proxy: Mutex::new(None),
                publishing: tokio::sync::Mutex::new(()),
                store,
                state: Mutex::new(state),
                next_set: AtomicU64::new(1),
                counters: Mutex::new(std::collections::HashMap::new()),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        // External targets are taken as they are: the proxy's own health
        // checks (if any) decide whether they get traffic.
        let services: Vec<config::Service> = lock(&engine.inner.base)
            .services
            .values()
            .cloned()
            .collect();
        for service in services {
            if let config::Runner::External(e) = &service.runner {
                let version = engine.saved(&service.name).version;
                let id = engine.add_external_set(&service.name, &e.targets, version, 100);
                engine.with_set(&service.name, id, |set| {
                    set.ready = e.targets.iter().map(|t| (t.clone(), 0)).collect();
                    set.phase.send_replace(SetPhase::Ready);
                });
            }
        }
        Ok(engine)
    }

    /// Every service: its version, where it is routed, its history.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let base = lock(&self.inner.base);
        let services = lock(&self.inner.services);
        let state = lock(&self.inner.state);
        let proxy = lock(&self.inner.proxy).clone();
        base.services
            .values()
            .map(|s| {
                let rt = services.get(&s.name);
                let saved = state.services.get(&s.name);
                ServiceStatus {
                    name: s.name.clone(),
                    kind: match &s.runner {
                        config::Runner::Supervised(_) => "supervised",
                        config::Runner::External(_) => "external",
                    }
                    .to_owned(),
                    version: saved.map(|st| st.version.clone()).filter(|v| !v.is_empty()),
                    strategy: s.strategy.to_string(),
                    members: rt
                        .map(|rt| {
                            members_of(rt)
                                .into_iter()
                                .map(|m| m.address.authority)
                                .collect()
                        })
                        .unwrap_or_default(),
                    sets: rt
                        .map(|rt| {
                            rt.sets
                                .iter()
                                .map(|set| SetStatus {
                                    version: set.version.clone(),
                                    share: set.share,
                                    members: set
                                        .ready
                                        .iter()
                                        .map(|(a, _)| a.authority.clone())
                                        .collect(),
                                    standby: rt.standby.as_ref().is_some_and(|sb| sb.set == set.id),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    paused: proxy.as_ref().is_some_and(|p| p.paused(&s.pool_name())),
                    deploying: rt.is_some_and(|rt| rt.busy),
                    history: saved.map(|st| st.history.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The persisted state as it is now.
    pub fn state(&self) -> State {
        lock(&self.inner.state).clone()
    }

    /// The config the proxy should run now: the file's, with a pool for
    /// every service holding its current members.
    pub fn effective(&self) -> config::Config {
        let mut cfg = lock(&self.inner.base).clone();
        let services = lock(&self.inner.services);
        for (name, service) in &cfg.services {
            let current = services.get(name).map(members_of).unwrap_or_default();
            cfg.pools.insert(service.pool_name(), service.pool(current));
        }
        cfg
    }

    /// Starts every service: supervised ones' instances join `proxy`'s pools
    /// as they become ready, external ones' targets at once. Must be called
    /// within a tokio runtime.
    pub fn start(&self, proxy: Arc<Proxy>) -> std::io::Result<()> {
        *lock(&self.inner.proxy) = Some(proxy);
        let services: Vec<config::Service> =
            lock(&self.inner.base).services.values().cloned().collect();
        for service in services {
            match &service.runner {
                config::Runner::Supervised(s) => {
                    self.start_set(&service, s, 100)?;
                }
                // Routed from the first snapshot on (see `Engine::new`).
                config::Runner::External(_) => {}
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

    /// Stops every service gracefully; resolves when all their instances
    /// have exited. Returns whether every stop was clean.
    pub async fn shutdown(&self) -> bool {
        let groups: Vec<(String, Group)> = {
            let mut services = lock(&self.inner.services);
            // Under the same lock `start_set` checks it with.
            self.inner.stopping.store(true, Ordering::SeqCst);
            services
                .iter_mut()
                .flat_map(|(name, rt)| {
                    rt.standby = None;
                    rt.sets
                        .iter()
                        .filter_map(|s| s.group.clone().map(|g| (name.clone(), g)))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
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

    /// Deploys `req` with the service's strategy (or the one asked for).
    /// Resolves when the new version serves all the traffic; on failure
    /// (a new instance never ready or crashing, a smoke check or canary
    /// gate failed, the deploy timeout) the old version is put back and
    /// keeps serving, and the error says why.
    pub async fn deploy(
        &self,
        req: DeployRequest,
        reporter: Reporter,
    ) -> Result<Deployed, DeployError> {
        strategy::deploy(self, req, reporter).await
    }

    /// Goes back to the version (or targets) that served before: at once if
    /// a blue-green deploy's old set is still standing by, otherwise by a
    /// deploy of it (with the service's strategy; canary becomes
    /// blue-green, the old version needs no trial).
    pub async fn rollback(
        &self,
        service: &str,
        reporter: Reporter,
    ) -> Result<Deployed, DeployError> {
        strategy::rollback(self, service, reporter).await
    }

    /// Holds the service's requests (within `hold`) until [`Engine::resume`].
    pub fn pause(&self, service: &str, hold: Hold) -> Result<(), DeployError> {
        let pool = self.pool_name(service)?;
        let proxy = self
            .proxy()
            .ok_or_else(|| DeployError::NotRunning(service.into()))?;
        proxy
            .pause(&pool, hold)
            .map_err(|e| DeployError::BadRequest(e.into()))?;
        tracing::info!(service, max_wait = ?hold.max_wait, max_requests = hold.max_requests, "service paused");
        Ok(())
    }

    /// Releases the held requests; new ones flow again.
    pub fn resume(&self, service: &str) -> Result<(), DeployError> {
        let pool = self.pool_name(service)?;
        let proxy = self
            .proxy()
            .ok_or_else(|| DeployError::NotRunning(service.into()))?;
        proxy.resume(&pool);
        tracing::info!(service, "service resumed");
        Ok(())
    }

    fn pool_name(&self, service: &str) -> Result<String, DeployError> {
        lock(&self.inner.base)
            .services
            .get(service)
            .map(config::Service::pool_name)
            .ok_or_else(|| DeployError::UnknownService(service.into()))
    }

    pub(crate) fn proxy(&self) -> Option<Arc<Proxy>> {
        lock(&self.inner.proxy).clone()
    }

    pub(crate) fn service(&self, name: &str) -> Option<config::Service> {
        lock(&self.inner.base).services.get(name).cloned()
    }

    /// Records a deploy's progress in the state and saves it.
    pub(crate) fn note(&self, service: &str, deploy: &Deploy, outcome: Outcome) {
        let mut state = lock(&self.inner.state);
        let entry = state.services.entry(service.to_owned()).or_default();
        let served = matches!(outcome, Outcome::Deployed | Outcome::RolledBack);
        match entry.history.last_mut() {
            Some(last) if last.outcome == Outcome::InProgress && last.started == deploy.started => {
                last.outcome = outcome;
            }
            _ => entry.record(Deploy {
                outcome,
                ..deploy.clone()
            }),
        }
        if served {
            entry.version = deploy.version.clone();
            entry.targets = deploy.targets.clone();
        }
        if let Some(store) = &self.inner.store
            && let Err(e) = store.save(&state)
        {
            tracing::error!(service, error = %e, "could not save the state");
        }
    }

    /// The service's saved state.
    pub(crate) fn saved(&self, service: &str) -> ServiceState {
        lock(&self.inner.state)
            .services
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `f` on the service's runtime.
    pub(crate) fn with_runtime<R>(&self, service: &str, f: impl FnOnce(&mut Runtime) -> R) -> R {
        let mut services = lock(&self.inner.services);
        f(services.entry(service.to_owned()).or_default())
    }

    /// Runs `f` on one set, if it still exists.
    pub(crate) fn with_set<R>(
        &self,
        service: &str,
        set: u64,
        f: impl FnOnce(&mut Set) -> R,
    ) -> Option<R> {
        self.with_runtime(service, |rt| {
            rt.sets.iter_mut().find(|s| s.id == set).map(f)
        })
    }

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
        let id = self.inner.next_set.fetch_add(1, Ordering::Relaxed);
        let (phase, phase_rx) = watch::channel(SetPhase::Starting);
        // The group starts under the lock `shutdown` takes to collect the
        // groups: either it is collected, or it never starts.
        self.with_runtime(&service.name, |rt| {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("baton is stopping"));
            }
            // `supervised::start` only spawns tasks; they take this lock
            // later, when they run.
            let group = supervised::start(self.clone(), service, spec, id)?;
            rt.sets.push(Set {
                id,
                version: spec.version.to_string(),
                targets: Vec::new(),
                group: Some(group),
                size: spec.instances as usize,
                ready: Vec::new(),
                share,
                phase,
            });
            Ok((id, phase_rx))
        })
    }

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

    /// Requests in flight to one member of a service's pool, also after it
    /// left the published pool (until [`Engine::forget`]).
    pub(crate) fn in_flight(&self, service: &str, member: &str) -> Vec<proxy::InFlight> {
        let key = (service.to_owned(), member.to_owned());
        let mut all = lock(&self.inner.counters)
            .get(&key)
            .cloned()
            .unwrap_or_default();
        if let Some(c) = self
            .proxy()
            .and_then(|p| p.in_flight_counter(&format!("service:{service}"), member))
            && !all.iter().any(|known| known.same(&c))
        {
            all.push(c);
        }
        all
    }

    /// Drops a drained member's counter.
    pub(crate) fn forget(&self, service: &str, member: &str) {
        lock(&self.inner.counters).remove(&(service.to_owned(), member.to_owned()));
    }

    /// Publishes the current state to the proxy.
    pub(crate) async fn publish(&self) -> Result<(), BuildErrors> {
        let _one_at_a_time = self.inner.publishing.lock().await;
        let Some(proxy) = self.proxy() else {
            return Ok(());
        };
        let cfg = self.effective();
        let published = proxy.clone();
        let result = tokio::task::spawn_blocking(move || proxy.reload(&cfg).map(|()| cfg))
            .await
            .unwrap_or_else(|e| Err(BuildErrors(vec![format!("could not publish: {e}")])))?;
        // Take each new member's counter while the proxy knows it.
        let mut counters = lock(&self.inner.counters);
        for (name, service) in &result.services {
            let Some(pool) = result.pools.get(&service.pool_name()) else {
                continue;
            };
            for m in &pool.members {
                let key = (name.clone(), m.address.authority.clone());
                let Some(c) =
                    published.in_flight_counter(&service.pool_name(), &m.address.authority)
                else {
                    continue;
                };
                let known = counters.entry(key).or_default();
                if !known.iter().any(|k| k.same(&c)) {
                    known.push(c);
                }
            }
        }
        Ok(())
    }

    /// [`Engine::publish`], logging a failure instead of returning it.
    pub(crate) async fn publish_logged(&self, service: &str) {
        if let Err(errors) = self.publish().await {
            for e in &errors.0 {
                tracing::error!(service, "could not publish the pool: {e}");
            }
        }
    }
}

/// The pool members of a service: the ready members of every set with a
/// share of the traffic, weighted so that each set gets its share whatever
/// its size. With one such set every member has weight 1.
fn members_of(rt: &Runtime) -> Vec<config::Member> {
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
            (u32::from(set.share) * 10_000 / set.ready.len() as u32).max(1)
        };
        for (address, _) in &set.ready {
            match out.iter_mut().find(|m| m.address == *address) {
                // The same target in both sets (an external deploy that
                // keeps one): it carries both shares.
                Some(m) => m.weight = (m.weight + weight).min(1_000_000),
                None => out.push(config::Member {
                    address: address.clone(),
                    weight,
                }),
            }
        }
    }
    out
}

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

/// A deploy that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    /// The version now serving.
    pub version: String,
    /// How it got there.
    pub strategy: config::Strategy,
    /// From the request to the new version taking all the traffic (and,
    /// for rolling and canary, the last old instance gone).
    pub duration: Duration,
    /// The service's requests during the deploy, measured by the proxy.
    pub traffic: Traffic,
}

/// Waits until every one of `counters` reaches zero, checking every few
/// milliseconds, or until `limit` passes.
pub(crate) async fn wait_idle(counters: Vec<proxy::InFlight>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while counters.iter().any(|c| c.get() > 0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
