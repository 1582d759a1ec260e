//! Validation of `[cluster]`: etcd endpoints, the key prefix, the node name,
//! the advertised host, the lease TTL, where the password is and the TLS
//! files. Never connects, never reads a file or a variable, and never repeats
//! a `password` value in a message (it might be a password written inline
//! by mistake).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::tls::file_path;
use super::{Ctx, parse_upstream_addr};
use crate::raw::RawCluster;
use crate::schema::CLUSTER;
use crate::types::{ClientCert, Cluster, ClusterTls, Credentials, Password};

/// The lease TTLs accepted: etcd's own minimum is about 1.5 s, and a node
/// that is gone should leave the pools within the hour.
const LEASE_TTL: RangeInclusive<Duration> = Duration::from_secs(2)..=Duration::from_secs(3600);
const MAX_ENDPOINTS: usize = 16;
const MAX_PREFIX_BYTES: usize = 256;

pub(super) fn cluster(ctx: &mut Ctx<'_, '_>, item: &Spanned<RawCluster>) -> Option<Cluster> {
    let raw = item.get_ref();
    // Missing `endpoints` and `advertise` were reported by `check`.
    let endpoints = raw.endpoints.as_ref().and_then(|list| endpoints(ctx, list));
    let prefix = match &raw.prefix {
        Some(text) => prefix(ctx, text),
        None => Ctx::text(&CLUSTER, "prefix", &None).map(str::to_owned),
    };
    let node = match &raw.node {
        Some(text) => node(ctx, text).map(Some),
        None => Some(None),
    };
    let advertise = raw.advertise.as_ref().and_then(|text| advertise(ctx, text));
    let lease_ttl = ctx
        .duration(&CLUSTER, "lease_ttl", &raw.lease_ttl, false)
        .and_then(|ttl| lease_ttl(ctx, raw, ttl));
    let credentials = credentials(ctx, item);
    let tls = match &endpoints {
        Some(urls) => tls(ctx, item, urls),
        None => None,
    };
    Some(Cluster {
        endpoints: endpoints?,
        prefix: prefix?,
        node: node?,
        advertise: advertise?,
        lease_ttl: lease_ttl?,
        credentials: credentials?,
        tls: tls?,
    })
}

/// `ca`, `cert` and `key`: required (`ca`) or allowed (`cert` with `key`)
/// with `https://` endpoints, refused with `http://` ones.
fn tls(
    ctx: &mut Ctx<'_, '_>,
    item: &Spanned<RawCluster>,
    endpoints: &[String],
) -> Option<Option<ClusterTls>> {
    let raw = item.get_ref();
    let https = endpoints.first().is_some_and(|e| e.starts_with("https://"));
    let files = [("ca", &raw.ca), ("cert", &raw.cert), ("key", &raw.key)];
    if !https {
        let mut ok = true;
        for (key, value) in files {
            if let Some(value) = value {
                let message =
                    format!("`{key}` is for TLS to etcd: the endpoints must be https:// URLs");
                ctx.error(value.span(), message);
                ok = false;
            }
        }
        return ok.then_some(None);
    }
    let paths: Vec<Option<PathBuf>> = files
        .iter()
        .map(|(key, value)| value.as_ref().and_then(|v| file_path(ctx, key, v)))
        .collect();
    if raw.ca.is_none() {
        let message =
            "https:// endpoints need `ca`, the PEM file of the CA that signed etcd's certificate";
        ctx.error(item.span(), message);
        return None;
    }
    let client = match (&raw.cert, &raw.key) {
        (None, None) => None,
        (Some(_), Some(_)) => Some(ClientCert {
            cert: paths[1].clone()?,
            key: paths[2].clone()?,
        }),
        (Some(value), None) => {
            ctx.error(
                value.span(),
                "`cert` needs `key`, the client certificate's private key",
            );
            return None;
        }
        (None, Some(value)) => {
            ctx.error(value.span(), "`key` needs `cert`, the client certificate");
            return None;
        }
    };
    Some(Some(ClusterTls {
        ca: paths[0].clone()?,
        client,
    }))
}

/// Each endpoint as `http://HOST:PORT` or `https://HOST:PORT`, in file
/// order, without repeats, all with the same scheme.
fn endpoints(ctx: &mut Ctx<'_, '_>, list: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    let items = list.get_ref();
    if items.is_empty() || items.len() > MAX_ENDPOINTS {
        let n = items.len();
        let message = format!("`endpoints` must list 1 to {MAX_ENDPOINTS} etcd URLs, not {n}");
        ctx.error(list.span(), message);
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out = Some(Vec::new());
    let mut first_https = None;
    for item in items {
        let text = item.get_ref();
        let normalised = endpoint(text);
        let url = match normalised {
            Ok(url) => url,
            Err(reason) => {
                ctx.error(item.span(), format!("invalid endpoint {text:?}: {reason}"));
                out = None;
                continue;
            }
        };
        if !seen.insert(url.clone()) {
            ctx.error(item.span(), format!("endpoint {text:?} is listed twice"));
            out = None;
            continue;
        }
        let https = url.starts_with("https://");
        if *first_https.get_or_insert(https) != https {
            let message = format!(
                "endpoint {text:?} does not use the scheme of the first one: either every endpoint is http:// or every one is https://"
            );
            ctx.error(item.span(), message);
            out = None;
            continue;
        }
        if let Some(v) = &mut out {
            v.push(url);
        }
    }
    out
}

fn endpoint(text: &str) -> Result<String, String> {
    let expected = "expected http://HOST:PORT or https://HOST:PORT, like http://10.0.0.1:2379";
    let (scheme, authority) = match text.split_once("://") {
        None => ("http", text),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => ("http", rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => ("https", rest),
        Some(_) => return Err(expected.to_owned()),
    };
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!("no path, query or user in the URL; {expected}"));
    }
    let addr = parse_upstream_addr(authority).map_err(|_| expected.to_owned())?;
    Ok(format!("{scheme}://{}", addr.authority))
}

