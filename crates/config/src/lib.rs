//! The configuration file of `baton serve` (`baton.toml`): read, checked and
//! turned into a typed [`Config`], or refused with *every* problem listed at
//! file:line:column. It describes the proxy (listeners, pools, routes) and
//! the services the deploy engine runs or switches between.
//!
//! The stages, each in its own module:
//!
//! 1. TOML syntax (`toml`'s span-keeping parser). Syntax errors are reported
//!    alone: the rest of a broken file is not worth judging.
//! 2. `check`: the shape of the tree against `schema` — unknown keys, wrong
//!    TOML types, missing required keys.
//! 3. `raw`: serde structs that mirror the file, every value with its span
//!    (the `[[route]]` array is read by hand, `raw::routes`).
//! 4. `validate`: meanings and cross-references, producing [`Config`].
//!
//! `schema` is the single list of keys: the docs (`docs/config.md`) are
//! generated from it and the tests compare it with the serde structs.
//!
//! This crate never touches the network and never resolves a host name; it
//! reads exactly one file, in [`load`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
pub mod diff;
mod error;
mod raw;
mod schema;
mod size;
mod template;
mod types;
mod validate;
mod version;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

pub use diff::{Diff, diff};
pub use error::{ConfigError, ConfigErrors};
pub use template::{Template, TemplateError};
pub use types::{
    AccessLog, AccessLogFormat, AccessLogTarget, Acme, Admin, Balance, BlueGreen, CIPHER_SUITES,
    Canary, CertificateFiles, ClientCert, Cluster, ClusterTls, Config, Credentials, External,
    ForwardSettings, HeaderMatch, HeaderName, HeaderValue, HealthCheck, HostMatch, Hsts,
    InvalidUpstreamAddr, IpNet, ListenAddr, Listener, Member, Method, PassiveHealth, Password,
    PathMatch, Pool, ProxySettings, Restart, Rolling, Route, Runner, Service, SocketMode,
    StatusRange, Strategy, Supervised, Tls, TlsVersion, UnknownStrategy, Upstream, UpstreamAddr,
    UpstreamHost, UpstreamTls, Workers,
};
pub use version::{InvalidVersion, Version};

use error::Diagnostics;

/// Reads, parses and validates the file at `path`. Errors name the file as
/// `path` displays.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::whole_file(&file, format!("could not read the file: {e}")))?;
    parse(&source, &file)
}

/// Parses and validates `source`; `file_name` is only used in errors.
pub fn parse(source: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    let mut diag = Diagnostics::new(source, file_name);
    let Some(raw) = parse_raw(source, &mut diag, None) else {
        return Err(diag.finish().expect_err("a failed parse records an error"));
    };
    let config = validate::validate(raw, &mut diag);
    diag.finish()?;
    config.ok_or_else(|| {
        let message = "internal error: the configuration was refused without a reason".to_owned();
        ConfigErrors::whole_file(file_name, message)
    })
}

/// Stages 1 to 3. `None` only when errors were recorded that leave nothing
/// to validate (syntax errors). `seen` collects the keys met, for tests.
fn parse_raw(
    source: &str,
    diag: &mut Diagnostics<'_>,
    seen: Option<&mut Vec<check::SeenKey>>,
) -> Option<raw::RawConfig> {
    let (mut document, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        // After an error the parser resynchronises, which can produce noise on
        // the same line; one error per line keeps the real ones.
        let mut lines = std::collections::BTreeSet::new();
        let mut errors: Vec<_> = syntax_errors
            .iter()
            .map(|e| (e.span().unwrap_or(0..0), e))
            .collect();
        errors.sort_by_key(|(span, _)| span.start);
        for (span, e) in errors {
            if lines.insert(diag.line_of(span.start)) {
                diag.error(span, e.message().to_owned());
            }
        }
        return None;
    }
    check::check_document(&mut document, diag, seen);
    // `check` removes everything serde (or `raw::routes`) could refuse; the
    // errors below are a backstop for a schema that disagrees with `raw`.
    let routes = match document.get_mut().remove("route") {
        Some(routes) => {
            let span = routes.span();
            let read = match routes.into_inner() {
                DeValue::Array(items) => raw::routes(items),
                other => Err((
                    span,
                    format!("invalid type: {}, expected an array", other.type_str()),
                )),
            };
            match read {
                Ok(routes) => routes,
                Err((span, message)) => {
                    diag.error(span, message);
                    return None;
                }
            }
        }
        None => Vec::new(),
    };
    match raw::RawConfig::deserialize(toml::de::Deserializer::from(document)) {
        Ok(mut raw) => {
            raw.route = routes;
            Some(raw)
        }
        Err(e) => {
            diag.error(e.span().unwrap_or(0..0), e.message().to_owned());
            None
        }
    }
}
