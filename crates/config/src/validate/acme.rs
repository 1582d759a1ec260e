//! Validation of `[acme]` (the directory URL, contacts, names, renewal) and
//! of what ACME needs from the listeners: one that serves the certificates
//! (`acme = true`) and one without TLS to answer the HTTP-01 challenge.
//! Never contacts the ACME server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::Uri;
use toml::Spanned;

use super::Ctx;
use super::matchers::dns_name;
use super::tls::file_path;
use crate::raw::{RawAcme, RawListener};
use crate::schema::ACME;
use crate::types::Acme;

pub(super) fn acme(ctx: &mut Ctx<'_, '_>, item: &Spanned<RawAcme>) -> Option<Acme> {
    let raw = item.get_ref();
    let directory = Ctx::text(&ACME, "directory", &raw.directory).and_then(|text| {
        let Err(reason) = check_directory(text) else {
            return Some(text.to_owned());
        };
        let span = raw
            .directory
            .as_ref()
            .map(Spanned::span)
            .unwrap_or_default();
        ctx.error(span, format!("invalid `directory` {text:?}: {reason}"));
        None
    });
    let contact = raw
        .contact
        .as_ref()
        .map_or(Some(Vec::new()), |list| contacts(ctx, list));
    // Missing `names` were reported by `check`.
    let names = raw.names.as_ref().and_then(|list| names(ctx, list));
    let ca_bundle = raw
        .ca_bundle
        .as_ref()
        .map(|path| file_path(ctx, "ca_bundle", path));
    let renew_before = ctx.duration(&ACME, "renew_before", &raw.renew_before, false);
    Some(Acme {
        directory: directory?,
        contact: contact?,
        names: names?,
        ca_bundle: super::optional(ca_bundle)?,
        renew_before: renew_before?,
    })
}

/// Both ways between `[acme]` and the listeners, judged on the listeners as
/// written (valid or not), so that a listener's own mistake is not reported
/// again here.
pub(super) fn listeners_for_acme(
    ctx: &mut Ctx<'_, '_>,
    acme: &Spanned<RawAcme>,
    listeners: Option<&Spanned<Vec<Spanned<RawListener>>>>,
) {
    let list = listeners.map_or(&[][..], |l| l.get_ref().as_slice());
    if list.is_empty() {
        // No listener at all is reported on its own.
        return;
    }
    // A misspelt `acme` key (reported as such) counts as serving.
    let serving = list
        .iter()
        .filter_map(|l| l.get_ref().tls.as_ref())
        .any(|tls| {
            let flag = tls.get_ref().acme.as_ref();
            flag.is_some_and(|f| *f.get_ref()) || ctx.diag.has_typo_of(tls.span().start, "acme")
        });
    if !serving {
        let message = "no listener has `acme = true` in its [listener.tls], so nothing would serve the certificates [acme] obtains";
        ctx.error(acme.span(), message);
    }
    if list.iter().all(|l| l.get_ref().tls.is_some()) {
        let message = "[acme] proves the names with the HTTP-01 challenge, which the CA sends over plain HTTP, but every listener has `tls`: add one without (on port 80, where the CA connects)";
        ctx.error(acme.span(), message);
    }
}

/// An `https://` URL, or `http://` to this machine (a test CA).
fn check_directory(text: &str) -> Result<(), String> {
    let expected =
        "expected an https:// URL, like \"https://acme-v02.api.letsencrypt.org/directory\"";
    let uri = text.parse::<Uri>().map_err(|_| expected.to_owned())?;
    let host = uri.host().filter(|h| !h.is_empty());
    match (uri.scheme_str(), host) {
        (Some(scheme), Some(_)) if scheme.eq_ignore_ascii_case("https") => Ok(()),
        (Some(scheme), Some(host)) if scheme.eq_ignore_ascii_case("http") => {
            match is_this_machine(host) {
                true => Ok(()),
                false => Err("plain http:// is allowed only for an ACME server on this machine (localhost, 127.0.0.0/8, [::1]); use https://".to_owned()),
            }
        }
        _ => Err(expected.to_owned()),
    }
}

/// `localhost`, an address in 127.0.0.0/8 or `::1` (with or without
/// brackets).
fn is_this_machine(host: &str) -> bool {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || unbracketed.parse::<Ipv6Addr>() == Ok(Ipv6Addr::LOCALHOST)
}

fn contacts(ctx: &mut Ctx<'_, '_>, list: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut out = Some(Vec::new());
    for item in list.get_ref() {
        let text = item.get_ref();
        let address = text
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
            .map(|_| &text[7..]);
        let valid = address.is_some_and(|a| {
            a.contains('@')
                && !a.starts_with('@')
                && !a.contains(|c: char| c.is_whitespace() || c == ',')
        });
        if !valid {
            let message = format!(
                "invalid `contact` {text:?}: expected a mailto: URL with one address, like \"mailto:ops@example.com\""
            );
            ctx.error(item.span(), message);
        }
        let new = ctx.unique(&mut seen, item, |c| {
            format!("contact {c:?} is listed twice")
        });
        match (valid && new, &mut out) {
            (true, Some(v)) => v.push(text.clone()),
            _ => out = None,
        }
    }
    out
}

/// The names to certify, lower-cased, in file order.
fn names(ctx: &mut Ctx<'_, '_>, list: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    if list.get_ref().is_empty() {
        let message = "`names` is empty: list the DNS names to obtain a certificate for";
        ctx.error(list.span(), message);
        return None;
    }
    // Lower-cased name → as first written.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Some(Vec::new());
    for item in list.get_ref() {
        let text = item.get_ref();
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        let parsed = if text.contains('*') {
            Err("HTTP-01 cannot validate wildcard names; list each name, or serve a wildcard certificate from files (`certificates` in [listener.tls])".to_owned())
        } else if unbracketed.parse::<IpAddr>().is_ok() {
            Err("an IP address; the ACME certificate is for DNS names".to_owned())
        } else {
            dns_name(text)
        };
        let name = match parsed {
            Ok(name) => name,
            Err(reason) => {
                ctx.error(
                    item.span(),
                    format!("invalid name {text:?} in `names`: {reason}"),
                );
                out = None;
                continue;
            }
        };
        if let Some(first) = seen.get(&name) {
            let message = match *first == text.as_str() {
                true => format!("`names` lists {text:?} twice"),
                false => format!(
                    "`names` lists {text:?} twice (as {first:?}; names are case-insensitive)"
                ),
            };
            ctx.error(item.span(), message);
            out = None;
            continue;
        }
        seen.insert(name.clone(), text);
        if let Some(v) = &mut out {
            v.push(name);
        }
    }
    out
}
