//! The data plane's view of a config: one immutable [`Snapshot`] (routers
//! and settings per listener, pools, settings) built by the control plane
//! and published by an atomic swap. A request holds the snapshot it started
//! with.
//!
//! The [`Registry`] keeps what must outlive a snapshot — each member's
//! health (and stats), its pooled connections and its active checker —
//! keyed by (pool, member), so a reload that keeps a member keeps its state,
//! a new member starts unverified, and a removed one has its idle
//! connections closed at once. Each pool's client-side stats, pause gate,
//! queue (requests waiting for a member's connection) and the link through
//! which its members' checkers see its latest snapshot are kept the same
//! way, keyed by pool name, and the TLS client configs of HTTPS pools by
//! their settings.

use std::collections::HashMap;
use std::sync::Arc;

use balance::{
    ActiveHandle, MemberHealth, MemberSpec, PassiveConfig, Peers, Policy, Pool, Queue, QueueBounds,
    Stats,
};
use http::{HeaderName, HeaderValue};
use router::Router;
use tokio::task::JoinHandle;

use crate::access_log::AccessLog;
use crate::forward::Upstreams;
use crate::headers::Trust;
use crate::pause::Gate;
use crate::route_stats::RouteStats;
use crate::upstream::{ConnSettings, MemberConns};
use crate::upstream_tls::{ClientConfigs, MemberTls};

/// What a route leads to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub pool: usize,
    /// The route's index in the config (file order), into
    /// [`Snapshot::routes`].
    pub route: usize,
}

/// Per-pool request settings the service needs besides `Upstreams`.
pub(crate) struct PoolSettings {
    pub upstream_host: config::UpstreamHost,
}

/// What a listener does with requests, besides routing them (by name).
pub(crate) struct ListenerSettings {
    /// Largest request body (413 above it).
    pub max_body: u64,
    /// Longest wait for the next bytes of a request body (408 after it).
    pub body_read_timeout: std::time::Duration,
    /// How much of a request body is read before a member is picked.
    pub body_buffer: usize,
    /// `Strict-Transport-Security` for every response, when the listener
    /// has `[listener.tls]` with `hsts` (sent on TLS connections only).
    pub hsts: Option<HeaderValue>,
    /// Redirect plain-HTTP requests to `https://` on this port.
    pub redirect_https: Option<u16>,
}

/// One published configuration.
pub(crate) struct Snapshot {
    pub routers: foldhash::HashMap<Arc<str>, Router<Target>>,
    pub pools: Vec<(Upstreams, PoolSettings)>,
    pub trust: Trust,
    pub request_id: HeaderName,
    pub listeners: foldhash::HashMap<Arc<str>, ListenerSettings>,
    pub access_log: Option<Arc<AccessLog>>,
    /// Each route's counters, by its index in the config.
    pub routes: Vec<Arc<RouteStats>>,
}

/// A config the routers refused (errors already formatted).
#[derive(Debug)]
pub struct BuildErrors(pub Vec<String>);

struct Entry {
    health: Arc<MemberHealth>,
    conns: Arc<MemberConns>,
    conn_settings: ConnSettings,
    /// The active check, its settings and the TLS it probes over.
    check: Option<(config::HealthCheck, Option<MemberTls>, ActiveHandle)>,
    watcher: JoinHandle<()>,
}

/// Pool state that survives reloads, while the config has the pool.
pub(crate) struct PoolEntry {
    pub stats: Arc<Stats>,
    pub gate: Arc<Gate>,
    pub queue: Arc<Queue>,
    /// The latest snapshot of the pool, for its members' active checkers.
    pub peers: Arc<Peers>,
}

impl PoolEntry {
    fn new(pool: &str) -> PoolEntry {
        PoolEntry {
            stats: Arc::default(),
            gate: Arc::default(),
            queue: Arc::new(Queue::new(pool, QueueBounds::default())),
            peers: Peers::new(),
        }
    }
}

