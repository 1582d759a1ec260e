//! What changes between two validated configs ([`diff`]): listeners,
//! routes, pools, services (each changed field old → new, and what the
//! deploy engine does about it: [`ServicePlan`]), certificates and the other
//! settings. `baton diff` prints it; the deploy engine's reload follows the
//! same [`ServicePlan`], so what `baton diff` announces is what a reload
//! does.
//!
//! Pure: compares two values and never reads a file (a certificate whose
//! *contents* changed under the same path is not a config change: the
//! files are watched and re-read by the `tls` crate).

use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display};

use serde::Serialize;

use crate::{Config, Route, Runner, Service, Upstream, Version};

/// Every difference between two configs; [`Diff::is_empty`] when applying
/// the new one would change nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// `[[listener]]` by name.
    pub listeners: Vec<Item>,
    /// `[[route]]`, each named by its name or what it matches.
    pub routes: Vec<Item>,
    /// `[pool.NAME]`.
    pub pools: Vec<Item>,
    /// `[service.NAME]`.
    pub services: Vec<ServiceDiff>,
    /// Certificate files of TLS listeners (by listener).
    pub certificates: Vec<Item>,
    /// `[proxy]`, `[access_log]`, `[acme]`, `[cluster]`.
    pub settings: Vec<Item>,
}

/// One thing added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Its name (or description, for an unnamed route).
    pub name: String,
    /// What happens to it.
    pub change: Change,
    /// The fields that change (empty unless `change` is `Changed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

/// Whether a thing comes, goes or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the new config.
    Added,
    /// Only in the old one.
    Removed,
    /// In both, different.
    Changed,
}

impl Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        })
    }
}

/// One field, old → new, as the file would spell it (roughly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Its key (`command`, `health`, `rolling.max_surge` …).
    pub name: String,
    /// Before.
    pub old: String,
    /// After.
    pub new: String,
}

/// One service's change and what the deploy engine does about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    /// The service.
    pub name: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The fields that change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// What happens to a changed service (`None` for one added or removed:
    /// it is started, or taken out of the routes and stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ServicePlan>,
}

/// What a changed service's reload takes. Settings the proxy reads
/// (forwarding, passive ejection, the deploy timeout, the strategies'
/// settings) apply at once whatever else happens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServicePlan {
    /// A deploy with the service's strategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// Instances from → to, without a deploy (or after a rolling one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<(u32, u32)>,
}

impl ServicePlan {
    /// Nothing but settings the proxy reads: no instance is touched.
    pub fn in_place(&self) -> bool {
        self.deploy.is_none() && self.scale.is_none()
    }
}

/// The deploy a changed service needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deploy {
    /// The file's `version` changed: a deploy of this one. `None`: the
    /// version serving now (the state's, which `baton deploy` may have
    /// moved away from the file's) is deployed again with the new settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// External services: the targets change.
    pub targets: bool,
    /// The change reaches what a running set of instances was started with
    /// (the readiness check, timeouts, restart policy, socket mode, rolling
    /// bounds), or the kind of service: a rolling deploy, which replaces
    /// instances inside the running set, cannot apply it, so a new set is
    /// started and switched to at once (blue-green) instead.
    pub new_set: bool,
}

