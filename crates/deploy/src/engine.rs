//! The engine: the services of the config, their sets, the state, and the
//! proxy they are published to; the entry points the binary calls (start,
//! reload, shutdown, deploy, rollback, pause, resume).
//!
//! Its state is shared by the control API's tasks, the strategies and the
//! sets' supervisors, each piece in a [`Locked`] (one lock at a time, none
//! across an await). It must never wait on the data plane: the proxy only
//! ever receives whole snapshots (`publish`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use proxy::Proxy;
use supervisor::Group;

use crate::locked::Locked;
use crate::sets::{Runtime, Set, SetPhase};
use crate::{
    BadRequest, DeployError, DeployRequest, Deployed, Hold, Outcome, Reporter, ServiceState,
    StartError, State, Store, strategy,
};

/// The running services and what the proxy is told about them.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The config the engine runs: the file's, with each service at the
    /// version (or targets) it serves.
    pub base: Locked<config::Config>,
    /// The services exactly as the file said them when it was last
    /// applied (at the start or by a reload): what the next reload is
    /// compared with.
    pub file: Locked<BTreeMap<String, config::Service>>,
    /// Services added by a reload whose routes are not published until
    /// their first instances are ready.
    pub withheld: Locked<BTreeSet<String>>,
    /// One reload at a time (until its deploys are started).
    pub reloading: tokio::sync::Mutex<()>,
    /// By service name.
    pub services: Locked<BTreeMap<String, Runtime>>,
    /// What `store` holds.
    pub state: Locked<State>,
    /// The in-flight counter of every member ever published, by (service,
    /// address), kept until the member is drained: once a member leaves
    /// the published pool the proxy forgets it, but its requests in flight
    /// must still be waited for before SIGTERM.
    /// Several per member when it left the pool and came back (a standby
    /// set switched back to): the proxy then counts it afresh.
    pub counters: Locked<HashMap<(String, String), Vec<proxy::InFlight>>>,
    /// Set once by [`Engine::start`].
    pub proxy: OnceLock<Arc<Proxy>>,
    /// One publish at a time, each with the latest state.
    pub publishing: tokio::sync::Mutex<()>,
    /// One write of `state.json` at a time, each with the state as it is
    /// when its turn comes: the last write has the latest state.
    pub persisting: tokio::sync::Mutex<()>,
    pub store: Option<Store>,
    pub next_set: AtomicU64,
    /// Set by `shutdown`: no new set starts after it (its instances would
    /// outlive baton).
    pub stopping: AtomicBool,
    /// The version each supervised instance runs (by its address, with its
    /// instance id): during a rolling deploy a set holds two.
    pub versions: Locked<HashMap<std::net::SocketAddr, (u64, String)>>,
    /// The address instances listen on (fixed by `[cluster]` at start).
    pub instance_ip: std::net::IpAddr,
    /// The cluster registry this node registers its instances in, if any.
    pub registrar: OnceLock<Arc<dyn crate::Registrar>>,
    /// Where deploys of supervised services go in a cluster, if anywhere.
    pub cluster_deploys: OnceLock<Arc<dyn crate::ClusterDeploys>>,
    /// The registry's members of each discovered service, by service.
    pub discovered: Locked<BTreeMap<String, crate::registry::Discovered>>,
    /// The members of each discovered service as the proxy routes by them
    /// (set once a publish with them returned), by service.
    pub discovered_published: tokio::sync::watch::Sender<BTreeMap<String, Vec<config::Member>>>,
    /// baton is handing its services to a new process (`handover`): no
    /// deploy may start.
    pub upgrading: AtomicBool,
    /// One record of the running instances at a time (`instances.json`).
    pub recording: tokio::sync::Mutex<()>,
    /// Records of the running instances asked for by
    /// [`Engine::record_instances_soon`]: the last ticket handed out, the
    /// last one written, the wake-up of the task that writes them, and
    /// whether that task runs.
    pub record_asked: AtomicU64,
    pub record_written: tokio::sync::watch::Sender<u64>,
    pub record_wanted: Arc<tokio::sync::Notify>,
    pub recorder: OnceLock<()>,
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
        let file = config.services.clone();
        let fresh = crate::restore::restore(&mut config, &mut state)?;
        if fresh && let Some(store) = &store {
            store.save(&state)?;
        }
        let instance_ip = crate::registry::instance_ip(&config);
        let engine = Engine {
            inner: Arc::new(Inner {
                instance_ip,
                versions: Locked::default(),
                base: Locked::new(config),
                file: Locked::new(file),
                withheld: Locked::default(),
                reloading: tokio::sync::Mutex::new(()),
                services: Locked::default(),
                state: Locked::new(state),
                counters: Locked::default(),
                proxy: OnceLock::new(),
                publishing: tokio::sync::Mutex::new(()),
                persisting: tokio::sync::Mutex::new(()),
                store,
                next_set: AtomicU64::new(1),
                stopping: AtomicBool::new(false),
                registrar: OnceLock::new(),
                cluster_deploys: OnceLock::new(),
                discovered: Locked::default(),
                discovered_published: tokio::sync::watch::Sender::new(BTreeMap::new()),
                upgrading: AtomicBool::new(false),
                recording: tokio::sync::Mutex::new(()),
                record_asked: AtomicU64::new(0),
                record_written: tokio::sync::watch::Sender::new(0),
                record_wanted: Arc::new(tokio::sync::Notify::new()),
                recorder: OnceLock::new(),
            }),
        };
        // External targets are taken as they are: the proxy's own health
        // checks (if any) decide whether they get traffic.
        let services: Vec<config::Service> = engine
            .inner
            .base
            .with(|base| base.services.values().cloned().collect());
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

    /// The persisted state as it is now.
    pub fn state(&self) -> State {
        self.inner.state.get()
    }

    /// Starts every service: supervised ones' instances join `proxy`'s pools
    /// as they become ready, external ones' targets at once. Must be called
    /// within a tokio runtime, once.
    ///
    /// Instances a baton that died (`kill -9`, a crash) left running, as
    /// recorded in the state directory, are adopted if they still run the
    /// version the service comes back at, and stopped otherwise.
    pub fn start(&self, proxy: Arc<Proxy>) -> std::io::Result<()> {
        let recorded = self
            .inner
            .store
            .as_ref()
            .map(crate::Store::load_instances)
            .unwrap_or_default();
        let mut adopt = std::collections::BTreeMap::new();
        for (name, sets) in recorded {
            let current = self.service(&name).and_then(|s| match s.runner {
                config::Runner::Supervised(s) => Some(s.version.to_string()),
                config::Runner::External(_) => None,
            });
            for set in sets {
                if Some(&set.version) == current.as_ref() && !adopt.contains_key(&name) {
                    tracing::info!(service = %name, instances = set.instances.len(), "adopting the instances a previous baton left running");
                    adopt.insert(name.clone(), set);
                } else {
                    let grace = self
                        .service(&name)
                        .map_or(crate::supervised::ORPHAN_GRACE, |s| s.drain_timeout);
                    crate::supervised::stop_orphans(set.instances, grace);
                }
            }
        }
        self.start_adopting(proxy, adopt)
    }

    /// Stops every service gracefully; resolves when all their instances
    /// have exited. Returns whether every stop was clean.
    pub async fn shutdown(&self) -> bool {
        let groups: Vec<(String, Group)> = self.inner.services.with(|services| {
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
        });
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
        strategy::rollback::rollback(self, service, reporter).await
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
        self.service(service)
            .map(|s| s.pool_name())
            .ok_or_else(|| DeployError::UnknownService(service.into()))
    }

    pub(crate) fn proxy(&self) -> Option<Arc<Proxy>> {
        self.inner.proxy.get().cloned()
    }

    pub(crate) fn service(&self, name: &str) -> Option<config::Service> {
        self.inner
            .base
            .with(|base| base.services.get(name).cloned())
    }

    /// The supervised service `name` and its spec at `version`; an unknown
    /// service, or one whose instances are targets, is refused.
    pub(crate) fn supervised_at(
        &self,
        name: &str,
        version: config::Version,
    ) -> Result<(config::Service, config::Supervised), DeployError> {
        let svc = self
            .service(name)
            .ok_or_else(|| DeployError::UnknownService(name.to_owned()))?;
        let config::Runner::Supervised(spec) = &svc.runner else {
            return Err(BadRequest::TargetsRequired(name.to_owned()).into());
        };
        let mut spec = spec.clone();
        spec.version = version;
        Ok((svc, spec))
    }

    /// Records a deploy's progress in the state and saves it; returns once
    /// it is on disk.
    pub(crate) async fn note(&self, service: &str, deploy: &crate::Deploy, outcome: Outcome) {
        self.inner.state.with(|state| {
            state
                .services
                .entry(service.to_owned())
                .or_default()
                .note(deploy, outcome);
        });
        self.persist().await;
    }

    /// Saves the state as it is now (logging a failure); returns once it
    /// is on disk. The write and its syncs run on a blocking thread: a
    /// disk that takes its time never stalls a thread that serves
    /// requests. Writes take turns, and each serializes the state when its
    /// turn comes, so a later change is never overwritten by an earlier
    /// one.
    pub(crate) async fn persist(&self) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let _turn = self.inner.persisting.lock().await;
        let bytes = match self.inner.state.with(|state| store.state_bytes(state)) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "could not save the state");
                return;
            }
        };
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.save_bytes(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not save the state"),
            Err(e) => tracing::error!(error = %e, "could not save the state"),
        }
    }

    /// The service's saved state.
    pub(crate) fn saved(&self, service: &str) -> ServiceState {
        self.inner
            .state
            .with(|state| state.services.get(service).cloned().unwrap_or_default())
    }

    /// Runs `f` on the service's runtime. `f` must not call into the
    /// engine.
    pub(crate) fn with_runtime<R>(&self, service: &str, f: impl FnOnce(&mut Runtime) -> R) -> R {
        self.inner
            .services
            .with(|services| f(services.entry(service.to_owned()).or_default()))
    }

    /// Runs `f` on one set, if it still exists. `f` must not call into the
    /// engine.
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
}

