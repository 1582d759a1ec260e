//! Validation of `[pool.NAME]`: members, and the parts a service shares
//! with a pool — the forwarding keys (balancing, timeouts, the Host sent
//! upstream, TLS to the members) and the `health` / `passive` subsections.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use http::HeaderValue;
use http::uri::PathAndQuery;
use toml::Spanned;

use super::matchers::{parse_status_range, parse_upstream_addr};
use super::{Ctx, tls};
use crate::raw::{IntOrString, RawForward, RawHealth, RawMember, RawPassive, RawPool};
use crate::schema::{HEALTH, MEMBER, PASSIVE, POOL, Section};
use crate::types::{
    Balance, ForwardSettings, HealthCheck, Member, PassiveHealth, Pool, UpstreamHost,
};

pub(super) fn pools(
    ctx: &mut Ctx<'_, '_>,
    raw: &BTreeMap<Spanned<String>, Spanned<RawPool>>,
) -> Option<BTreeMap<String, Pool>> {
    let mut out = Some(BTreeMap::new());
    for (name, item) in raw {
        let named = ctx.name("pool", name.get_ref(), name.span());
        match (named, pool(ctx, name.get_ref(), item)) {
            (true, Some(p)) => {
                if let Some(m) = &mut out {
                    m.insert(p.name.clone(), p);
                }
            }
            _ => out = None,
        }
    }
    out
}

fn pool(ctx: &mut Ctx<'_, '_>, name: &str, item: &Spanned<RawPool>) -> Option<Pool> {
    let raw = item.get_ref();
    // `check` reported a pool with both or neither of `members` and
    // `discover`.
    let members = match &raw.members {
        Some(m) => members(ctx, name, m),
        None => Some(Vec::new()),
    };
    let discover = raw
        .discover
        .as_ref()
        .map(|d| super::cluster::key_segment(ctx, "service", d));
    let forward = forward(ctx, &POOL, &raw.forward());
    let health = raw.health.as_ref().map(|h| health(ctx, h));
    let passive = raw.passive.as_ref().map(|p| passive(ctx, p.get_ref()));
    Some(Pool {
        name: name.to_owned(),
        members: members?,
        discover: super::optional(discover)?,
        forward: forward?,
        health: super::optional(health)?,
        passive: super::optional(passive)?,
    })
}

/// Reports every `discover` of a file without `[cluster]`: there is no
/// registry to discover from.
pub(super) fn discover_needs_cluster(
    ctx: &mut Ctx<'_, '_>,
    raw: &BTreeMap<Spanned<String>, Spanned<RawPool>>,
) {
    for (name, item) in raw {
        if let Some(d) = &item.get_ref().discover {
            let message = format!(
                "pool {:?} discovers its members in the cluster registry, which needs a [cluster] section",
                name.get_ref()
            );
            ctx.error(d.span(), message);
        }
    }
}

