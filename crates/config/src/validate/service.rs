//! Validation of `[service.NAME]`: who runs it (a supervised command with
//! its templates and version, or external targets), which keys each kind
//! accepts, and its timeouts. The parts shared with pools are `pool`'s; the
//! strategies are `strategy`'s.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::matchers::parse_upstream_addr;
use super::{Ctx, pool, strategy};
use crate::raw::RawService;
use crate::schema::SERVICE;
use crate::template::Template;
use crate::types::{
    External, Restart, Runner, Service, SocketMode, Strategy, Supervised, UpstreamAddr,
};
use crate::version::Version;

/// Variables baton sets for every instance (the `LISTEN_FDS` and `sd_notify`
/// protocols); an `env` entry must not override them.
const RESERVED_ENV: [&str; 4] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

pub(super) fn services(
    ctx: &mut Ctx<'_, '_>,
    raw: &BTreeMap<Spanned<String>, Spanned<RawService>>,
) -> Option<BTreeMap<String, Service>> {
    let mut out = Some(BTreeMap::new());
    for (name, item) in raw {
        let named = ctx.name("service", name.get_ref(), name.span());
        match (named, service(ctx, name.get_ref(), item)) {
            (true, Some(s)) => {
                if let Some(m) = &mut out {
                    m.insert(s.name.clone(), s);
                }
            }
            _ => out = None,
        }
    }
    out
}

fn service(ctx: &mut Ctx<'_, '_>, name: &str, item: &Spanned<RawService>) -> Option<Service> {
    let raw = item.get_ref();
    // Neither or both of `command` and `targets` was reported by `check`.
    // With both, the kind is unknown, so only the two values are judged, not
    // which other keys the kind allows.
    let runner = match (&raw.command, &raw.targets) {
        (Some(command), None) => supervised(ctx, name, item, command).map(Runner::Supervised),
        (None, Some(targets)) => {
            supervised_only(ctx, raw);
            external(ctx, name, targets).map(Runner::External)
        }
        (Some(command), Some(targets)) => {
            command_line(ctx, command);
            external(ctx, name, targets);
            None
        }
        (None, None) => None,
    };
    let ready_timeout = ctx.duration(&SERVICE, "ready_timeout", &raw.ready_timeout, false);
    let drain_timeout = ctx.duration(&SERVICE, "drain_timeout", &raw.drain_timeout, true);
    let deploy_timeout = ctx.duration(&SERVICE, "deploy_timeout", &raw.deploy_timeout, false);
    let strategies = Strategy::ALL.map(|s| (s.name(), s));
    let strategy = ctx.choice(&SERVICE, "strategy", &raw.strategy, &strategies);
    let rolling = strategy::rolling(ctx, raw);
    let blue_green = strategy::blue_green(ctx, raw.blue_green.as_ref());
    let canary = strategy::canary(ctx, raw.canary.as_ref());
    let forward = pool::forward(ctx, &SERVICE, &raw.forward());
    let health = raw.health.as_ref().map(|h| pool::health(ctx, h));
    let passive = raw
        .passive
        .as_ref()
        .map(|p| pool::passive(ctx, p.get_ref()));
    Some(Service {
        name: name.to_owned(),
        runner: runner?,
        forward: forward?,
        health: super::optional(health)?,
        passive: super::optional(passive)?,
        ready_timeout: ready_timeout?,
        drain_timeout: drain_timeout?,
        deploy_timeout: deploy_timeout?,
        strategy: strategy?,
        rolling: rolling?,
        blue_green: blue_green?,
        canary: canary?,
    })
}

fn supervised(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    item: &Spanned<RawService>,
    command: &Spanned<Vec<Spanned<String>>>,
) -> Option<Supervised> {
    let raw = item.get_ref();
    let command = command_line(ctx, command);
    let env = raw.env.as_ref().map_or(Some(Vec::new()), |e| env(ctx, e));
    let cwd = raw.cwd.as_ref().map(|cwd| {
        let text = cwd.get_ref();
        if text.is_empty() {
            let message = "`cwd` is empty; omit it to run in the directory baton runs in";
            ctx.error(cwd.span(), message);
            return None;
        }
        template(ctx, cwd, |e| format!("invalid `cwd` {text:?}: {e}"))
    });
    let version = match &raw.version {
        Some(v) => v
            .get_ref()
            .parse::<Version>()
            .map_err(|e| ctx.error(v.span(), e.to_string()))
            .ok(),
        None => {
            let message = format!(
                "missing key `version` in [service.{name}]: a supervised service (with `command`) starts at a version, like version = \"v1\""
            );
            ctx.error(item.span(), message);
            None
        }
    };
    let instances = ctx.int(&SERVICE, "instances", &raw.instances, 1..=1024);
    let sockets = [("inherit", SocketMode::Inherit), ("port", SocketMode::Port)];
    let socket = ctx.choice(&SERVICE, "socket", &raw.socket, &sockets);
    let restarts = [
        ("always", Restart::Always),
        ("on-failure", Restart::OnFailure),
        ("never", Restart::Never),
    ];
    let restart = ctx.choice(&SERVICE, "restart", &raw.restart, &restarts);
    if let (Some(SocketMode::Port), Some(command), Some(env)) = (socket, &command, &env) {
        let mut told = command.iter().chain(env.iter().map(|(_, v)| v));
        if !told.any(Template::uses_port) {
            let span = raw.socket.as_ref().map_or(item.span(), Spanned::span);
            let message = "with `socket = \"port\"` the app binds the port baton picks, so `{port}` must appear in `command` or `env`";
            ctx.error(span, message);
            return None;
        }
    }
    Some(Supervised {
        command: command?,
        env: env?,
        cwd: super::optional(cwd)?,
        version: version?,
        instances: u32::try_from(instances?).ok()?,
        socket: socket?,
        restart: restart?,
    })
}