#[cfg(test)]
mod tests {
    use crate::{Deploy, Engine, Outcome, Store};

    /// Notes taken at once, from several threads, leave on disk exactly
    /// the state in memory: the writes take turns and each writes the
    /// state as it is when its turn comes, so none is overwritten by an
    /// older one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notes_taken_at_once_leave_the_latest_state_on_disk() {
        let dir = std::env::temp_dir().join(format!("baton-persist-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let source = "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[service.web]\ntargets = [\"127.0.0.1:9\"]\n\n[service.api]\ntargets = [\"127.0.0.1:9\"]\n";
        let engine = Engine::new(
            config::parse(source, "baton.toml").unwrap(),
            Some(store.clone()),
        )
        .unwrap();
        let notes = (0..40).map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let service = if i % 2 == 0 { "web" } else { "api" };
                let deploy = Deploy {
                    version: format!("v{i}"),
                    targets: Vec::new(),
                    started: crate::state::now(),
                    outcome: Outcome::InProgress,
                };
                engine.note(service, &deploy, Outcome::InProgress).await;
                engine.note(service, &deploy, Outcome::Deployed).await;
            })
        });
        for note in futures_util::future::join_all(notes).await {
            note.unwrap();
        }
        let in_memory = engine.inner.state.with(|state| state.clone());
        for service in ["web", "api"] {
            assert!(
                in_memory.services[service].history.len() >= 20,
                "every deploy of {service} is in its history"
            );
        }
        assert_eq!(store.load().unwrap(), in_memory);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
