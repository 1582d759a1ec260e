//! Validation of the client side: `[proxy]`, `[access_log]` and the
//! `[[listener]]`s (names, addresses, limits; their HTTPS is `tls`'s).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use handoff::ListenAddr;
use http::HeaderName;
use toml::Spanned;

use super::matchers::parse_network;
use super::{Ctx, tls};
use crate::raw::{RawAccessLog, RawListener, RawProxy};
use crate::schema::{ACCESS_LOG, LISTENER, PROXY};
use crate::types::{AccessLog, AccessLogFormat, AccessLogTarget, Listener, ProxySettings, Workers};

pub(super) fn proxy(
    ctx: &mut Ctx<'_, '_>,
    raw: Option<&Spanned<RawProxy>>,
) -> Option<ProxySettings> {
    let default = RawProxy::default();
    let raw = raw.map_or(&default, Spanned::get_ref);
    let workers = match &raw.workers {
        None => Some(Workers::PerCore),
        Some(_) => ctx
            .int(&PROXY, "workers", &raw.workers, 1..=Workers::MAX as i64)
            .and_then(|n| NonZeroUsize::new(usize::try_from(n).ok()?))
            .map(Workers::Exactly),
    };
    let drain_timeout = ctx.duration(&PROXY, "drain_timeout", &raw.drain_timeout, true);
    let idle_grace = ctx.duration(&PROXY, "idle_grace", &raw.idle_grace, true);
    let mut trusted_proxies = Some(Vec::new());
    for net in raw.trusted_proxies.iter().flat_map(|list| list.get_ref()) {
        match parse_network(net.get_ref()) {
            Ok(parsed) => {
                if let Some(v) = &mut trusted_proxies {
                    v.push(parsed);
                }
            }
            Err(e) => {
                ctx.error(
                    net.span(),
                    format!("invalid network in `trusted_proxies`: {e}"),
                );
                trusted_proxies = None;
            }
        }
    }
    let request_id_header = Ctx::text(&PROXY, "request_id_header", &raw.request_id_header)
        .and_then(|text| match HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                let span = raw
                    .request_id_header
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_default();
                ctx.error(
                    span,
                    format!("invalid header name {text:?} for `request_id_header`"),
                );
                None
            }
        });
    Some(ProxySettings {
        workers: workers?,
        drain_timeout: drain_timeout?,
        idle_grace: idle_grace?,
        trusted_proxies: trusted_proxies?,
        request_id_header: request_id_header?,
    })
}

pub(super) fn access_log(ctx: &mut Ctx<'_, '_>, raw: &RawAccessLog) -> Option<AccessLog> {
    let target = match Ctx::text(&ACCESS_LOG, "path", &raw.path) {
        Some("-") => Some(AccessLogTarget::Stdout),
        Some("") => {
            let span = raw.path.as_ref().map(Spanned::span).unwrap_or_default();
            ctx.error(
                span,
                "`path` of [access_log] is empty; use \"-\" for standard output",
            );
            None
        }
        Some(path) => Some(AccessLogTarget::File(PathBuf::from(path))),
        None => None,
    };
    let formats = [
        ("combined", AccessLogFormat::Combined),
        ("json", AccessLogFormat::Json),
    ];
    let format = ctx.choice(&ACCESS_LOG, "format", &raw.format, &formats);
    Some(AccessLog {
        target: target?,
        format: format?,
    })
}

/// The name of every `[[listener]]`, given or default, valid or not.
pub(super) fn declared_names(raw: Option<&Spanned<Vec<Spanned<RawListener>>>>) -> Vec<String> {
    let list = raw.map_or(&[][..], |l| l.get_ref().as_slice());
    list.iter()
        .enumerate()
        .map(|(i, l)| name_of(i, l.get_ref()))
        .collect()
}

fn name_of(index: usize, raw: &RawListener) -> String {
    match &raw.name {
        Some(name) => name.get_ref().clone(),
        None => format!("listener-{}", index + 1),
    }
}

