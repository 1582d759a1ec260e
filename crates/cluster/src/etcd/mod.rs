//! The etcd backend of [`crate::Registry`]: connecting (with a bounded,
//! explained failure for a wrong endpoint or password), this node's lease
//! (`session`), discovery (`watch`), the nodes' records of what their front
//! doors applied (`nodes`), cluster-wide locks (`lock`) and a semaphore
//! (`semaphore`), the deploy state of a service (`desired`, followed by
//! `follow`), the switch of a blue-green deploy (`switch`), the whole
//! cluster in one read (`view`) and bounded requests (`request`).
//! Passwords are read here, passed to the client and never logged.

mod desired;
mod follow;
mod lock;
mod nodes;
mod request;
mod semaphore;
mod session;
mod switch;
mod view;
mod watch;

pub use desired::{Converge, Desired, DesiredAt, InvalidDesired, NodeReport, now_rfc3339};
pub use follow::Following;
pub use lock::{Holder, Lock, LockError};
pub use nodes::Behind;
pub use semaphore::{SemaphoreError, Slot};

use std::sync::Arc;
use std::time::Duration;

use config::{Cluster, ClusterTls, Password, UpstreamAddr};
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use crate::error::{Action, ConnectError, RegisterError, RequestError};
use crate::instance::{Instance, InstanceKey, Members};
use crate::name::Name;
use crate::registry::{Discovery, Reachability, Registrant, Registry};
use request::{probe, retrying};
use session::Session;

/// Time bounds of the etcd client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Connecting and the first request at start (then [`Etcd::connect`]
    /// fails with the reason).
    pub connect_timeout: Duration,
    /// One request, retries included (a member down, an election).
    pub request_timeout: Duration,
}

impl Options {
    /// The bounds for a lease of `lease_ttl`: five seconds to connect; a
    /// third of the TTL per request, so that a renewal that fails is retried
    /// before the lease expires, but 2 s at least (an etcd election takes
    /// about a second) and 5 s at most.
    pub fn for_ttl(lease_ttl: Duration) -> Options {
        Options {
            connect_timeout: Duration::from_secs(5),
            // Whole milliseconds: the bound appears in messages.
            request_timeout: Duration::from_millis(
                u64::try_from((lease_ttl / 3).as_millis()).unwrap_or(u64::MAX),
            )
            .clamp(Duration::from_secs(2), Duration::from_secs(5)),
        }
    }
}

/// A connection to an etcd cluster, this node's lease and its registered
/// instances. Cheap to clone; when the last clone is dropped the lease is no
/// longer renewed (its keys disappear after the TTL), and [`Etcd::close`]
/// removes them at once.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    node: Name,
    advertise: String,
    options: Options,
    session: Arc<Session>,
    renewals: JoinHandle<()>,
    renewing: channel::Receiver<Reachability>,
    /// What this node's record says it applied (`nodes`), by service.
    applied: tokio::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.renewals.abort();
    }
}