fn prefix(ctx: &mut Ctx<'_, '_>, text: &Spanned<String>) -> Option<String> {
    let value = text.get_ref();
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let ok = value.len() <= MAX_PREFIX_BYTES
        && value
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(segment_ok));
    if !ok {
        let message = format!(
            "invalid `prefix` {value:?}: expected like \"/baton\": starts with '/', no trailing '/', segments of letters, digits, '-', '_' or '.', {MAX_PREFIX_BYTES} bytes at most"
        );
        ctx.error(text.span(), message);
        return None;
    }
    Some(value.clone())
}

fn node(ctx: &mut Ctx<'_, '_>, text: &Spanned<String>) -> Option<String> {
    key_segment(ctx, "node", text)
}

/// A name that becomes one segment of a registry key (a node, a service
/// discovered): a name as [`Ctx::name`] accepts it, but not `.` or `..`.
pub(super) fn key_segment(
    ctx: &mut Ctx<'_, '_>,
    what: &str,
    text: &Spanned<String>,
) -> Option<String> {
    let value = text.get_ref();
    if !ctx.name(what, value, text.span()) {
        return None;
    }
    if value == "." || value == ".." {
        ctx.error(
            text.span(),
            format!("invalid {what} name {value:?}: not '.' or '..'"),
        );
        return None;
    }
    Some(value.clone())
}

/// An IP address or a host name, without a port.
fn advertise(ctx: &mut Ctx<'_, '_>, text: &Spanned<String>) -> Option<String> {
    let value = text.get_ref();
    let unbracketed = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    let with_port = match unbracketed.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{unbracketed}]:1"),
        Err(_) => format!("{value}:1"),
    };
    if parse_upstream_addr(&with_port).is_err() {
        let message = format!(
            "invalid `advertise` {value:?}: expected an IP address or a host name without a port, like \"10.0.0.5\" or \"node-a.internal\""
        );
        ctx.error(text.span(), message);
        return None;
    }
    Some(unbracketed.to_owned())
}

fn lease_ttl(ctx: &mut Ctx<'_, '_>, raw: &RawCluster, ttl: Duration) -> Option<Duration> {
    if LEASE_TTL.contains(&ttl) && ttl.subsec_nanos() == 0 {
        return Some(ttl);
    }
    // A default outside the range would be a bug of the schema, caught by
    // the tests; only a written value gets here.
    let span = raw
        .lease_ttl
        .as_ref()
        .map(Spanned::span)
        .unwrap_or_default();
    let text = raw.lease_ttl.as_ref().map_or("", |t| t.get_ref().as_str());
    let message = format!(
        "`lease_ttl` must be whole seconds from 2s to 1h (etcd counts leases in seconds), not {text:?}"
    );
    ctx.error(span, message);
    None
}

/// `username` and `password` come together.
fn credentials(ctx: &mut Ctx<'_, '_>, item: &Spanned<RawCluster>) -> Option<Option<Credentials>> {
    let raw = item.get_ref();
    let username = raw.username.as_ref().and_then(|name| {
        let text = name.get_ref();
        let ok = (1..=256).contains(&text.len()) && !text.chars().any(char::is_control);
        if !ok {
            let message = "invalid `username`: 1 to 256 characters, no control characters";
            ctx.error(name.span(), message);
            return None;
        }
        Some(text.clone())
    });
    let password = raw
        .password
        .as_ref()
        .and_then(|p| secret(ctx, "password", p));
    match (&raw.username, &raw.password) {
        (None, None) => Some(None),
        (Some(name), None) => {
            ctx.error(
                name.span(),
                "`username` needs `password` (\"env:NAME\" or \"file:PATH\")",
            );
            None
        }
        (None, Some(p)) => {
            ctx.error(p.span(), "`password` needs `username`");
            None
        }
        (Some(_), Some(_)) => Some(Some(Credentials {
            username: username?,
            password: password?,
        })),
    }
}

/// Where a secret (`key`: an etcd password, the admin token) is: an
/// environment variable or a file; never the secret itself, which is never
/// repeated in a message.
pub(super) fn secret(ctx: &mut Ctx<'_, '_>, key: &str, item: &Spanned<String>) -> Option<Password> {
    let text = item.get_ref();
    if let Some(name) = text.strip_prefix("env:") {
        let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            return Some(Password::Env(name.to_owned()));
        }
        let message = format!(
            "invalid `{key}`: after \"env:\", the name of an environment variable (letters, digits and '_', not starting with a digit)"
        );
        ctx.error(item.span(), message);
        return None;
    }
    if let Some(path) = text.strip_prefix("file:") {
        if !path.is_empty() && !path.contains('\0') {
            return Some(Password::File(PathBuf::from(path)));
        }
        let message = format!("invalid `{key}`: after \"file:\", the path of a file");
        ctx.error(item.span(), message);
        return None;
    }
    let message = format!(
        "invalid `{key}`: expected \"env:NAME\" or \"file:PATH\", where the {key} is; never the {key} itself"
    );
    ctx.error(item.span(), message);
    None
}