/// The differences between `old` and `new`.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut out = Diff::default();
    let listeners = |c: &Config| -> BTreeMap<String, crate::Listener> {
        c.listeners
            .iter()
            .map(|l| (l.name.clone(), l.clone()))
            .collect()
    };
    out.listeners = by_name(&listeners(old), &listeners(new), |o, n| {
        let mut f = Fields::default();
        f.display("address", &o.address, &n.address);
        f.debug("max_connections", &o.max_connections, &n.max_connections);
        f.duration(
            "header_read_timeout",
            o.header_read_timeout,
            n.header_read_timeout,
        );
        f.debug("max_header_bytes", &o.max_header_bytes, &n.max_header_bytes);
        f.debug("max_body_bytes", &o.max_body_bytes, &n.max_body_bytes);
        f.duration(
            "keepalive_timeout",
            o.keepalive_timeout,
            n.keepalive_timeout,
        );
        let settings = |t: &Option<crate::Tls>| {
            t.as_ref().map(|t| crate::Tls {
                certificates: Vec::new(),
                ..t.clone()
            })
        };
        f.debug("tls", &settings(&o.tls), &settings(&n.tls));
        f.debug("redirect_https", &o.redirect_https, &n.redirect_https);
        f.0
    });
    out.certificates = certificates(old, new);
    out.routes = routes(&old.routes, &new.routes);
    out.pools = by_name(&old.pools, &new.pools, |o, n| {
        let mut f = Fields::default();
        let members = |p: &crate::Pool| -> Vec<String> {
            p.members
                .iter()
                .map(|m| format!("{} (weight {})", m.address.authority, m.weight))
                .collect()
        };
        f.list("members", &members(o), &members(n));
        f.debug("discover", &o.discover, &n.discover);
        f.debug("forward", &o.forward, &n.forward);
        f.debug("health", &o.health, &n.health);
        f.debug("passive", &o.passive, &n.passive);
        f.0
    });
    out.services = services(&old.services, &new.services);
    let mut f = Fields::default();
    f.debug("proxy", &old.proxy, &new.proxy);
    f.debug("access_log", &old.access_log, &new.access_log);
    f.debug("acme", &old.acme, &new.acme);
    f.debug("cluster", &old.cluster, &new.cluster);
    out.settings =
        f.0.into_iter()
            .map(|field| Item {
                name: field.name.clone(),
                change: Change::Changed,
                fields: vec![field],
            })
            .collect();
    out
}

impl Diff {
    /// Applying the new config would change nothing.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
            && self.routes.is_empty()
            && self.pools.is_empty()
            && self.services.is_empty()
            && self.certificates.is_empty()
            && self.settings.is_empty()
    }
}

/// The services' differences, each changed one with its plan.
pub fn services(
    old: &BTreeMap<String, Service>,
    new: &BTreeMap<String, Service>,
) -> Vec<ServiceDiff> {
    let mut out = Vec::new();
    for (name, o) in old {
        match new.get(name) {
            None => out.push(ServiceDiff {
                name: name.clone(),
                change: Change::Removed,
                fields: Vec::new(),
                plan: None,
            }),
            Some(n) if n != o => out.push(ServiceDiff {
                name: name.clone(),
                change: Change::Changed,
                fields: service_fields(o, n),
                plan: Some(plan(o, n)),
            }),
            Some(_) => {}
        }
    }
    for name in new.keys().filter(|name| !old.contains_key(*name)) {
        out.push(ServiceDiff {
            name: name.clone(),
            change: Change::Added,
            fields: Vec::new(),
            plan: None,
        });
    }
    out
}

/// What reloading `old` as `new` (the same service) takes.
pub fn plan(old: &Service, new: &Service) -> ServicePlan {
    match (&old.runner, &new.runner) {
        (Runner::Supervised(o), Runner::Supervised(n)) => {
            // What the running set's instances were started with.
            let set = old.health != new.health
                || old.ready_timeout != new.ready_timeout
                || old.drain_timeout != new.drain_timeout
                || old.rolling != new.rolling
                || o.socket != n.socket
                || o.restart != n.restart;
            let version = (o.version != n.version).then(|| n.version.clone());
            let command = o.command != n.command || o.env != n.env || o.cwd != n.cwd;
            let scale = (o.instances != n.instances).then_some((o.instances, n.instances));
            if set || command || version.is_some() {
                let deploy = Deploy {
                    version,
                    targets: false,
                    new_set: set,
                };
                // A new set starts with the new number of instances; a
                // rolling deploy keeps the set's and scales after.
                let scale = scale.filter(|_| !set && new.strategy == crate::Strategy::Rolling);
                ServicePlan {
                    deploy: Some(deploy),
                    scale,
                }
            } else {
                ServicePlan {
                    deploy: None,
                    scale,
                }
            }
        }
        (Runner::External(o), Runner::External(n)) => ServicePlan {
            deploy: (o.targets != n.targets).then_some(Deploy {
                version: None,
                targets: true,
                new_set: false,
            }),
            scale: None,
        },
        // Supervised ↔ external: the new kind's set replaces the old one.
        (_, n) => ServicePlan {
            deploy: Some(Deploy {
                version: match n {
                    Runner::Supervised(s) => Some(s.version.clone()),
                    Runner::External(_) => None,
                },
                targets: matches!(n, Runner::External(_)),
                new_set: true,
            }),
            scale: None,
        },
    }
}