impl Etcd {
    /// Connects to `cluster`'s endpoints and checks that etcd answers a read
    /// of the prefix (so that a wrong endpoint, user, password or
    /// permission is reported now, within `options.connect_timeout`).
    pub async fn connect(cluster: &Cluster, options: Options) -> Result<Etcd, ConnectError> {
        let node = match &cluster.node {
            Some(node) => node.parse().map_err(ConnectError::InvalidNode)?,
            None => host_name()?,
        };
        let endpoints = cluster.endpoints.join(",");
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // Detects a dead connection under an open watch. etcd refuses
            // pings more often than every 5 s.
            .with_keep_alive(Duration::from_secs(5), options.request_timeout)
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some(tls) = &cluster.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        let username = cluster.credentials.as_ref().map(|c| c.username.clone());
        if let Some(credentials) = &cluster.credentials {
            let password = read_password(&credentials.password)?;
            connect = connect.with_user(credentials.username.clone(), password);
        }
        let unreachable = |detail| ConnectError::Unreachable {
            endpoints: endpoints.clone(),
            after: options.connect_timeout,
            detail,
        };
        // A TCP connection first: a wrong endpoint is reported at once rather
        // than after the whole timeout.
        let (any_open, detail) = probe(&cluster.endpoints, options.connect_timeout).await;
        if !any_open {
            return Err(unreachable(detail));
        }
        // With credentials, connecting authenticates.
        let connected = tokio::time::timeout(
            options.connect_timeout,
            Client::connect(&cluster.endpoints, Some(connect)),
        )
        .await;
        let client = match connected {
            Err(_) => {
                let (_, detail) = probe(&cluster.endpoints, options.connect_timeout).await;
                return Err(unreachable(detail));
            }
            Ok(Ok(client)) => client,
            Ok(Err(source)) => {
                return Err(match (username, source) {
                    (Some(username), source @ etcd_client::Error::GRpcStatus(_)) => {
                        ConnectError::Auth {
                            endpoints,
                            username,
                            source,
                        }
                    }
                    (_, source) => ConnectError::Client { endpoints, source },
                });
            }
        };
        let prefix = format!("{}/", cluster.prefix);
        let first = retrying(options.connect_timeout, || {
            let mut client = client.clone();
            let options = GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_limit(1);
            let key = prefix.clone();
            async move { client.get(key, Some(options)).await }
        })
        .await;
        match first {
            Ok(_) => {}
            // No answer and no error (something that is not etcd holds the
            // port, or etcd has no leader): what each endpoint does.
            Err(RequestError::Timeout { last: None, .. }) => {
                let (_, detail) = probe(&cluster.endpoints, options.connect_timeout).await;
                return Err(unreachable(detail));
            }
            Err(source) if cluster.tls.is_some() => {
                return Err(ConnectError::Tls { endpoints, source });
            }
            Err(source) => return Err(ConnectError::Request { endpoints, source }),
        }
        let session = Session::new(client.clone(), cluster.lease_ttl, options.request_timeout);
        let (renewing_tx, renewing) = channel::channel(Reachability::Connecting);
        let renewals = tokio::spawn(renew(Arc::clone(&session), node.clone(), renewing_tx));
        tracing::info!(%endpoints, %node, prefix = %cluster.prefix, "connected to the etcd registry");
        Ok(Etcd {
            inner: Arc::new(Inner {
                client,
                prefix: cluster.prefix.clone(),
                node,
                advertise: cluster.advertise.clone(),
                options,
                session,
                renewals,
                renewing,
                applied: tokio::sync::Mutex::default(),
            }),
        })
    }

    /// The address at which other nodes reach an instance of this node
    /// listening on `port` (the advertised host, bracketed if IPv6).
    pub fn address(&self, port: u16) -> UpstreamAddr {
        let host = &self.inner.advertise;
        let text = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        text.parse()
            .expect("an advertised host validated by config and a port make an address")
    }

    /// Like [`Registry::discover`], but publishes `known` (a set read
    /// earlier) at once and catches up from its revision; if that revision
    /// was compacted meanwhile, a fresh read replaces it.
    pub fn discover_from(&self, service: &Name, known: Members) -> Discovery {
        let inner = &self.inner;
        let timeout = inner.options.request_timeout;
        watch::discover(
            inner.client.clone(),
            &inner.prefix,
            service,
            timeout,
            Some(known),
        )
    }

    /// Whether this node's lease is being renewed: `Unreachable` since the
    /// first renewal that failed (its instances vanish from the registry if
    /// that lasts the TTL; they are registered again on reconnect).
    pub fn renewals(&self) -> channel::Receiver<Reachability> {
        self.inner.renewing.clone()
    }

    /// Stops renewing and revokes this node's lease: every instance it
    /// registered disappears from the registry at once. For the end of the
    /// process; no clone registers anything afterwards.
    pub async fn close(&self) -> Result<(), RequestError> {
        self.inner.renewals.abort();
        self.inner.session.revoke().await
    }
}

impl Registry for Etcd {
    fn node(&self) -> &Name {
        &self.inner.node
    }