/// A template from the file, or the error `message` makes of why not.
fn template(
    ctx: &mut Ctx<'_, '_>,
    value: &Spanned<String>,
    message: impl FnOnce(crate::template::TemplateError) -> String,
) -> Option<Template> {
    value
        .get_ref()
        .parse::<Template>()
        .map_err(|e| ctx.error(value.span(), message(e)))
        .ok()
}

fn command_line(
    ctx: &mut Ctx<'_, '_>,
    command: &Spanned<Vec<Spanned<String>>>,
) -> Option<Vec<Template>> {
    let Some(program) = command.get_ref().first() else {
        let message = "`command` is empty: give the program and its arguments, like [\"bin/app\", \"--port\", \"{port}\"]";
        ctx.error(command.span(), message);
        return None;
    };
    let mut out = Some(Vec::new());
    if program.get_ref().is_empty() {
        ctx.error(
            program.span(),
            "the program (the first element of `command`) is empty",
        );
        out = None;
    }
    for arg in command.get_ref() {
        let text = arg.get_ref();
        match template(ctx, arg, |e| {
            format!("invalid `command` element {text:?}: {e}")
        }) {
            Some(t) => {
                if let Some(v) = &mut out {
                    v.push(t);
                }
            }
            None => out = None,
        }
    }
    out
}

fn env(
    ctx: &mut Ctx<'_, '_>,
    map: &Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
) -> Option<Vec<(String, Template)>> {
    let mut entries: Vec<_> = map.get_ref().iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    let mut out = Some(Vec::new());
    for (name, value) in entries {
        let text = name.get_ref();
        let problem = if text.is_empty() || text.contains(['=', '\0']) {
            Some(format!(
                "invalid environment variable name {text:?}: not empty, without '=' or NUL"
            ))
        } else if RESERVED_ENV.contains(&text.as_str()) {
            Some(format!(
                "`{text}` is set by baton for every instance (the socket and readiness protocols) and cannot be given in `env`"
            ))
        } else {
            None
        };
        if let Some(message) = &problem {
            ctx.error(name.span(), message.clone());
        }
        let value = template(ctx, value, |e| {
            format!("invalid `env` value {:?} for {text}: {e}", value.get_ref())
        });
        match (problem, value) {
            (None, Some(value)) => {
                if let Some(v) = &mut out {
                    v.push((text.clone(), value));
                }
            }
            _ => out = None,
        }
    }
    out
}

/// Reports every key of an external service that only a supervised one may
/// have.
fn supervised_only(ctx: &mut Ctx<'_, '_>, raw: &RawService) {
    let spans = [
        ("instances", raw.instances.as_ref().map(Spanned::span)),
        ("env", raw.env.as_ref().map(Spanned::span)),
        ("cwd", raw.cwd.as_ref().map(Spanned::span)),
        ("socket", raw.socket.as_ref().map(Spanned::span)),
        ("restart", raw.restart.as_ref().map(Spanned::span)),
    ];
    for (key, span) in spans {
        if let Some(span) = span {
            let message = format!(
                "`{key}` is only for a supervised service (with `command`); this one is external (with `targets`)"
            );
            ctx.error(span, message);
        }
    }
    if let Some(version) = &raw.version {
        let message = "an external service has no `version` in the file: each deploy names the version of its targets (`baton deploy NAME --version V --target ADDR…`)";
        ctx.error(version.span(), message);
    }
}

fn external(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    targets: &Spanned<Vec<Spanned<String>>>,
) -> Option<External> {
    if targets.get_ref().is_empty() {
        let message =
            format!("service {name:?} has no targets; an external service needs at least one");
        ctx.error(targets.span(), message);
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out: Option<Vec<UpstreamAddr>> = Some(Vec::new());
    for target in targets.get_ref() {
        let parsed = parse_upstream_addr(target.get_ref()).map_err(|e| {
            ctx.error(
                target.span(),
                format!("invalid target {:?}: {e}", target.get_ref()),
            )
        });
        let new = ctx.unique(&mut seen, target, |t| {
            format!("duplicate target {t:?} in service {name:?}")
        });
        match parsed.ok().filter(|_| new) {
            Some(address) => {
                if let Some(v) = &mut out {
                    v.push(address);
                }
            }
            None => out = None,
        }
    }
    Some(External { targets: out? })
}