/// `acme_declared`: whether the file has an `[acme]` section, which
/// `acme = true` in a listener's `[listener.tls]` needs.
pub(super) fn listeners(
    ctx: &mut Ctx<'_, '_>,
    raw: Option<&Spanned<Vec<Spanned<RawListener>>>>,
    acme_declared: bool,
) -> Option<Vec<Listener>> {
    // A missing `listener` key was reported by `check`.
    let raw = raw?;
    if raw.get_ref().is_empty() {
        ctx.error(
            raw.span(),
            "no [[listener]] defined; at least one is required",
        );
        return None;
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut addresses: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut out = Some(Vec::new());
    for (index, item) in raw.get_ref().iter().enumerate() {
        let name = name_of(index, item.get_ref());
        let name_span = item
            .get_ref()
            .name
            .as_ref()
            .map_or(item.span(), Spanned::span);
        let mut ok = ctx.name("listener", &name, name_span.clone());
        if let Some(first) = names.get(&name) {
            let line = ctx.diag.line_of(*first);
            let message = match &item.get_ref().name {
                Some(_) => format!("duplicate listener name {name:?} (first used at line {line})"),
                None => format!(
                    "this listener has no name and its default name {name:?} is already used at line {line}; give it a name"
                ),
            };
            ctx.error(name_span.clone(), message);
            ok = false;
        } else {
            names.insert(name.clone(), name_span.start);
        }
        let listener = listener(ctx, name, item.get_ref(), &mut addresses, acme_declared);
        match (ok, listener) {
            (true, Some(l)) => {
                if let Some(v) = &mut out {
                    v.push(l);
                }
            }
            _ => out = None,
        }
    }
    out
}

fn listener(
    ctx: &mut Ctx<'_, '_>,
    name: String,
    raw: &RawListener,
    addresses: &mut BTreeMap<String, (String, usize)>,
    acme_declared: bool,
) -> Option<Listener> {
    let address = raw.address.as_ref().and_then(|a| {
        let parsed = a.get_ref().parse::<ListenAddr>();
        let parsed = parsed
            .map_err(|e| ctx.error(a.span(), e.to_string()))
            .ok()?;
        let port_zero = matches!(&parsed, ListenAddr::Tcp(s) if s.port() == 0);
        let key = parsed.to_string();
        if let Some((other, at)) = addresses.get(&key).filter(|_| !port_zero) {
            let line = ctx.diag.line_of(*at);
            let message =
                format!("address {key} is already used by listener {other:?} (line {line})");
            ctx.error(a.span(), message);
            return None;
        }
        addresses.insert(key, (name.clone(), a.span().start));
        Some(parsed)
    });
    let max_connections = ctx.u32(&LISTENER, "max_connections", &raw.max_connections, 1);
    let header_read_timeout = ctx.duration(
        &LISTENER,
        "header_read_timeout",
        &raw.header_read_timeout,
        false,
    );
    let max_header_bytes = ctx.size(
        &LISTENER,
        "max_header_bytes",
        &raw.max_header_bytes,
        1024..=1 << 20,
    );
    let max_body_bytes = ctx.size(
        &LISTENER,
        "max_body_bytes",
        &raw.max_body_bytes,
        0..=u64::MAX,
    );
    let body_read_timeout = ctx.duration(
        &LISTENER,
        "body_read_timeout",
        &raw.body_read_timeout,
        false,
    );
    let body_buffer_bytes = ctx.size(
        &LISTENER,
        "body_buffer_bytes",
        &raw.body_buffer_bytes,
        0..=1 << 20,
    );
    let write_timeout = ctx.duration(&LISTENER, "write_timeout", &raw.write_timeout, false);
    let keepalive_timeout = ctx.duration(
        &LISTENER,
        "keepalive_timeout",
        &raw.keepalive_timeout,
        false,
    );
    let tls = raw
        .tls
        .as_ref()
        .map(|t| tls::listener_tls(ctx, t, acme_declared));
    let redirect_https = tls::redirect_https(ctx, &raw.redirect_https, raw.tls.is_some());
    Some(Listener {
        name,
        address: address?,
        max_connections: max_connections?,
        header_read_timeout: header_read_timeout?,
        max_header_bytes: usize::try_from(max_header_bytes?).ok()?,
        max_body_bytes: max_body_bytes?,
        body_read_timeout: body_read_timeout?,
        body_buffer_bytes: usize::try_from(body_buffer_bytes?).ok()?,
        write_timeout: write_timeout?,
        keepalive_timeout: keepalive_timeout?,
        tls: super::optional(tls)?,
        redirect_https: redirect_https.ok()?,
    })
}