    async fn register(&self, instance: Registrant) -> Result<InstanceKey, RegisterError> {
        let key = InstanceKey {
            service: instance.service.clone(),
            node: self.inner.node.clone(),
            id: instance.id,
        };
        let value = Instance {
            service: instance.service,
            version: instance.version,
            address: instance.address,
            node: self.inner.node.clone(),
            state: instance.state,
            weight: instance.weight.clamp(1, crate::MAX_WEIGHT),
            registered_at: whole_seconds(std::time::SystemTime::now()),
        };
        let text = key.key(&self.inner.prefix);
        match self.inner.session.put(text.clone(), value.to_json()).await {
            Ok(()) => Ok(key),
            Err(source) => Err(RegisterError {
                action: Action::Register,
                key: text,
                source,
            }),
        }
    }

    async fn deregister(&self, key: &InstanceKey) -> Result<i64, RegisterError> {
        let text = key.key(&self.inner.prefix);
        self.inner
            .session
            .delete(&text)
            .await
            .map_err(|source| RegisterError {
                action: Action::Deregister,
                key: text,
                source,
            })
    }

    fn discover(&self, service: &Name) -> Discovery {
        let inner = &self.inner;
        let timeout = inner.options.request_timeout;
        watch::discover(inner.client.clone(), &inner.prefix, service, timeout, None)
    }
}

/// Renews the lease every third of its TTL until aborted, and says whether
/// renewals succeed.
async fn renew(session: Arc<Session>, node: Name, renewing: channel::Sender<Reachability>) {
    let mut ticks = tokio::time::interval(session.renew_every());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match session.renew().await {
            Ok(()) => {
                renewing.send_if_modified(|r| {
                    if matches!(r, Reachability::Unreachable { .. }) {
                        tracing::info!(%node, "registry lease renewed again");
                    }
                    let changed = *r != Reachability::Reachable;
                    *r = Reachability::Reachable;
                    changed
                });
            }
            Err(e) => {
                renewing.send_if_modified(|r| {
                    let since = match r {
                        Reachability::Unreachable { since, .. } => *since,
                        _ => {
                            tracing::warn!(%node, error = %e, "could not renew the registry lease; retrying");
                            std::time::SystemTime::now()
                        }
                    };
                    let newly = !matches!(r, Reachability::Unreachable { .. });
                    let reason = e.to_string();
                    *r = Reachability::Unreachable { since, reason };
                    newly
                });
            }
        }
    }
}

/// The registration time as the value stores it (whole seconds), so that a
/// value read back equals the one written.
fn whole_seconds(time: std::time::SystemTime) -> std::time::SystemTime {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::time::UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

/// This host's name, as the node name when `node` is not set.
fn host_name() -> Result<Name, ConnectError> {
    let text =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(ConnectError::Hostname)?;
    text.trim().parse().map_err(ConnectError::InvalidNode)
}

/// The client's TLS settings: etcd's CA and this node's certificate, read
/// now (a missing file is said at start; a file that is not PEM, when the
/// client is set up).
fn tls_options(tls: &ClusterTls) -> Result<TlsOptions, ConnectError> {
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ConnectError::TlsFile {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA", &tls.ca)?));
    if let Some(client) = &tls.client {
        let cert = read("client certificate", &client.cert)?;
        let key = read("client key", &client.key)?;
        options = options.identity(Identity::from_pem(cert, key));
    }
    Ok(options)
}

/// Reads every file `cluster` names (the password's file or variable, the
/// TLS files) without connecting: what `baton check` can say before a
/// start.
pub fn check_files(cluster: &Cluster) -> Result<(), ConnectError> {
    if let Some(credentials) = &cluster.credentials {
        read_password(&credentials.password)?;
    }
    if let Some(tls) = &cluster.tls {
        tls_options(tls)?;
    }
    Ok(())
}

fn read_password(password: &Password) -> Result<String, ConnectError> {
    match password {
        Password::Env(name) => {
            std::env::var(name).map_err(|_| ConnectError::PasswordEnv { name: name.clone() })
        }
        Password::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned()),
            Err(source) => Err(ConnectError::PasswordFile {
                path: path.clone(),
                source,
            }),
        },
    }
}
