//! Stage 2: from the raw structs to the typed `Config`, reporting every
//! problem with its position. Each part is checked even when another part
//! failed, so one run lists everything; a `Config` is produced only when
//! nothing failed. Defaults come from `schema`, the same table the docs are
//! generated from. Never reads files, never resolves names.

mod acme;
mod admin;
mod cipher;
mod cluster;
mod listener;
mod matchers;
mod pool;
mod route;
mod service;
mod strategy;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use crate::error::Diagnostics;
use crate::raw::{IntOrString, Number, RawConfig};
use crate::schema::{IfMissing, Section};
use crate::size::parse_size;
use crate::types::Config;

pub(crate) use matchers::parse_upstream_addr;

/// The longest duration any key accepts: 100 years (humantime's `100y`,
/// 3,155,760,000 s). No timeout, interval or age means anything beyond it,
/// and it stays far from every overflow: a deadline this far ahead fits the
/// clocks' range (`Instant` counts `i64` seconds) many times over, and the
/// duration itself fits `u64` nanoseconds (584 years) and `i64` nanoseconds
/// (292 years), the widest units any timer or counter turns it into. HSTS's
/// `max_age`, the key that needs the most, is two years at most in practice.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// How [`MAX_DURATION`] is written in error messages and in the docs.
pub(crate) const MAX_DURATION_TEXT: &str = "100y (100 years)";

/// Validates `raw` (its routes move into the config); `None` when any
/// error was recorded in `diag`.
pub(crate) fn validate(mut raw: RawConfig, diag: &mut Diagnostics<'_>) -> Option<Config> {
    let raw_routes = std::mem::take(&mut raw.route);
    let raw = &raw;
    let mut ctx = Ctx { diag };
    let proxy = listener::proxy(&mut ctx, raw.proxy.as_ref());
    let access_log = raw
        .access_log
        .as_ref()
        .map(|log| listener::access_log(&mut ctx, log.get_ref()));
    // A misspelt `[acme]` (reported as such) counts as declared, so that
    // `acme = true` in a listener is not also reported.
    let acme_declared = raw.acme.is_some() || ctx.diag.has_typo_of(0, "acme");
    let listeners = listener::listeners(&mut ctx, raw.listener.as_ref(), acme_declared);
    let acme = raw.acme.as_ref().map(|item| {
        acme::listeners_for_acme(&mut ctx, item, raw.listener.as_ref());
        acme::acme(&mut ctx, item)
    });
    let cluster = raw
        .cluster
        .as_ref()
        .map(|item| cluster::cluster(&mut ctx, item));
    let admin = raw.admin.as_ref().map(|item| admin::admin(&mut ctx, item));
    let pools = pool::pools(&mut ctx, &raw.pool);
    if raw.cluster.is_none() && !ctx.diag.has_typo_of(0, "cluster") {
        pool::discover_needs_cluster(&mut ctx, &raw.pool);
    }
    let services = service::services(&mut ctx, &raw.service);
    shared_names(&mut ctx, raw);
    // References are checked against every declared name, even of a listener,
    // pool or service that has errors of its own, so one mistake is reported
    // once.
    let listener_names = listener::declared_names(raw.listener.as_ref());
    let upstreams = route::Declared {
        pools: raw.pool.keys().map(|k| k.get_ref().as_str()).collect(),
        services: raw.service.keys().map(|k| k.get_ref().as_str()).collect(),
    };
    let routes = route::routes(&mut ctx, raw_routes, &listener_names, &upstreams);
    if !ctx.diag.is_empty() {
        return None;
    }
    Some(Config {
        proxy: proxy?,
        access_log: optional(access_log)?,
        listeners: listeners?,
        pools: pools?,
        services: services?,
        routes: routes?.into(),
        acme: optional(acme)?,
        cluster: optional(cluster)?,
        admin: optional(admin)?,
    })
}

