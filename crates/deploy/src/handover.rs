//! Handing the running services to another baton process (an upgrade of
//! baton itself) and taking them over in that process.
//!
//! The old process first claims the engine ([`Engine::begin_upgrade`]):
//! refused while a deploy, a rollback or a blue-green rollback window is
//! running (the new process would not know how to finish them), and from
//! then on every deploy is refused with [`DeployError::Upgrading`] (exit
//! 75). Then [`Engine::hand_over`] freezes every group (no start, stop or
//! restart; nothing is stopped when this process exits) and lists the
//! instances; the new process starts from them ([`Engine::start_adopting`]).
//! If the new process fails, [`Engine::end_upgrade`] thaws the groups and the
//! old process supervises as before.
//!
//! Never starts or signals a process itself: the supervisor does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proxy::Proxy;
use serde::{Deserialize, Serialize};

use crate::{DeployError, Engine};

/// One service's running instances, as handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOver {
    /// The version they run.
    pub version: String,
    /// The instances.
    pub instances: Vec<supervisor::Adopted>,
}

impl Engine {
    /// Claims the engine for an upgrade of baton: from now on deploys are
    /// refused. Refused itself while a deploy or a rollback window runs.
    pub fn begin_upgrade(&self) -> Result<(), DeployError> {
        self.inner.services.with(|services| {
            if let Some((name, _)) = services.iter().find(|(_, rt)| rt.busy) {
                return Err(DeployError::Busy(name.clone()));
            }
            if let Some((name, _)) = services.iter().find(|(_, rt)| rt.standby.is_some()) {
                return Err(DeployError::RollbackWindow(name.clone()));
            }
            if self.inner.upgrading.swap(true, Ordering::SeqCst) {
                return Err(DeployError::Upgrading);
            }
            Ok(())
        })
    }