/// The forwarding keys of a pool or a service (`section` has them all, with
/// the same defaults).
pub(super) fn forward(
    ctx: &mut Ctx<'_, '_>,
    section: &'static Section,
    raw: &RawForward<'_>,
) -> Option<ForwardSettings> {
    let balances = [
        ("weighted_round_robin", Balance::WeightedRoundRobin),
        ("least_requests", Balance::LeastRequests),
    ];
    let balance = ctx.choice(section, "balance", raw.balance, &balances);
    let max_per_member = ctx.u32(
        section,
        "max_connections_per_member",
        raw.max_connections_per_member,
        1,
    );
    let queue_length = ctx.int(section, "queue_length", raw.queue_length, 0..=1_000_000);
    let queue_timeout = ctx.duration(section, "queue_timeout", raw.queue_timeout, false);
    let connect_timeout = ctx.duration(section, "connect_timeout", raw.connect_timeout, false);
    let header_timeout = ctx.duration(section, "header_timeout", raw.header_timeout, false);
    let body_timeout = ctx.duration(section, "body_timeout", raw.body_timeout, false);
    let idle_timeout = ctx.duration(section, "idle_timeout", raw.idle_timeout, false);
    let total_timeout = ctx.optional_duration("total_timeout", raw.total_timeout);
    let upstream_host = upstream_host(ctx, section, raw.upstream_host);
    let tls = raw
        .tls
        .as_ref()
        .map(|t| tls::upstream_tls(ctx, t.get_ref()));
    Some(ForwardSettings {
        balance: balance?,
        max_connections_per_member: max_per_member?,
        queue_length: u32::try_from(queue_length?).ok()?,
        queue_timeout: queue_timeout?,
        connect_timeout: connect_timeout?,
        header_timeout: header_timeout?,
        body_timeout: body_timeout?,
        idle_timeout: idle_timeout?,
        total_timeout: total_timeout.ok()?,
        retry_non_idempotent: Ctx::bool(section, "retry_non_idempotent", raw.retry_non_idempotent),
        retry_server_errors: Ctx::bool(section, "retry_server_errors", raw.retry_server_errors),
        upstream_host: upstream_host?,
        tls: super::optional(tls)?,
    })
}