/// A route names a pool or a service by name alone, so the two share one
/// namespace: the later of two equal names is an error.
fn shared_names(ctx: &mut Ctx<'_, '_>, raw: &RawConfig) {
    let mut all: Vec<(&Spanned<String>, &str)> = raw
        .pool
        .keys()
        .map(|name| (name, "pool"))
        .chain(raw.service.keys().map(|name| (name, "service")))
        .collect();
    all.sort_by_key(|(name, _)| name.span().start);
    let mut first: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for (name, kind) in all {
        let text = name.get_ref().as_str();
        match first.get(text) {
            Some((other, at)) => {
                let line = ctx.diag.line_of(*at);
                let message = format!(
                    "{kind} name {text:?} is already used by [{other}.{text}] (line {line}); a route names a pool or a service by name alone, so they cannot share one"
                );
                ctx.error(name.span(), message);
            }
            None => {
                first.insert(text, (kind, name.span().start));
            }
        }
    }
}

/// The validation context: where errors go, plus helpers that read a value
/// or its schema default and check it.
pub(crate) struct Ctx<'d, 's> {
    pub(crate) diag: &'d mut Diagnostics<'s>,
}

type Opt<T> = Option<Spanned<T>>;

impl Ctx<'_, '_> {
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diag.error(span, message);
    }

    /// The schema default of a key, as written in the docs.
    fn default(section: &'static Section, key: &str) -> Option<&'static str> {
        match section.key(key).if_missing {
            IfMissing::Default(text) => Some(text),
            IfMissing::Required | IfMissing::Either(_) | IfMissing::Unset(_) => None,
        }
    }

    /// A string value, or its default.
    pub(crate) fn text<'v>(
        section: &'static Section,
        key: &str,
        value: &'v Opt<String>,
    ) -> Option<&'v str> {
        match value {
            Some(v) => Some(v.get_ref()),
            None => Self::default(section, key),
        }
    }

    /// A duration (given or default). `zero_ok` allows `0s`.
    pub(crate) fn duration(
        &mut self,
        section: &'static Section,
        key: &str,
        value: &Opt<String>,
        zero_ok: bool,
    ) -> Option<Duration> {
        match value {
            Some(v) => self.parse_duration(key, v, zero_ok),
            None => Some(parse_default(section, key, humantime::parse_duration)),
        }
    }

    /// An optional duration without default: `Ok(None)` when absent,
    /// `Err(())` when invalid (reported).
    pub(crate) fn optional_duration(
        &mut self,
        key: &str,
        value: &Opt<String>,
    ) -> Result<Option<Duration>, ()> {
        match value {
            Some(v) => self.parse_duration(key, v, false).map(Some).ok_or(()),
            None => Ok(None),
        }
    }

    fn parse_duration(
        &mut self,
        key: &str,
        v: &Spanned<String>,
        zero_ok: bool,
    ) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.error(v.span(), format!("`{key}` must be greater than 0"));
                None
            }
            Ok(d) if d > MAX_DURATION => {
                let text = v.get_ref();
                let message = format!("`{key}` must be at most {MAX_DURATION_TEXT}, not {text:?}");
                self.error(v.span(), message);
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                let text = v.get_ref();
                self.error(v.span(), format!("invalid duration {text:?} for `{key}`: {e} (examples: \"500ms\", \"2s\", \"5m\")"));
                None
            }
        }
    }

    /// An integer (given or default) within `range`.
    pub(crate) fn int(
        &mut self,
        section: &'static Section,
        key: &str,
        value: &Opt<i64>,
        range: RangeInclusive<i64>,
    ) -> Option<i64> {
        let Some(v) = value else {
            return Some(parse_default(section, key, str::parse::<i64>));
        };
        let n = *v.get_ref();
        if range.contains(&n) {
            return Some(n);
        }
        let (lo, hi) = (range.start(), range.end());
        let message = if *hi == i64::MAX {
            format!("`{key}` must be at least {lo}, not {n}")
        } else {
            format!("`{key}` must be between {lo} and {hi}, not {n}")
        };
        self.error(v.span(), message);
        None
    }

    /// An integer (given or default) that fits a `u32` and is at least `min`.
    pub(crate) fn u32(
        &mut self,
        section: &'static Section,
        key: &str,
        value: &Opt<i64>,
        min: u32,
    ) -> Option<u32> {
        let n = self.int(section, key, value, i64::from(min)..=i64::from(u32::MAX))?;
        u32::try_from(n).ok()
    }

    /// A size in bytes (given or default) within `range`.
    pub(crate) fn size(
        &mut self,
        section: &'static Section,
        key: &str,
        value: &Opt<IntOrString>,
        range: RangeInclusive<u64>,
    ) -> Option<u64> {
        let Some(v) = value else {
            return Some(parse_default(section, key, parse_size));
        };
        let bytes = match v.get_ref() {
            IntOrString::Int(n) => u64::try_from(*n).map_err(|_| "must not be negative".to_owned()),
            IntOrString::String(s) => {
                parse_size(s).map_err(|e| format!("{s:?} is not a size: {e}"))
            }
        };
        match bytes {
            Ok(n) if range.contains(&n) => Some(n),
            Ok(n) => {
                let (lo, hi) = (range.start(), range.end());
                self.error(
                    v.span(),
                    format!("`{key}` must be between {lo} and {hi} bytes, not {n}"),
                );
                None
            }
            Err(e) => {
                self.error(v.span(), format!("invalid `{key}`: {e}"));
                None
            }
        }
    }

    /// A number (given or default) for which `ok` holds; NaN never does.
    /// `requirement` completes "`key` must be …".
    pub(crate) fn number(
        &mut self,
        section: &'static Section,
        key: &str,
        value: &Opt<Number>,
        ok: impl Fn(f64) -> bool,
        requirement: &str,
    ) -> Option<f64> {
        let Some(v) = value else {
            return Some(parse_default(section, key, str::parse::<f64>));
        };
        let n = v.get_ref().0;
        if !n.is_nan() && ok(n) {
            return Some(n);
        }
        self.error(v.span(), format!("`{key}` must be {requirement}, not {n}"));
        None
    }

    /// A boolean (given or default).
    pub(crate) fn bool(section: &'static Section, key: &str, value: &Opt<bool>) -> bool {
        match value {
            Some(v) => *v.get_ref(),
            None => parse_default(section, key, str::parse::<bool>),
        }
    }

    /// One of a fixed set of words (given or default).
    pub(crate) fn choice<T: Copy>(
        &mut self,
        section: &'static Section,
        key: &str,
        value: &Opt<String>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = Self::text(section, key, value)?;
        if let Some((_, t)) = choices.iter().find(|(word, _)| *word == text) {
            return Some(*t);
        }
        let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
        if let Some(v) = value {
            let message = format!(
                "unknown `{key}` {text:?}; expected one of: {}",
                words.join(", ")
            );
            self.error(v.span(), message);
        }
        None
    }

    /// A user-chosen name (listener, pool, route): letters, digits, `-_.`.
    pub(crate) fn name(&mut self, what: &str, name: &str, span: Range<usize>) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            let message = format!(
                "invalid {what} name {name:?}: use 1 to 128 letters, digits, '-', '_' or '.'"
            );
            self.error(span, message);
        }
        ok
    }

    /// Reports a duplicate in a list of strings; returns whether `item` is new.
    pub(crate) fn unique<'a>(
        &mut self,
        seen: &mut BTreeSet<&'a str>,
        item: &'a Spanned<String>,
        message: impl FnOnce(&str) -> String,
    ) -> bool {
        let new = seen.insert(item.get_ref());
        if !new {
            self.error(item.span(), message(item.get_ref()));
        }
        new
    }
}

/// Parses a schema default; a failure is a bug in the schema table, which
/// the tests exercise (every default is parsed by the minimal-config test).
pub(super) fn parse_default<T, E: std::fmt::Debug>(
    section: &'static Section,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> T {
    let text = Ctx::default(section, key)
        .unwrap_or_else(|| panic!("schema key `{key}` {} has no default", section.place));
    parse(text).unwrap_or_else(|e| panic!("bad schema default {text:?} for `{key}`: {e:?}"))
}

/// Parses a schema default written as a TOML value (`[10, 50, 100]`); a
/// failure is a bug in the schema table, as for [`parse_default`].
pub(super) fn toml_default<T: serde::de::DeserializeOwned>(
    section: &'static Section,
    key: &str,
) -> T {
    parse_default(section, key, |text| {
        toml::de::ValueDeserializer::parse(text).and_then(T::deserialize)
    })
}

/// For an optional section: absent (`None`) is fine, present but invalid
/// (`Some(None)`) is not.
pub(super) fn optional<T>(section: Option<Option<T>>) -> Option<Option<T>> {
    section.map_or(Some(None), |valid| valid.map(Some))
}
