//! The engine's registrar on etcd. It takes the cluster-wide lock of a
//! service's deploys (`{prefix}/locks/deploy/{service}`, created only if
//! absent, under the node's lease), so that one deploy or rollback of a
//! service runs at a time in the whole cluster. And one task owns what this
//! node registered and brings it in step with the latest list of routed
//! instances the engine published: new instances are registered, then an
//! instance that left the list is deregistered, and the task waits until
//! every live node's front door has applied the deletion (their records in
//! the registry say so) before it confirms; only then does the engine
//! signal the instance. Every wait is bounded; a registration that fails
//! (etcd down) is retried until it succeeds or the instance leaves the
//! list.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::{Etcd, InstanceKey, Name, Options, Registrant, Registry, State};
use deploy::{Confirmation, DeployLock, LockError, LockFuture, Routed};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The first pause before retrying a failed registration; it doubles up to
/// [`MAX_RETRY`]. etcd being down gives no event to wait for.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// What the engine calls (see the module's header).
pub struct Registrar {
    etcd: Etcd,
    /// The latest list, with its sequence number.
    wanted: watch::Sender<(u64, Vec<Routed>)>,
    /// The sequence number of the last list the task brought the registry
    /// in step with (or gave up waiting for).
    done: watch::Receiver<u64>,
    /// The longest a publish waits for its confirmation.
    bound: Duration,
}

impl Registrar {
    /// Starts the task. A removal waits for the front doors `lease_ttl` at
    /// most (a dead node's record lasts that long).
    pub fn start(etcd: Etcd, lease_ttl: Duration, options: Options) -> (Registrar, JoinHandle<()>) {
        let (wanted, wanted_rx) = watch::channel((0, Vec::new()));
        let (done_tx, done) = watch::channel(0);
        let task = Task {
            etcd: etcd.clone(),
            registered: BTreeMap::new(),
            applied_within: lease_ttl,
        };
        let handle = tokio::spawn(task.run(wanted_rx, done_tx));
        let registrar = Registrar {
            etcd,
            wanted,
            done,
            // Deletions, the wait for the front doors, registrations.
            bound: lease_ttl + options.request_timeout * 2,
        };
        (registrar, handle)
    }
}

impl deploy::Registrar for Registrar {
    fn lock_deploy(&self, service: &str) -> LockFuture {
        let etcd = self.etcd.clone();
        let service = service.to_owned();
        Box::pin(async move {
            let unavailable = |reason: String| LockError::Unavailable {
                service: service.clone(),
                reason,
            };
            let name: Name = service.parse().map_err(|e| unavailable(format!("{e}")))?;
            match etcd.lock("deploy", &name).await {
                Ok(lock) => Ok(Box::new(lock) as DeployLock),
                Err(cluster::LockError::Held { node, since }) => Err(LockError::Held {
                    service: service.clone(),
                    node,
                    since,
                }),
                Err(cluster::LockError::Request(e)) => Err(unavailable(e.to_string())),
            }
        })
    }

    fn publish(&self, routed: Vec<Routed>) -> Confirmation {
        let mut seq = 0;
        self.wanted.send_if_modified(|(n, list)| {
            if *list == routed {
                seq = *n;
                return false;
            }
            *n += 1;
            seq = *n;
            *list = routed;
            true
        });
        let mut done = self.done.clone();
        let bound = self.bound;
        Box::pin(async move {
            let confirmed = tokio::time::timeout(bound, done.wait_for(|d| *d >= seq)).await;
            if confirmed.is_err() {
                tracing::warn!(
                    within = %humantime::format_duration(bound),
                    "the registry did not confirm the instances' registrations in time; going on"
                );
            }
        })
    }
}

/// One registered instance: its key and what was written.
type Registered = BTreeMap<InstanceKey, Registrant>;

struct Task {
    etcd: Etcd,
    registered: Registered,
    applied_within: Duration,
}

impl Task {
    async fn run(
        mut self,
        mut wanted: watch::Receiver<(u64, Vec<Routed>)>,
        done: watch::Sender<u64>,
    ) {
        let mut retry = FIRST_RETRY;
        let mut failed = false;
        loop {
            if failed {
                // Retry after a pause, or at once when the list changes.
                if let Ok(Err(_)) = tokio::time::timeout(retry, wanted.changed()).await {
                    return;
                }
                retry = (retry * 2).min(MAX_RETRY);
            } else if wanted.changed().await.is_err() {
                return;
            }
            let (seq, routed) = wanted.borrow_and_update().clone();
            failed = !self.apply(&routed).await;
            if !failed {
                retry = FIRST_RETRY;
            }
            done.send_replace(seq);
        }
    }

    /// Brings the registry in step with `routed`; `false` if some
    /// registration failed (to be retried).
    async fn apply(&mut self, routed: &[Routed]) -> bool {
        let want = self.wanted(routed);
        let mut ok = true;
        // New instances first: capacity before removal.
        for (key, registrant) in &want {
            if self.registered.get(key) == Some(registrant) {
                continue;
            }
            match self.etcd.register(registrant.clone()).await {
                Ok(_) => {
                    tracing::info!(service = %key.service, id = %key.id, address = %registrant.address.authority, "instance registered");
                    self.registered.insert(key.clone(), registrant.clone());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not register an instance; retrying");
                    ok = false;
                }
            }
        }
        // Then removals, and the wait for every front door: the engine
        // signals an instance only once it is confirmed gone.
        let gone: Vec<InstanceKey> = self
            .registered
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        let mut removed: BTreeMap<Name, i64> = BTreeMap::new();
        for key in gone {
            self.registered.remove(&key);
            match self.etcd.deregister(&key).await {
                Ok(revision) => {
                    tracing::info!(service = %key.service, id = %key.id, revision, "instance deregistered");
                    let at = removed.entry(key.service.clone()).or_default();
                    *at = (*at).max(revision);
                }
                // The lease's renewals retry the deletion.
                Err(e) => {
                    tracing::warn!(error = %e, "could not deregister an instance; retrying in the background")
                }
            }
        }
        for (service, revision) in removed {
            match self
                .etcd
                .wait_applied(&service, revision, self.applied_within)
                .await
            {
                Ok(()) => {
                    tracing::debug!(%service, revision, "every front door applied the removal")
                }
                Err(behind) => tracing::warn!("{behind}; stopping the instance anyway"),
            }
        }
        ok
    }

    /// The registry's view of `routed`: a key and a value per instance.
    fn wanted(&self, routed: &[Routed]) -> Registered {
        let mut out = BTreeMap::new();
        for r in routed {
            let port = r.address.port();
            let (Ok(service), Ok(id), Ok(version)) = (
                r.service.parse::<Name>(),
                format!("{}-{port}", r.version).parse::<Name>(),
                r.version.parse::<config::Version>(),
            ) else {
                tracing::warn!(service = %r.service, version = %r.version, "cannot register an instance under this name");
                continue;
            };
            let key = InstanceKey {
                service: service.clone(),
                node: self.etcd.node().clone(),
                id: id.clone(),
            };
            let registrant = Registrant {
                service,
                id,
                version,
                address: self.etcd.address(port),
                state: match r.standby {
                    true => State::Standby,
                    false => State::Ready,
                },
                weight: r.weight,
            };
            out.insert(key, registrant);
        }
        out
    }
}