fn service_fields(o: &Service, n: &Service) -> Vec<Field> {
    let mut f = Fields::default();
    match (&o.runner, &n.runner) {
        (Runner::Supervised(a), Runner::Supervised(b)) => {
            f.list("command", &a.command, &b.command);
            let env = |s: &crate::Supervised| -> Vec<String> {
                s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
            };
            f.list("env", &env(a), &env(b));
            f.display_opt("cwd", &a.cwd, &b.cwd);
            f.display("version", &a.version, &b.version);
            f.debug("instances", &a.instances, &b.instances);
            f.debug("socket", &a.socket, &b.socket);
            f.debug("restart", &a.restart, &b.restart);
        }
        (Runner::External(a), Runner::External(b)) => {
            let targets = |e: &crate::External| -> Vec<String> {
                e.targets.iter().map(|t| t.authority.clone()).collect()
            };
            f.list("targets", &targets(a), &targets(b));
        }
        (a, b) => f.push("kind", kind(a), kind(b)),
    }
    f.debug("health", &o.health, &n.health);
    f.duration("ready_timeout", o.ready_timeout, n.ready_timeout);
    f.duration("drain_timeout", o.drain_timeout, n.drain_timeout);
    f.duration("deploy_timeout", o.deploy_timeout, n.deploy_timeout);
    f.display("strategy", &o.strategy, &n.strategy);
    f.debug("rolling", &o.rolling, &n.rolling);
    f.debug("blue_green", &o.blue_green, &n.blue_green);
    f.debug("canary", &o.canary, &n.canary);
    f.debug("forward", &o.forward, &n.forward);
    f.debug("passive", &o.passive, &n.passive);
    f.0
}

fn kind(r: &Runner) -> &'static str {
    match r {
        Runner::Supervised(_) => "supervised",
        Runner::External(_) => "external",
    }
}

fn certificates(old: &Config, new: &Config) -> Vec<Item> {
    let files = |c: &Config| -> BTreeMap<String, Vec<String>> {
        c.listeners
            .iter()
            .filter_map(|l| {
                let t = l.tls.as_ref()?;
                let mut files: Vec<String> = t
                    .certificates
                    .iter()
                    .map(|c| format!("{} + {}", c.cert.display(), c.key.display()))
                    .collect();
                if t.acme {
                    files.push("[acme]".to_owned());
                }
                Some((l.name.clone(), files))
            })
            .collect()
    };
    by_name(&files(old), &files(new), |o, n| {
        let mut f = Fields::default();
        f.list("certificates", o, n);
        f.0
    })
}

/// Routes are ordered (the first match wins among equals), so a change of
/// order is a change too.
fn routes(old: &[Route], new: &[Route]) -> Vec<Item> {
    let old_names: Vec<String> = old.iter().map(describe_route).collect();
    let new_names: Vec<String> = new.iter().map(describe_route).collect();
    let mut out = Vec::new();
    for name in old_names.iter().filter(|n| !new_names.contains(n)) {
        out.push(Item {
            name: name.clone(),
            change: Change::Removed,
            fields: Vec::new(),
        });
    }
    for name in new_names.iter().filter(|n| !old_names.contains(n)) {
        out.push(Item {
            name: name.clone(),
            change: Change::Added,
            fields: Vec::new(),
        });
    }
    let kept_old: Vec<&String> = old_names.iter().filter(|n| new_names.contains(n)).collect();
    let kept_new: Vec<&String> = new_names.iter().filter(|n| old_names.contains(n)).collect();
    if out.is_empty() && kept_old != kept_new {
        out.push(Item {
            name: "order".to_owned(),
            change: Change::Changed,
            fields: vec![Field {
                name: "order".to_owned(),
                old: kept_old
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                new: kept_new
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }],
        });
    }
    out
}