/// Member and pool state that survives reloads.
#[derive(Default)]
pub(crate) struct Registry {
    members: HashMap<(String, String), Entry>,
    pools: HashMap<String, PoolEntry>,
    /// Each route's counters by its label, for the routes of the current
    /// config.
    /// (label → pool, counters).
    routes: HashMap<String, (String, Arc<RouteStats>)>,
    access_log: Option<(config::AccessLog, Arc<AccessLog>)>,
    /// The TLS client configs of the current snapshot's HTTPS pools.
    client_configs: ClientConfigs,
    started: bool,
    /// Members whose health was already checked by the caller (an instance
    /// that passed its readiness probes): they start healthy when added.
    verified: std::collections::HashSet<(String, String)>,
    /// Members the last build removed, whose streams are ended once the
    /// snapshot without them is published ([`Registry::end_departed`]).
    departed: Vec<Arc<MemberConns>>,
}

impl Registry {
    /// Builds the snapshot for `cfg`, reusing member state where the member
    /// is unchanged. Nothing is changed when the routers refuse the config.
    pub(crate) fn build(&mut self, cfg: &config::Config) -> Result<Snapshot, BuildErrors> {
        let pool_index: HashMap<&str, usize> = cfg
            .pools
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let routers = build_routers(cfg, &pool_index)?;
        let tls = self.client_configs.prepare(cfg).map_err(BuildErrors)?;
        let access_log = self.access_log(cfg).map_err(|e| BuildErrors(vec![e]))?;

        let mut keep: HashMap<(String, String), Entry> = HashMap::new();
        let mut keep_pools: HashMap<String, PoolEntry> = HashMap::new();
        let mut pools = Vec::with_capacity(cfg.pools.len());
        for ((name, pool), pool_tls) in cfg.pools.iter().zip(tls.pools) {
            let pool_entry = self
                .pools
                .remove(name)
                .unwrap_or_else(|| PoolEntry::new(name));
            pool_entry.queue.set_bounds(QueueBounds {
                length: pool.forward.queue_length as usize,
                timeout: pool.forward.queue_timeout,
            });
            let mut members = Vec::with_capacity(pool.members.len());
            let mut conns = Vec::with_capacity(pool.members.len());
            for (i, m) in pool.members.iter().enumerate() {
                let key = (name.clone(), m.address.authority.clone());
                let settings = ConnSettings {
                    idle_timeout: pool.forward.idle_timeout,
                    connect_timeout: pool.forward.connect_timeout,
                    tls: pool_tls.as_ref().map(|t| t[i].clone()),
                };
                let entry = match (keep.remove(&key), self.members.remove(&key)) {
                    // A member listed twice in one pool shares its state.
                    (Some(e), _) | (None, Some(e)) => {
                        self.refresh(e, &m.address.authority, pool, settings, &pool_entry)
                    }
                    (None, None) => {
                        let verified = self.verified.remove(&key);
                        let entry = &pool_entry;
                        self.create(&m.address.authority, pool, settings, verified, entry)
                    }
                };
                members.push((
                    MemberSpec {
                        key: m.address.authority.clone(),
                        weight: m.weight,
                        max_connections: pool.forward.max_connections_per_member as usize,
                    },
                    entry.health.clone(),
                ));
                conns.push(entry.conns.clone());
                keep.insert(key, entry);
            }
            let policy = match pool.forward.balance {
                config::Balance::WeightedRoundRobin => Policy::WeightedRoundRobin,
                config::Balance::LeastRequests => Policy::LeastRequests,
            };
            let passive = pool.passive.as_ref().map(|p| PassiveConfig {
                consecutive_failures: p.consecutive_failures,
                ejection_time: p.ejection_time,
                max_ejection_time: p.max_ejection_time,
            });
            let balance =
                Pool::with_queue(name, policy, members, passive, pool_entry.queue.clone());
            pool_entry.peers.set(&balance);
            pools.push((
                Upstreams {
                    name: name.clone(),
                    balance,
                    conns,
                    stats: pool_entry.stats.clone(),
                    gate: pool_entry.gate.clone(),
                    header_timeout: pool.forward.header_timeout,
                    total_timeout: pool.forward.total_timeout,
                    body_timeout: pool.forward.body_timeout,
                    retry_non_idempotent: pool.forward.retry_non_idempotent,
                    retry_server_errors: pool.forward.retry_server_errors,
                    host_from_member: pool.forward.upstream_host == config::UpstreamHost::Member,
                },
                PoolSettings {
                    upstream_host: pool.forward.upstream_host.clone(),
                },
            ));
            keep_pools.insert(name.clone(), pool_entry);
        }
        // A pool removed from the config forgets its stats and its pause;
        // its held and queued requests go on with the snapshot they started
        // with.
        for (pool, entry) in self.pools.drain() {
            if entry.gate.resume() {
                tracing::info!(%pool, "paused pool removed: releasing its held requests");
            }
            entry.queue.wake_all();
        }
        self.pools = keep_pools;
        // Whatever is left was removed from the config.
        for ((pool, member), entry) in self.members.drain() {
            tracing::info!(%pool, %member, "member removed: closing its idle connections and ending its streams");
            entry.conns.close_idle();
            self.departed.push(entry.conns);
            entry.watcher.abort();
        }
        self.members = keep;
        self.client_configs = tls.cache;
        self.started = true;
        // Counters follow a route by its label across reloads; a route
        // removed forgets them.
        let mut routes = HashMap::with_capacity(cfg.routes.len());
        let route_stats = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let label = crate::route_stats::label(r, i);
                let stats = self.routes.remove(&label).map(|(_, s)| s);
                let stats = stats.unwrap_or_default();
                let pool = r.upstream.pool_name().into_owned();
                routes.insert(label, (pool, stats.clone()));
                stats
            })
            .collect();
        self.routes = routes;

        Ok(Snapshot {
            routers,
            pools,
            trust: Trust {
                networks: cfg.proxy.trusted_proxies.clone(),
            },
            request_id: cfg.proxy.request_id_header.clone(),
            listeners: cfg
                .listeners
                .iter()
                .map(|l| (Arc::from(l.name.as_str()), listener_settings(l)))
                .collect(),
            access_log,
            routes: route_stats,
        })
    }

    /// The shared health (and in-flight count) of a member, if it exists.
    pub(crate) fn member_health(&self, pool: &str, member: &str) -> Option<Arc<MemberHealth>> {
        self.members
            .get(&(pool.to_owned(), member.to_owned()))
            .map(|e| e.health.clone())
    }

    /// Every member of the current config with its shared health and
    /// whether active checks judge it.
    pub(crate) fn members_checked(
        &self,
    ) -> impl Iterator<Item = (&str, &str, &Arc<MemberHealth>, bool)> {
        self.members.iter().map(|((pool, member), e)| {
            (pool.as_str(), member.as_str(), &e.health, e.check.is_some())
        })
    }

    /// The state of a pool of the current config.
    pub(crate) fn pool(&self, pool: &str) -> Option<&PoolEntry> {
        self.pools.get(pool)
    }

    /// Every pool of the current config, by name.
    pub(crate) fn pools(&self) -> impl Iterator<Item = (&str, &PoolEntry)> {
        self.pools
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
    }

    /// Every route of the current config: its label, its pool and its
    /// counters.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&str, &str, &Arc<RouteStats>)> {
        self.routes
            .iter()
            .map(|(label, (pool, s))| (label.as_str(), pool.as_str(), s))
    }

    /// Every member of the current config: its pool, its address, its
    /// shared health.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&str, &str, &Arc<MemberHealth>)> {
        self.members
            .iter()
            .map(|((pool, member), e)| (pool.as_str(), member.as_str(), &e.health))
    }

    /// Ends the streams of the members the last build removed: called once
    /// the snapshot without them is published, so that a client their end
    /// sends away (a WebSocket's close with 1001, an event stream's end)
    /// reconnects to the new config, never to the member that is leaving.
    pub(crate) fn end_departed(&mut self) {
        for conns in self.departed.drain(..) {
            conns.leave();
        }
    }

    /// Gives every queued request a turn: called once a new snapshot is
    /// published, whose pools may have other members or more room.
    pub(crate) fn wake_queues(&self) {
        for entry in self.pools.values() {
            entry.queue.wake_all();
        }
    }

    /// Marks a member as already checked: added by the next build, it starts
    /// healthy instead of waiting for the proxy's own checks.
    pub(crate) fn verify(&mut self, pool: &str, member: &str) {
        self.verified.insert((pool.to_owned(), member.to_owned()));
    }

    fn create(
        &self,
        key: &str,
        pool: &config::Pool,
        settings: ConnSettings,
        verified: bool,
        pool_entry: &PoolEntry,
    ) -> Entry {
        // Members present at start-up are trusted like nginx does; one added
        // by a reload must pass its checks before it gets traffic, unless the
        // caller has just checked it (an instance that passed readiness).
        let healthy = !self.started || pool.health.is_none() || verified;
        let health = MemberHealth::new(healthy);
        let conns = Arc::new(MemberConns::new(key, settings.clone()));
        let watcher = spawn_watcher(health.clone(), conns.clone(), pool_entry.queue.clone());
        let peers = &pool_entry.peers;
        let check = pool
            .health
            .as_ref()
            .map(|h| start_check(key, &health, h, settings.tls.as_ref(), peers));
        Entry {
            health,
            conns,
            conn_settings: settings,
            check,
            watcher,
        }
    }

    fn refresh(
        &self,
        mut entry: Entry,
        key: &str,
        pool: &config::Pool,
        settings: ConnSettings,
        pool_entry: &PoolEntry,
    ) -> Entry {
        let queue = &pool_entry.queue;
        if entry.conn_settings != settings {
            entry.conns.close_idle();
            entry.conns = Arc::new(MemberConns::new(key, settings.clone()));
            entry.conn_settings = settings;
            entry.watcher.abort();
            let watcher = spawn_watcher(entry.health.clone(), entry.conns.clone(), queue.clone());
            entry.watcher = watcher;
        }
        let tls = entry.conn_settings.tls.as_ref();
        let same_check = match (&entry.check, &pool.health) {
            (Some((old, old_tls, _)), Some(new)) => old == new && old_tls.as_ref() == tls,
            (None, None) => true,
            _ => false,
        };
        if !same_check {
            entry.check = pool
                .health
                .as_ref()
                .map(|h| start_check(key, &entry.health, h, tls, &pool_entry.peers));
            if pool.health.is_none() {
                // No checks any more: nothing will ever clear a failed flag.
                entry.health.set_healthy(true);
            }
        }
        entry
    }

    fn access_log(&mut self, cfg: &config::Config) -> Result<Option<Arc<AccessLog>>, String> {
        let Some(want) = &cfg.access_log else {
            self.access_log = None;
            return Ok(None);
        };
        if let Some((have, log)) = &self.access_log
            && have == want
        {
            return Ok(Some(log.clone()));
        }
        let (path, shown) = match &want.target {
            config::AccessLogTarget::Stdout => ("-".to_owned(), "stdout".to_owned()),
            config::AccessLogTarget::File(p) => (p.display().to_string(), p.display().to_string()),
        };
        let format = match want.format {
            config::AccessLogFormat::Combined => crate::access_log::Format::Combined,
            config::AccessLogFormat::Json => crate::access_log::Format::Json,
        };
        let log = Arc::new(
            AccessLog::open(&path, format)
                .map_err(|e| format!("could not open the access log {shown}: {e}"))?,
        );
        self.access_log = Some((want.clone(), log.clone()));
        Ok(Some(log))
    }
}