fn members(
    ctx: &mut Ctx<'_, '_>,
    pool: &str,
    raw: &Spanned<Vec<Spanned<RawMember>>>,
) -> Option<Vec<Member>> {
    if raw.get_ref().is_empty() {
        ctx.error(raw.span(), format!("pool {pool:?} has no members"));
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out = Some(Vec::new());
    for item in raw.get_ref() {
        let weight = ctx.int(&MEMBER, "weight", &item.get_ref().weight, 0..=1_000_000);
        // A missing `address` was reported by `check`.
        let address = item.get_ref().address.as_ref().and_then(|a| {
            let parsed = parse_upstream_addr(a.get_ref());
            let parsed = parsed.map_err(|e| {
                ctx.error(
                    a.span(),
                    format!("invalid member address {:?}: {e}", a.get_ref()),
                )
            });
            let new = ctx.unique(&mut seen, a, |a| {
                format!("duplicate member {a:?} in pool {pool:?}")
            });
            parsed.ok().filter(|_| new)
        });
        match (address, weight.and_then(|w| u32::try_from(w).ok())) {
            (Some(address), Some(weight)) => {
                if let Some(v) = &mut out {
                    v.push(Member { address, weight });
                }
            }
            _ => out = None,
        }
    }
    out
}

fn upstream_host(
    ctx: &mut Ctx<'_, '_>,
    section: &'static Section,
    raw: &Option<Spanned<String>>,
) -> Option<UpstreamHost> {
    match Ctx::text(section, "upstream_host", raw)? {
        "preserve" => Some(UpstreamHost::Preserve),
        "member" => Some(UpstreamHost::Member),
        literal => {
            let ok = !literal.is_empty()
                && !literal.contains(char::is_whitespace)
                && HeaderValue::from_str(literal).is_ok();
            if !ok {
                let span = raw.as_ref().map(Spanned::span).unwrap_or_default();
                let message = format!(
                    "invalid `upstream_host` {literal:?}: expected preserve, member or a host such as api.internal:8080"
                );
                ctx.error(span, message);
            }
            ok.then(|| UpstreamHost::Literal(literal.to_owned()))
        }
    }
}

/// Whether `text` can be requested as is: a path starting with `/`, with
/// an optional query (health checks, smoke checks).
pub(super) fn is_request_path(text: &str) -> bool {
    text.starts_with('/') && PathAndQuery::from_str(text).is_ok()
}

pub(super) fn health(ctx: &mut Ctx<'_, '_>, item: &Spanned<RawHealth>) -> Option<HealthCheck> {
    let raw = item.get_ref();
    // A missing `path` was reported by `check`.
    let path = raw.path.as_ref().and_then(|p| {
        let text = p.get_ref();
        let ok = is_request_path(text);
        if !ok {
            ctx.error(
                p.span(),
                format!("health check `path` {text:?} must be a path starting with \"/\""),
            );
        }
        ok.then(|| text.clone())
    });
    let interval = ctx.duration(&HEALTH, "interval", &raw.interval, false);
    let timeout = ctx.duration(&HEALTH, "timeout", &raw.timeout, false);
    if let Some((i, t)) = interval.zip(timeout).filter(|(i, t)| t >= i) {
        let span = raw
            .timeout
            .as_ref()
            .or(raw.interval.as_ref())
            .map_or(item.span(), Spanned::span);
        let (t, i) = (humantime::format_duration(t), humantime::format_duration(i));
        ctx.error(
            span,
            format!("health check `timeout` ({t}) must be shorter than `interval` ({i})"),
        );
    }
    let start_interval = match ctx.optional_duration("start_interval", &raw.start_interval) {
        Ok(Some(s)) => match interval {
            Some(i) if s > i => {
                let span = raw
                    .start_interval
                    .as_ref()
                    .map_or(item.span(), Spanned::span);
                let (s, i) = (humantime::format_duration(s), humantime::format_duration(i));
                ctx.error(
                    span,
                    format!("health check `start_interval` ({s}) must not be longer than `interval` ({i})"),
                );
                None
            }
            _ => Some(s),
        },
        Ok(None) => interval.map(default_start_interval),
        Err(()) => None,
    };
    let healthy_threshold = ctx.u32(&HEALTH, "healthy_threshold", &raw.healthy_threshold, 1);
    let unhealthy_threshold = ctx.u32(&HEALTH, "unhealthy_threshold", &raw.unhealthy_threshold, 1);
    let expect_status = match &raw.expect_status {
        Some(v) => parse_status_range(v.get_ref())
            .map_err(|e| ctx.error(v.span(), format!("invalid `expect_status`: {e}")))
            .ok(),
        None => Some(super::parse_default(&HEALTH, "expect_status", |text| {
            parse_status_range(&IntOrString::String(text.to_owned()))
        })),
    };
    Some(HealthCheck {
        path: path?,
        interval: interval.filter(|i| Some(*i) > timeout)?,
        timeout: timeout?,
        start_interval: start_interval?,
        healthy_threshold: healthy_threshold?,
        unhealthy_threshold: unhealthy_threshold?,
        expect_status: expect_status?,
    })
}

/// `start_interval` when the file does not set it: a tenth of `interval`,
/// at least 10 ms, never more than `interval`. A starting instance is
/// checked often: its checks are what a deploy waits for, and one that is
/// refused or queued costs it little.
pub(crate) fn default_start_interval(interval: Duration) -> Duration {
    (interval / 10).max(Duration::from_millis(10)).min(interval)
}

pub(super) fn passive(ctx: &mut Ctx<'_, '_>, raw: &RawPassive) -> Option<PassiveHealth> {
    let failures = ctx.u32(
        &PASSIVE,
        "consecutive_failures",
        &raw.consecutive_failures,
        1,
    );
    let ejection = ctx.duration(&PASSIVE, "ejection_time", &raw.ejection_time, false);
    let max = ctx.duration(&PASSIVE, "max_ejection_time", &raw.max_ejection_time, false);
    if let Some((e, m)) = ejection.zip(max).filter(|(e, m)| m < e) {
        let span = raw
            .max_ejection_time
            .as_ref()
            .or(raw.ejection_time.as_ref())
            .map_or(0..0, Spanned::span);
        let (e, m) = (humantime::format_duration(e), humantime::format_duration(m));
        ctx.error(
            span,
            format!("`max_ejection_time` ({m}) must be at least `ejection_time` ({e})"),
        );
    }
    Some(PassiveHealth {
        consecutive_failures: failures?,
        ejection_time: ejection?,
        max_ejection_time: max.filter(|m| Some(*m) >= ejection)?,
    })
}
