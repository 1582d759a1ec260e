//! Validation of `[[route]]`: names, references to listeners, pools and
//! services, and the match conditions (host, path, methods, headers).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::Ctx;
use super::matchers::{check_path_pattern, host_match};
use crate::raw::RawRoute;
use crate::types::{HeaderMatch, PathMatch, Route, Upstream};

/// The names of every `[pool.NAME]` and `[service.NAME]`, valid or not.
pub(super) struct Declared<'a> {
    pub(super) pools: BTreeSet<&'a str>,
    pub(super) services: BTreeSet<&'a str>,
}

/// Consumes the raw routes: their strings move into the typed ones.
pub(super) fn routes(
    ctx: &mut Ctx<'_, '_>,
    raw: Vec<Spanned<RawRoute>>,
    listeners: &[String],
    upstreams: &Declared<'_>,
) -> Option<Vec<Route>> {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Some(Vec::with_capacity(raw.len()));
    for item in raw {
        let mut ok = true;
        if let Some(name) = &item.get_ref().name {
            ok &= ctx.name("route", name.get_ref(), name.span());
            let first = *names
                .entry(name.get_ref().clone())
                .or_insert(name.span().start);
            if first != name.span().start {
                let line = ctx.diag.line_of(first);
                let message = format!(
                    "duplicate route name {:?} (first used at line {line})",
                    name.get_ref()
                );
                ctx.error(name.span(), message);
                ok = false;
            }
        }
        match (ok, route(ctx, item.into_inner(), listeners, upstreams)) {
            (true, Some(r)) => {
                if let Some(v) = &mut out {
                    v.push(r);
                }
            }
            _ => out = None,
        }
    }
    out
}

fn route(
    ctx: &mut Ctx<'_, '_>,
    raw: RawRoute,
    listeners: &[String],
    upstreams: &Declared<'_>,
) -> Option<Route> {
    let route_listeners = match &raw.listeners {
        Some(list) => route_listeners(ctx, list, listeners),
        None => Some(listeners.to_vec()),
    };
    let host = raw.host.as_ref().map(|h| {
        host_match(h.get_ref())
            .map_err(|e| ctx.error(h.span(), format!("invalid `host` {:?}: {e}", h.get_ref())))
    });
    let path = path(
        ctx,
        [
            ("path_prefix", raw.path_prefix),
            ("path", raw.path),
            ("path_regex", raw.path_regex),
        ],
    );
    let methods = raw
        .methods
        .as_ref()
        .map_or(Some(Vec::new()), |m| methods(ctx, m));
    let headers = raw
        .headers
        .as_ref()
        .map_or(Some(Vec::new()), |h| headers(ctx, h));
    // Neither or both of `pool` and `service` was reported by `check`.
    let upstream = match (raw.pool, raw.service) {
        (Some(pool), None) => upstream(ctx, pool, upstreams, false),
        (None, Some(service)) => upstream(ctx, service, upstreams, true),
        _ => None,
    };
    Some(Route {
        name: raw.name.map(Spanned::into_inner),
        listeners: route_listeners?,
        host: host.transpose().ok()?,
        path: path.ok()?,
        methods: methods?,
        headers: headers?,
        upstream: upstream?,
    })
}

/// The `pool` (or, if `service`, the `service`) a route names, if declared.
fn upstream(
    ctx: &mut Ctx<'_, '_>,
    name: Spanned<String>,
    declared: &Declared<'_>,
    service: bool,
) -> Option<Upstream> {
    let text = name.get_ref().as_str();
    let (kind, names, other_kind, others) = match service {
        false => ("pool", &declared.pools, "service", &declared.services),
        true => ("service", &declared.services, "pool", &declared.pools),
    };
    if names.contains(text) {
        let owned = name.into_inner();
        return Some(if service {
            Upstream::Service(owned)
        } else {
            Upstream::Pool(owned)
        });
    }
    let message = if others.contains(text) {
        format!(
            "unknown {kind} {text:?}; there is a {other_kind} of that name: write `{other_kind} = {text:?}`"
        )
    } else if names.is_empty() {
        format!("unknown {kind} {text:?}: no [{kind}.NAME] is defined")
    } else {
        let defined = Vec::from_iter(names.iter().copied()).join(", ");
        format!("unknown {kind} {text:?}; defined {kind}s: {defined}")
    };
    ctx.error(name.span(), message);
    None
}