/// Starts the active checks of a member of the pool `peers` links to; over
/// TLS for an HTTPS member.
fn start_check(
    key: &str,
    health: &Arc<MemberHealth>,
    h: &config::HealthCheck,
    tls: Option<&MemberTls>,
    peers: &Arc<Peers>,
) -> (config::HealthCheck, Option<MemberTls>, ActiveHandle) {
    let handle = balance::spawn_active_over(
        key.to_owned(),
        health.clone(),
        crate::probe::active_check(h, &h.path),
        tls.map(MemberTls::probe_handshake),
        Some(peers.clone()),
    );
    (h.clone(), tls.cloned(), handle)
}

fn listener_settings(l: &config::Listener) -> ListenerSettings {
    let hsts = l.tls.as_ref().and_then(|t| t.hsts.as_ref());
    ListenerSettings {
        max_body: l.max_body_bytes,
        body_read_timeout: l.body_read_timeout,
        body_buffer: l.body_buffer_bytes,
        hsts: hsts.and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
        redirect_https: l.redirect_https,
    }
}

/// Closes a member's idle connections the moment it becomes unavailable;
/// when it becomes available, gives the requests queued in its pool a turn.
fn spawn_watcher(
    health: Arc<MemberHealth>,
    conns: Arc<MemberConns>,
    queue: Arc<Queue>,
) -> JoinHandle<()> {
    let mut rx = health.subscribe();
    tokio::spawn(async move {
        loop {
            if rx.borrow_and_update().is_available() {
                conns.reopen();
                queue.wake_all();
            } else {
                conns.close_idle();
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

fn build_routers(
    cfg: &config::Config,
    pool_index: &HashMap<&str, usize>,
) -> Result<foldhash::HashMap<Arc<str>, Router<Target>>, BuildErrors> {
    // A service route is served by the pool `service:NAME`, which only the
    // deploy engine adds to the config.
    let mut errors = Vec::new();
    let mut targets = Vec::with_capacity(cfg.routes.len());
    for r in cfg.routes.iter() {
        match &r.upstream {
            config::Upstream::Pool(name) => targets.push(pool_index[name.as_str()]),
            config::Upstream::Service(name) => {
                match pool_index.get(r.upstream.pool_name().as_ref()) {
                    Some(&pool) => targets.push(pool),
                    None => {
                        let message = format!(
                            "service {name}: services need the deploy engine, which is not running"
                        );
                        if !errors.contains(&message) {
                            errors.push(message);
                        }
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(BuildErrors(errors));
    }
    let mut routers = foldhash::HashMap::default();
    for listener in &cfg.listeners {
        let specs: Vec<router::RouteSpec<Target>> = cfg
            .routes
            .iter()
            .zip(&targets)
            .enumerate()
            .filter(|(_, (r, _))| r.listeners.is_empty() || r.listeners.contains(&listener.name))
            .map(|(route, (r, &pool))| router::RouteSpec {
                host: r.host.as_ref().map(|h| match h {
                    config::HostMatch::Exact(s) => router::HostMatch::Exact(s.clone()),
                    config::HostMatch::Wildcard(s) => {
                        router::HostMatch::Wildcard(s.trim_start_matches('.').to_owned())
                    }
                }),
                path: r.path.as_ref().map(|p| match p {
                    config::PathMatch::Prefix(s) => router::PathMatch::Prefix(s.clone()),
                    config::PathMatch::Pattern(s) => router::PathMatch::Pattern(s.clone()),
                    config::PathMatch::Regex(s) => router::PathMatch::Regex(s.clone()),
                }),
                methods: r.methods.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
                target: Target { pool, route },
            })
            .collect();
        match Router::new(specs) {
            Ok(router) => {
                routers.insert(Arc::from(listener.name.as_str()), router);
            }
            Err(errs) => errors.extend(
                errs.iter()
                    .map(|e| format!("listener {}: {e}", listener.name)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(routers)
    } else {
        Err(BuildErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::config;

    /// A member a reload removes has its streams ended only once the
    /// snapshot without it is published: a client their end sends away
    /// (a WebSocket's close with 1001) reconnects to the new config, not to
    /// the leaving member, whose new streams would be ended at once.
    #[tokio::test]
    async fn a_removed_member_s_streams_end_once_the_snapshot_without_it_is_published() {
        let old: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let new: std::net::SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut registry = Registry::default();
        registry.build(&config(&[("app", &[old])], "app")).unwrap();
        let key = ("app".to_owned(), old.to_string());
        let leaving = registry.members[&key].conns.leaving();
        let snapshot = registry.build(&config(&[("app", &[new])], "app")).unwrap();
        assert!(
            !*leaving.borrow(),
            "its streams ended before it left the routing"
        );
        drop(snapshot);
        registry.end_departed();
        assert!(*leaving.borrow());

        // `Proxy::reload` publishes, then ends them.
        let proxy = crate::Proxy::new(&config(&[("app", &[old])], "app")).unwrap();
        let leaving = proxy.registry.lock().unwrap().members[&key].conns.leaving();
        proxy.reload(&config(&[("app", &[new])], "app")).unwrap();
        assert!(*leaving.borrow());
    }
}