/// A route in one line: its name if it has one, what it matches, where it
/// goes. Two routes alike in all of that are the same route.
pub fn describe_route(r: &Route) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &r.name {
        parts.push(format!("{name}:"));
    }
    match &r.host {
        Some(crate::HostMatch::Exact(h)) => parts.push(format!("host {h}")),
        Some(crate::HostMatch::Wildcard(suffix)) => parts.push(format!("host *{suffix}")),
        None => {}
    }
    match &r.path {
        Some(crate::PathMatch::Prefix(p)) => parts.push(format!("path_prefix {p}")),
        Some(crate::PathMatch::Pattern(p)) => parts.push(format!("path {p}")),
        Some(crate::PathMatch::Regex(p)) => parts.push(format!("path_regex {p}")),
        None => {}
    }
    if !r.methods.is_empty() {
        let methods: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
        parts.push(methods.join("|"));
    }
    for h in &r.headers {
        let value = String::from_utf8_lossy(h.value.as_bytes());
        parts.push(format!("header {}={value}", h.name));
    }
    parts.push(format!("on {}", r.listeners.join(",")));
    parts.push(match &r.upstream {
        Upstream::Pool(p) => format!("→ pool {p}"),
        Upstream::Service(s) => format!("→ service {s}"),
    });
    parts.join(" ")
}

fn by_name<T: PartialEq>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    fields: impl Fn(&T, &T) -> Vec<Field>,
) -> Vec<Item> {
    let mut out = Vec::new();
    for (name, o) in old {
        match new.get(name) {
            None => out.push(Item {
                name: name.clone(),
                change: Change::Removed,
                fields: Vec::new(),
            }),
            Some(n) if n != o => out.push(Item {
                name: name.clone(),
                change: Change::Changed,
                fields: fields(o, n),
            }),
            Some(_) => {}
        }
    }
    for name in new.keys().filter(|name| !old.contains_key(*name)) {
        out.push(Item {
            name: name.clone(),
            change: Change::Added,
            fields: Vec::new(),
        });
    }
    out
}

/// Collects the fields that differ.
#[derive(Default)]
struct Fields(Vec<Field>);

impl Fields {
    fn push(&mut self, name: &str, old: impl Into<String>, new: impl Into<String>) {
        let (old, new) = (old.into(), new.into());
        if old != new {
            self.0.push(Field {
                name: name.to_owned(),
                old,
                new,
            });
        }
    }

    fn display<T: Display + PartialEq>(&mut self, name: &str, old: &T, new: &T) {
        if old != new {
            self.push(name, old.to_string(), new.to_string());
        }
    }

    fn display_opt<T: Display + PartialEq>(
        &mut self,
        name: &str,
        old: &Option<T>,
        new: &Option<T>,
    ) {
        let show = |v: &Option<T>| v.as_ref().map_or_else(|| "-".to_owned(), T::to_string);
        if old != new {
            self.push(name, show(old), show(new));
        }
    }

    fn debug<T: Debug + PartialEq>(&mut self, name: &str, old: &T, new: &T) {
        if old != new {
            self.push(name, format!("{old:?}"), format!("{new:?}"));
        }
    }

    fn duration(&mut self, name: &str, old: std::time::Duration, new: std::time::Duration) {
        if old != new {
            self.push(
                name,
                humantime::format_duration(old).to_string(),
                humantime::format_duration(new).to_string(),
            );
        }
    }

    fn list<T: Display + PartialEq>(&mut self, name: &str, old: &[T], new: &[T]) {
        let show = |v: &[T]| -> String {
            let items: Vec<String> = v.iter().map(T::to_string).collect();
            format!("[{}]", items.join(", "))
        };
        if old != new {
            self.push(name, show(old), show(new));
        }
    }
}