    /// Freezes every supervised service's instances and lists them.
    pub async fn hand_over(&self) -> BTreeMap<String, HandedOver> {
        let groups: Vec<(String, String, supervisor::Group)> =
            self.inner.services.with(|services| {
                services
                    .iter()
                    .flat_map(|(name, rt)| {
                        rt.sets
                            .iter()
                            .filter_map(|s| {
                                s.group
                                    .clone()
                                    .map(|g| (name.clone(), s.version.clone(), g))
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            });
        let mut out = BTreeMap::new();
        for (name, version, group) in groups {
            match group.freeze().await {
                Ok(instances) => {
                    out.insert(name, HandedOver { version, instances });
                }
                Err(e) => tracing::error!(service = %name, error = %e, "could not hand over"),
            }
        }
        out
    }

    /// Resolves once every supervised set's first generation is complete
    /// (or failed): after [`Engine::start_adopting`], the adopted instances
    /// are then in the published pools, and a proxy that serves from now
    /// on finds them.
    pub async fn settled(&self) {
        let phases: Vec<tokio::sync::watch::Receiver<crate::sets::SetPhase>> =
            self.inner.services.with(|services| {
                services
                    .values()
                    .flat_map(|rt| {
                        rt.sets
                            .iter()
                            .filter(|s| s.group.is_some())
                            .map(|s| s.phase.subscribe())
                    })
                    .collect()
            });
        for mut phase in phases {
            let _ = phase
                .wait_for(|p| *p != crate::sets::SetPhase::Starting)
                .await;
        }
    }

    /// Records the running instances of every supervised set in the state
    /// directory (if any), for a baton restarted after a crash.
    pub(crate) async fn record_instances(&self) {
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        let _one = self.inner.recording.lock().await;
        let groups: Vec<(String, String, supervisor::Group)> =
            self.inner.services.with(|services| {
                services
                    .iter()
                    .flat_map(|(name, rt)| {
                        rt.sets
                            .iter()
                            .filter_map(|s| {
                                s.group
                                    .clone()
                                    .map(|g| (name.clone(), s.version.clone(), g))
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            });
        let mut out: BTreeMap<String, Vec<HandedOver>> = BTreeMap::new();
        for (name, version, group) in groups {
            if let Ok(instances) = group.instances().await {
                out.entry(name)
                    .or_default()
                    .push(HandedOver { version, instances });
            }
        }
        // The file is synced to disk: off the runtime's worker threads.
        match tokio::task::spawn_blocking(move || store.save_instances(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record the running instances"),
            Err(e) => tracing::warn!(error = %e, "could not record the running instances"),
        }
    }

    /// Asks for a record of the running instances ([`Engine::record_instances`])
    /// on a task of its own, and returns its ticket for
    /// [`Engine::recorded`]. The group events that change the instances
    /// (spawned, ready, exited) never wait for the file to be written:
    /// a deploy's next step follows its new set's readiness at once.
    /// Requests made while a record is being written make one more, which
    /// sees every change before them.
    pub(crate) fn record_instances_soon(&self) -> u64 {
        self.inner.recorder.get_or_init(|| {
            let inner = Arc::downgrade(&self.inner);
            let wanted = self.inner.record_wanted.clone();
            tokio::spawn(async move {
                loop {
                    wanted.notified().await;
                    let Some(inner) = inner.upgrade() else { return };
                    let engine = Engine { inner };
                    let asked = engine.inner.record_asked.load(Ordering::SeqCst);
                    engine.record_instances().await;
                    engine.inner.record_written.send_if_modified(|written| {
                        let newer = asked > *written;
                        if newer {
                            *written = asked;
                        }
                        newer
                    });
                }
            });
        });
        let ticket = self.inner.record_asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.record_wanted.notify_one();
        ticket
    }

    /// Resolves once the record `ticket` asked for (or a later one) is
    /// written.
    pub(crate) async fn recorded(&self, ticket: u64) {
        let mut written = self.inner.record_written.subscribe();
        let _ = written.wait_for(|w| *w >= ticket).await;
    }

    /// The upgrade failed: supervise again, accept deploys again.
    pub fn end_upgrade(&self) {
        let groups: Vec<supervisor::Group> = self.inner.services.with(|services| {
            services
                .values()
                .flat_map(|rt| rt.sets.iter().filter_map(|s| s.group.clone()))
                .collect()
        });
        for group in groups {
            group.thaw();
        }
        self.inner.upgrading.store(false, Ordering::SeqCst);
    }

    /// [`Engine::start`], taking over the instances another baton handed
    /// over: a supervised service whose handed-over version is the one it
    /// runs keeps them (the same processes; more are started if they are
    /// too few for the config, and they are replaced if they cannot be
    /// adopted). Instances of a service the config no longer has, or of
    /// another version, are stopped.
    pub fn start_adopting(
        &self,
        proxy: Arc<Proxy>,
        mut handed: BTreeMap<String, HandedOver>,
    ) -> std::io::Result<()> {
        if self.inner.proxy.set(proxy).is_err() {
            return Err(std::io::Error::other("the engine is already started"));
        }
        let services: Vec<config::Service> = self
            .inner
            .base
            .with(|base| base.services.values().cloned().collect());
        for service in services {
            let config::Runner::Supervised(s) = &service.runner else {
                continue;
            };
            let adopted = match handed.remove(&service.name) {
                Some(h) if h.version == s.version.to_string() => h.instances,
                Some(h) => {
                    tracing::warn!(service = %service.name, handed = %h.version, runs = %s.version, "handed-over instances run another version; they are stopped");
                    handed.insert(service.name.clone(), h);
                    Vec::new()
                }
                None => Vec::new(),
            };
            self.start_set_adopting(&service, s, 100, adopted)?;
        }
        // What nobody took: stopped (gracefully) by a group that wants none.
        for (name, h) in handed {
            tracing::warn!(service = %name, instances = h.instances.len(), "stopping handed-over instances the config does not run");
            let grace = self
                .service(&name)
                .map_or(crate::supervised::ORPHAN_GRACE, |s| s.drain_timeout);
            crate::supervised::stop_orphans(h.instances, grace);
        }
        Ok(())
    }
}
