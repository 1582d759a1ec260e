//! Validation of HTTPS on listeners and to upstreams: `[listener.tls]`
//! (certificates, versions, HSTS; the cipher suites are `cipher`'s),
//! `redirect_https`, and `[pool.NAME.tls]` / `[service.NAME.tls]`. File
//! paths are checked as text only: the files are the `tls` crate's to read,
//! when the listener starts, so a file that does not exist yet is not an
//! error here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::matchers::dns_name;
use super::{Ctx, Opt, cipher};
use crate::raw::{IntOrBool, RawCertificate, RawHsts, RawTls, RawUpstreamTls};
use crate::schema::{HSTS, LISTENER_TLS};
use crate::types::{CertificateFiles, Hsts, Tls, TlsVersion, UpstreamTls};

/// The shortest `max_age` the HSTS preload list accepts (a year of 365
/// days, 31536000 seconds).
const PRELOAD_MIN_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `[listener.tls]`. `acme_declared`: whether the file has an `[acme]`
/// section for `acme = true` to serve.
pub(super) fn listener_tls(
    ctx: &mut Ctx<'_, '_>,
    item: &Spanned<RawTls>,
    acme_declared: bool,
) -> Option<Tls> {
    let raw = item.get_ref();
    let certificates = raw
        .certificates
        .as_ref()
        .map_or(Some(Vec::new()), |list| certificates(ctx, list));
    let acme = Ctx::bool(&LISTENER_TLS, "acme", &raw.acme);
    let mut ok = true;
    if let Some(flag) = raw.acme.as_ref().filter(|_| acme && !acme_declared) {
        let message = "`acme = true` but there is no [acme] section: add one (it names the DNS names to obtain a certificate for), or serve `certificates` only";
        ctx.error(flag.span(), message);
        ok = false;
    }
    // A misspelt `certificates` or `acme` was reported as such.
    let typo = ["certificates", "acme"]
        .iter()
        .any(|key| ctx.diag.has_typo_of(item.span().start, key));
    if !acme && !typo && certificates.as_ref().is_some_and(Vec::is_empty) {
        let span = raw.certificates.as_ref().map_or(item.span(), Spanned::span);
        let message = "[listener.tls] has no certificate to serve: list `certificates`, or set `acme = true` to serve those of [acme]";
        ctx.error(span, message);
        ok = false;
    }
    let min = version(ctx, "min_version", &raw.min_version);
    let max = version(ctx, "max_version", &raw.max_version);
    let versions = match (min, max) {
        (Some(min), Some(max)) if min > max => {
            let span = raw
                .max_version
                .as_ref()
                .or(raw.min_version.as_ref())
                .map_or(item.span(), Spanned::span);
            let (min, max) = (version_name(min), version_name(max));
            ctx.error(
                span,
                format!("`min_version` ({min}) is above `max_version` ({max})"),
            );
            None
        }
        (Some(min), Some(max)) => Some((min, max)),
        _ => None,
    };
    let cipher_suites = match &raw.cipher_suites {
        Some(list) => cipher::suites(ctx, list, versions).map(Some),
        None => Some(None),
    };
    let hsts = raw.hsts.as_ref().map(|h| hsts(ctx, h.get_ref()));
    let (min_version, max_version) = versions?;
    let tls = Tls {
        certificates: certificates?,
        acme,
        min_version,
        max_version,
        cipher_suites: cipher_suites?,
        hsts: super::optional(hsts)?,
    };
    ok.then_some(tls)
}

/// `redirect_https`: `Ok(None)` when absent or `false`; `Err(())` when
/// refused (reported). `has_tls`: the listener has `[listener.tls]`.
pub(super) fn redirect_https(
    ctx: &mut Ctx<'_, '_>,
    value: &Opt<IntOrBool>,
    has_tls: bool,
) -> Result<Option<u16>, ()> {
    let Some(v) = value else {
        return Ok(None);
    };
    let port = match *v.get_ref() {
        IntOrBool::Bool(false) => return Ok(None),
        IntOrBool::Bool(true) => 443,
        IntOrBool::Int(n) => match u16::try_from(n).ok().filter(|p| *p != 0) {
            Some(port) => port,
            None => {
                let message = format!(
                    "`redirect_https` must be a port between 1 and 65535 (or `true` for 443), not {n}"
                );
                ctx.error(v.span(), message);
                return Err(());
            }
        },
    };
    if has_tls {
        let message = "`redirect_https` is for a plain-HTTP listener, but this one has [listener.tls]: it already speaks HTTPS";
        ctx.error(v.span(), message);
        return Err(());
    }
    Ok(Some(port))
}

/// The name of a version in messages (`1.2`).
pub(super) fn version_name(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls12 => "1.2",
        TlsVersion::Tls13 => "1.3",
    }
}

/// `min_version` or `max_version` (given or default).
fn version(ctx: &mut Ctx<'_, '_>, key: &str, value: &Opt<String>) -> Option<TlsVersion> {
    let text = Ctx::text(&LISTENER_TLS, key, value)?;
    let versions = [TlsVersion::Tls12, TlsVersion::Tls13];
    if let Some(v) = versions.into_iter().find(|v| version_name(*v) == text) {
        return Some(v);
    }
    // Other spellings people use: "TLSv1.2", "tls1_3", "SSLv3", "1.0".
    let bare: String = text
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .collect();
    let number = ["tlsv", "tls", "v"]
        .iter()
        .find_map(|prefix| bare.strip_prefix(prefix))
        .unwrap_or(&bare);
    let message = match number {
        "1.2" | "12" => format!("invalid `{key}` {text:?}: write the version alone, \"1.2\""),
        "1.3" | "13" => format!("invalid `{key}` {text:?}: write the version alone, \"1.3\""),
        "1" | "1.0" | "10" | "1.1" | "11" => old_version(key, text),
        _ if bare.starts_with("ssl") => old_version(key, text),
        _ => format!("unknown `{key}` {text:?}; expected \"1.2\" or \"1.3\""),
    };
    let span = value.as_ref().map(Spanned::span).unwrap_or_default();
    ctx.error(span, message);
    None
}