fn route_listeners(
    ctx: &mut Ctx<'_, '_>,
    list: &Spanned<Vec<Spanned<String>>>,
    defined: &[String],
) -> Option<Vec<String>> {
    if list.get_ref().is_empty() {
        ctx.error(
            list.span(),
            "`listeners` is empty, so the route would never match; omit it to use every listener",
        );
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut ok = true;
    for name in list.get_ref() {
        ok &= ctx.unique(&mut seen, name, |n| {
            format!("listener {n:?} is listed twice")
        });
        if !defined.contains(name.get_ref()) {
            let message = format!(
                "unknown listener {:?}; defined listeners: {}",
                name.get_ref(),
                defined.join(", ")
            );
            ctx.error(name.span(), message);
            ok = false;
        }
    }
    ok.then(|| list.get_ref().iter().map(|n| n.get_ref().clone()).collect())
}

/// At most one of `path_prefix`, `path`, `path_regex`, each valid; their
/// text moves into the match.
fn path(
    ctx: &mut Ctx<'_, '_>,
    given: [(&'static str, Option<Spanned<String>>); 3],
) -> Result<Option<PathMatch>, ()> {
    // The keys given, in file order, for the conflict below.
    let mut by_position: [Option<(Range<usize>, &str)>; 3] = [None, None, None];
    for (slot, (key, value)) in by_position.iter_mut().zip(&given) {
        *slot = value.as_ref().map(|v| (v.span(), *key));
    }
    by_position.sort_by_key(|p| p.as_ref().map(|(span, _)| span.start));
    let mut result = Ok(None);
    for (key, value) in given {
        let Some(value) = value else {
            continue;
        };
        let span = value.span();
        let text = value.into_inner();
        let error = match key {
            "path_prefix" if !text.starts_with('/') => Some("must start with \"/\"".to_owned()),
            "path_prefix" => None,
            "path" => check_path_pattern(&text).err(),
            _ => regex::Regex::new(&text).err().map(|e| regex_message(&e)),
        };
        match error {
            Some(e) => {
                ctx.error(span, format!("invalid `{key}` {text:?}: {e}"));
                result = Err(());
            }
            None => {
                let m = match key {
                    "path_prefix" => PathMatch::Prefix(text),
                    "path" => PathMatch::Pattern(text),
                    _ => PathMatch::Regex(text),
                };
                result = result.map(|_| Some(m));
            }
        }
    }
    // Reported at whichever of the keys comes later in the file.
    let mut present = by_position.into_iter().flatten();
    if let Some((_, first)) = present.next() {
        for (span, key) in present {
            let message = format!(
                "`{key}` conflicts with `{first}`: a route has at most one of `path_prefix`, `path` and `path_regex`"
            );
            ctx.error(span, message);
            result = Err(());
        }
    }
    result
}

/// The regex crate's message without its multi-line excerpt of the pattern.
fn regex_message(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_owned()
}

fn methods(ctx: &mut Ctx<'_, '_>, list: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<Method>> {
    if list.get_ref().is_empty() {
        ctx.error(
            list.span(),
            "`methods` is empty, so the route would never match; omit it to match any method",
        );
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out = Some(Vec::new());
    for item in list.get_ref() {
        let text = item.get_ref();
        let parsed = Method::from_bytes(text.as_bytes())
            .ok()
            .filter(|_| !text.is_empty());
        let parsed = match parsed {
            Some(_) if text.chars().any(|c| c.is_ascii_lowercase()) => {
                let upper = text.to_ascii_uppercase();
                ctx.error(
                    item.span(),
                    format!("invalid method {text:?}: methods are upper case, like {upper:?}"),
                );
                None
            }
            Some(m) => Some(m),
            None => {
                ctx.error(
                    item.span(),
                    format!("invalid method {text:?}: expected a token like \"GET\" or \"POST\""),
                );
                None
            }
        };
        let new = ctx.unique(&mut seen, item, |m| format!("method {m:?} is listed twice"));
        match parsed.filter(|_| new) {
            Some(m) => {
                if let Some(v) = &mut out {
                    v.push(m);
                }
            }
            None => out = None,
        }
    }
    out
}

fn headers(
    ctx: &mut Ctx<'_, '_>,
    map: &Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
) -> Option<Vec<HeaderMatch>> {
    let mut out: Option<Vec<HeaderMatch>> = Some(Vec::new());
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut entries: Vec<_> = map.get_ref().iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (name, value) in entries {
        let parsed_name = HeaderName::from_bytes(name.get_ref().as_bytes())
            .map_err(|_| {
                ctx.error(
                    name.span(),
                    format!("invalid header name {:?}", name.get_ref()),
                )
            })
            .ok();
        if let Some(n) = &parsed_name {
            if let Some(first) = seen.insert(n.as_str().to_owned(), name.get_ref()) {
                let message = format!(
                    "header {:?} is given twice (as {first:?}; names are case-insensitive)",
                    name.get_ref()
                );
                ctx.error(name.span(), message);
                out = None;
            }
        }
        let parsed_value = HeaderValue::from_str(value.get_ref())
            .map_err(|_| {
                ctx.error(
                    value.span(),
                    format!(
                        "invalid value {:?} for header {:?}",
                        value.get_ref(),
                        name.get_ref()
                    ),
                )
            })
            .ok();
        match (parsed_name, parsed_value) {
            (Some(name), Some(value)) => {
                if let Some(v) = &mut out {
                    v.push(HeaderMatch { name, value });
                }
            }
            _ => out = None,
        }
    }
    if let Some(v) = out.as_mut() {
        v.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    }
    out
}