fn old_version(key: &str, text: &str) -> String {
    format!(
        "invalid `{key}` {text:?}: TLS 1.1 and older are insecure and not supported; use \"1.2\" or \"1.3\""
    )
}

fn certificates(
    ctx: &mut Ctx<'_, '_>,
    list: &Spanned<Vec<Spanned<RawCertificate>>>,
) -> Option<Vec<CertificateFiles>> {
    let mut seen = BTreeSet::new();
    let mut out = Some(Vec::new());
    for item in list.get_ref() {
        let raw = item.get_ref();
        // A missing `cert` or `key` was reported by `check`.
        let cert = raw.cert.as_ref().and_then(|c| {
            let path = file_path(ctx, "cert", c)?;
            let new = ctx.unique(&mut seen, c, |c| {
                format!("certificate {c:?} is listed twice in this listener")
            });
            new.then_some(path)
        });
        let key = raw.key.as_ref().and_then(|k| file_path(ctx, "key", k));
        match (cert, key) {
            (Some(cert), Some(key)) => {
                if let Some(v) = &mut out {
                    v.push(CertificateFiles { cert, key });
                }
            }
            _ => out = None,
        }
    }
    out
}

/// A file named in the configuration: kept as written (a relative path is
/// relative to the directory baton runs in, as everywhere in the file),
/// never read here.
pub(super) fn file_path(
    ctx: &mut Ctx<'_, '_>,
    key: &str,
    value: &Spanned<String>,
) -> Option<PathBuf> {
    let text = value.get_ref();
    let message = if text.is_empty() {
        format!("`{key}` is empty: give the path of a PEM file")
    } else if text.contains('\0') {
        format!("`{key}` {text:?} contains a NUL character, which no file name can")
    } else {
        return Some(PathBuf::from(text));
    };
    ctx.error(value.span(), message);
    None
}

fn hsts(ctx: &mut Ctx<'_, '_>, raw: &RawHsts) -> Option<Hsts> {
    // A missing `max_age` was reported by `check`.
    let max_age = ctx
        .optional_duration("max_age", &raw.max_age)
        .ok()
        .flatten()
        .and_then(|age| {
            if age.subsec_nanos() == 0 {
                return Some(age);
            }
            let text = raw.max_age.as_ref()?;
            let message = format!(
                "`max_age` must be whole seconds (the header counts seconds), not {:?}",
                text.get_ref()
            );
            ctx.error(text.span(), message);
            None
        });
    let include_subdomains = Ctx::bool(&HSTS, "include_subdomains", &raw.include_subdomains);
    let preload = Ctx::bool(&HSTS, "preload", &raw.preload);
    let mut ok = true;
    if let Some(flag) = raw.preload.as_ref().filter(|_| preload) {
        if !include_subdomains {
            let message = "`preload` requires `include_subdomains = true`: the preload list covers a domain with all its subdomains";
            ctx.error(flag.span(), message);
            ok = false;
        }
        if let Some(age) = max_age.filter(|age| *age < PRELOAD_MIN_AGE) {
            let message = format!(
                "`preload` requires a `max_age` of at least 365d (the preload list's minimum), not {}",
                seconds_or_days(age)
            );
            ctx.error(flag.span(), message);
            ok = false;
        }
    }
    let hsts = Hsts {
        max_age: max_age?,
        include_subdomains,
        preload,
    };
    ok.then_some(hsts)
}

/// `180d` or `3600s`: humantime would say `5months 27days 13h 30m`.
fn seconds_or_days(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs % 86400 {
        0 => format!("{}d", secs / 86400),
        _ => format!("{secs}s"),
    }
}

/// `[pool.NAME.tls]` or `[service.NAME.tls]`.
pub(super) fn upstream_tls(ctx: &mut Ctx<'_, '_>, raw: &RawUpstreamTls) -> Option<UpstreamTls> {
    let ca_bundle = raw
        .ca_bundle
        .as_ref()
        .map(|path| file_path(ctx, "ca_bundle", path));
    let server_name = raw.server_name.as_ref().map(|name| server_name(ctx, name));
    Some(UpstreamTls {
        ca_bundle: super::optional(ca_bundle)?,
        server_name: super::optional(server_name)?,
    })
}

/// A DNS name (lower-cased) or an IP address (brackets optional, written
/// without them).
fn server_name(ctx: &mut Ctx<'_, '_>, value: &Spanned<String>) -> Option<String> {
    let text = value.get_ref();
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let reason = match dns_name(text) {
        Ok(name) => return Some(name),
        Err(_) if text.contains('*') => {
            "a wildcard cannot be sent as SNI; give the name itself".to_owned()
        }
        Err(_) if text.contains(':') => "give the name without a port".to_owned(),
        Err(e) if text.ends_with('.') => e,
        Err(_) => "expected a DNS name like app.internal or an IP address".to_owned(),
    };
    ctx.error(
        value.span(),
        format!("invalid `server_name` {text:?}: {reason}"),
    );
    None
}
