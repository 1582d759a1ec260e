//! Stage 1: serde structs that mirror `baton.toml` exactly, every value with
//! its source span. Every field is optional here, even required ones: `check`
//! has already reported missing keys and wrong TOML types (and removed the
//! offending entries), and `validate` turns these into the typed `Config`.
//! Nothing here interprets a value.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

type S<T> = Spanned<T>;
type Opt<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) proxy: Opt<RawProxy>,
    pub(crate) access_log: Opt<RawAccessLog>,
    pub(crate) listener: Opt<Vec<S<RawListener>>>,
    pub(crate) acme: Opt<RawAcme>,
    pub(crate) cluster: Opt<RawCluster>,
    pub(crate) admin: Opt<RawAdmin>,
    #[serde(default)]
    pub(crate) pool: BTreeMap<S<String>, S<RawPool>>,
    #[serde(default)]
    pub(crate) service: BTreeMap<S<String>, S<RawService>>,
    /// Read by [`routes`]: `parse_raw` takes the array out of the tree
    /// before serde reads the rest.
    #[serde(default)]
    pub(crate) route: Vec<S<RawRoute>>,
}

/// `[proxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    pub(crate) workers: Opt<i64>,
    pub(crate) drain_timeout: Opt<String>,
    pub(crate) idle_grace: Opt<String>,
    pub(crate) trusted_proxies: Opt<Vec<S<String>>>,
    pub(crate) request_id_header: Opt<String>,
}

/// `[access_log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    pub(crate) path: Opt<String>,
    pub(crate) format: Opt<String>,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) name: Opt<String>,
    pub(crate) address: Opt<String>,
    pub(crate) max_connections: Opt<i64>,
    pub(crate) header_read_timeout: Opt<String>,
    pub(crate) max_header_bytes: Opt<IntOrString>,
    pub(crate) max_body_bytes: Opt<IntOrString>,
    pub(crate) body_read_timeout: Opt<String>,
    pub(crate) body_buffer_bytes: Opt<IntOrString>,
    pub(crate) write_timeout: Opt<String>,
    pub(crate) keepalive_timeout: Opt<String>,
    pub(crate) redirect_https: Opt<IntOrBool>,
    pub(crate) tls: Opt<RawTls>,
}

/// `[listener.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) certificates: Opt<Vec<S<RawCertificate>>>,
    pub(crate) acme: Opt<bool>,
    pub(crate) min_version: Opt<String>,
    pub(crate) max_version: Opt<String>,
    pub(crate) cipher_suites: Opt<Vec<S<String>>>,
    pub(crate) hsts: Opt<RawHsts>,
}

/// One element of `certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: Opt<String>,
    pub(crate) key: Opt<String>,
}

/// `[listener.tls.hsts]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHsts {
    pub(crate) max_age: Opt<String>,
    pub(crate) include_subdomains: Opt<bool>,
    pub(crate) preload: Opt<bool>,
}

/// `[acme]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub(crate) directory: Opt<String>,
    pub(crate) contact: Opt<Vec<S<String>>>,
    pub(crate) names: Opt<Vec<S<String>>>,
    pub(crate) ca_bundle: Opt<String>,
    pub(crate) renew_before: Opt<String>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) endpoints: Opt<Vec<S<String>>>,
    pub(crate) prefix: Opt<String>,
    pub(crate) node: Opt<String>,
    pub(crate) advertise: Opt<String>,
    pub(crate) lease_ttl: Opt<String>,
    pub(crate) username: Opt<String>,
    pub(crate) password: Opt<String>,
    pub(crate) ca: Opt<String>,
    pub(crate) cert: Opt<String>,
    pub(crate) key: Opt<String>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Opt<String>,
    pub(crate) token: Opt<String>,
}

/// `[pool.NAME.tls]` and `[service.NAME.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) ca_bundle: Opt<String>,
    pub(crate) server_name: Opt<String>,
}

/// One `[pool.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) balance: Opt<String>,
    pub(crate) members: Opt<Vec<S<RawMember>>>,
    pub(crate) discover: Opt<String>,
    pub(crate) max_connections_per_member: Opt<i64>,
    pub(crate) queue_length: Opt<i64>,
    pub(crate) queue_timeout: Opt<String>,
    pub(crate) connect_timeout: Opt<String>,
    pub(crate) header_timeout: Opt<String>,
    pub(crate) body_timeout: Opt<String>,
    pub(crate) idle_timeout: Opt<String>,
    pub(crate) total_timeout: Opt<String>,
    pub(crate) retry_non_idempotent: Opt<bool>,
    pub(crate) retry_server_errors: Opt<bool>,
    pub(crate) upstream_host: Opt<String>,
    pub(crate) tls: Opt<RawUpstreamTls>,
    pub(crate) health: Opt<RawHealth>,
    pub(crate) passive: Opt<RawPassive>,
}

/// One `[service.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) command: Opt<Vec<S<String>>>,
    pub(crate) targets: Opt<Vec<S<String>>>,
    pub(crate) version: Opt<String>,
    pub(crate) instances: Opt<i64>,
    pub(crate) env: Opt<BTreeMap<S<String>, S<String>>>,
    pub(crate) cwd: Opt<String>,
    pub(crate) socket: Opt<String>,
    pub(crate) restart: Opt<String>,
    pub(crate) ready_timeout: Opt<String>,
    pub(crate) drain_timeout: Opt<String>,
    pub(crate) strategy: Opt<String>,
    pub(crate) max_surge: Opt<i64>,
    pub(crate) max_unavailable: Opt<i64>,
    pub(crate) deploy_timeout: Opt<String>,
    pub(crate) balance: Opt<String>,
    pub(crate) max_connections_per_member: Opt<i64>,
    pub(crate) queue_length: Opt<i64>,
    pub(crate) queue_timeout: Opt<String>,
    pub(crate) connect_timeout: Opt<String>,
    pub(crate) header_timeout: Opt<String>,
    pub(crate) body_timeout: Opt<String>,
    pub(crate) idle_timeout: Opt<String>,
    pub(crate) total_timeout: Opt<String>,
    pub(crate) retry_non_idempotent: Opt<bool>,
    pub(crate) retry_server_errors: Opt<bool>,
    pub(crate) upstream_host: Opt<String>,
    pub(crate) tls: Opt<RawUpstreamTls>,
    pub(crate) health: Opt<RawHealth>,
    pub(crate) passive: Opt<RawPassive>,
    pub(crate) blue_green: Opt<RawBlueGreen>,
    pub(crate) canary: Opt<RawCanary>,
}

/// The forwarding keys that `[pool.NAME]` and `[service.NAME]` share,
/// borrowed from either, so that one function validates them.
pub(crate) struct RawForward<'a> {
    pub(crate) balance: &'a Opt<String>,
    pub(crate) max_connections_per_member: &'a Opt<i64>,
    pub(crate) queue_length: &'a Opt<i64>,
    pub(crate) queue_timeout: &'a Opt<String>,
    pub(crate) connect_timeout: &'a Opt<String>,
    pub(crate) header_timeout: &'a Opt<String>,
    pub(crate) body_timeout: &'a Opt<String>,
    pub(crate) idle_timeout: &'a Opt<String>,
    pub(crate) total_timeout: &'a Opt<String>,
    pub(crate) retry_non_idempotent: &'a Opt<bool>,
    pub(crate) retry_server_errors: &'a Opt<bool>,
    pub(crate) upstream_host: &'a Opt<String>,
    pub(crate) tls: &'a Opt<RawUpstreamTls>,
}

/// Builds a [`RawForward`] from any struct with the forwarding fields.
macro_rules! forward_of {
    ($raw:expr) => {
        RawForward {
            balance: &$raw.balance,
            max_connections_per_member: &$raw.max_connections_per_member,
            queue_length: &$raw.queue_length,
            queue_timeout: &$raw.queue_timeout,
            connect_timeout: &$raw.connect_timeout,
            header_timeout: &$raw.header_timeout,
            body_timeout: &$raw.body_timeout,
            idle_timeout: &$raw.idle_timeout,
            total_timeout: &$raw.total_timeout,
            retry_non_idempotent: &$raw.retry_non_idempotent,
            retry_server_errors: &$raw.retry_server_errors,
            upstream_host: &$raw.upstream_host,
            tls: &$raw.tls,
        }
    };
}

impl RawPool {
    pub(crate) fn forward(&self) -> RawForward<'_> {
        forward_of!(self)
    }
}

impl RawService {
    pub(crate) fn forward(&self) -> RawForward<'_> {
        forward_of!(self)
    }
}

/// `[service.NAME.blue_green]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBlueGreen {
    pub(crate) smoke: Opt<Vec<S<String>>>,
    pub(crate) rollback_window: Opt<String>,
}

/// `[service.NAME.canary]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCanary {
    pub(crate) steps: Opt<Vec<S<i64>>>,
    pub(crate) pause: Opt<String>,
    pub(crate) max_error_rate: Opt<Number>,
    pub(crate) max_p99_ratio: Opt<Number>,
    pub(crate) p99_floor: Opt<String>,
    pub(crate) min_requests: Opt<i64>,
}

/// One element of `members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMember {
    pub(crate) address: Opt<String>,
    pub(crate) weight: Opt<i64>,
}

/// `[pool.NAME.health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub(crate) path: Opt<String>,
    pub(crate) interval: Opt<String>,
    pub(crate) timeout: Opt<String>,
    pub(crate) start_interval: Opt<String>,
    pub(crate) healthy_threshold: Opt<i64>,
    pub(crate) unhealthy_threshold: Opt<i64>,
    pub(crate) expect_status: Opt<IntOrString>,
}

/// `[pool.NAME.passive]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassive {
    pub(crate) consecutive_failures: Opt<i64>,
    pub(crate) ejection_time: Opt<String>,
    pub(crate) max_ejection_time: Opt<String>,
}

/// One `[[route]]`. Read by [`routes`], not by serde (the derive stays for
/// the tests that compare its fields with the schema).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Opt<String>,
    pub(crate) listeners: Opt<Vec<S<String>>>,
    pub(crate) host: Opt<String>,
    pub(crate) path_prefix: Opt<String>,
    pub(crate) path: Opt<String>,
    pub(crate) path_regex: Opt<String>,
    pub(crate) methods: Opt<Vec<S<String>>>,
    pub(crate) headers: Opt<StringMap>,
    pub(crate) pool: Opt<String>,
    pub(crate) service: Opt<String>,
}

/// A number written as an integer (`2`) or a float (`2.0`, `nan`, `inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub(crate) f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            // A rate or a ratio: precision beyond 2^53 is moot.
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A value that may be written as an integer or a string (sizes, statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrString {
    Int(i64),
    String(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A value that may be written as an integer or a boolean
/// (`redirect_https = 443` or `true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntOrBool {
    Int(i64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for IntOrBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a boolean")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrBool, E> {
                Ok(IntOrBool::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrBool, E> {
                i64::try_from(v)
                    .map(IntOrBool::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<IntOrBool, E> {
                Ok(IntOrBool::Bool(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Why the tree could not be read into the raw structs: where, and what
/// serde would have said. `check` removes every value of the wrong type
/// and every unknown key first, so this only happens when the schema and
/// these structs disagree.
pub(crate) type Mismatch = (std::ops::Range<usize>, String);

/// A table of strings (`headers`), keys and values with their spans.
type StringMap = BTreeMap<S<String>, S<String>>;

/// The `[[route]]` array, read from the parsed tree by hand rather than
/// through serde: a file of 10,000 routes spent a fifth of its parse in
/// serde's handling of the spans of every value.
pub(crate) fn routes(items: DeArray<'_>) -> Result<Vec<S<RawRoute>>, Mismatch> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let span = item.span();
        let DeValue::Table(table) = item.into_inner() else {
            return Err((span, "invalid type, expected a table".to_owned()));
        };
        out.push(Spanned::new(span, route(table)?));
    }
    Ok(out)
}

fn route(table: DeTable<'_>) -> Result<RawRoute, Mismatch> {
    let mut route = RawRoute::default();
    for (key, value) in table {
        let field = match key.get_ref().as_ref() {
            "name" => &mut route.name,
            "host" => &mut route.host,
            "path_prefix" => &mut route.path_prefix,
            "path" => &mut route.path,
            "path_regex" => &mut route.path_regex,
            "pool" => &mut route.pool,
            "service" => &mut route.service,
            "listeners" => {
                route.listeners = Some(strings(value)?);
                continue;
            }
            "methods" => {
                route.methods = Some(strings(value)?);
                continue;
            }
            "headers" => {
                route.headers = Some(string_map(value)?);
                continue;
            }
            other => return Err((key.span(), format!("unknown field `{other}`"))),
        };
        *field = Some(string(value)?);
    }
    Ok(route)
}

fn string(value: Spanned<DeValue<'_>>) -> Result<S<String>, Mismatch> {
    let span = value.span();
    match value.into_inner() {
        DeValue::String(s) => Ok(Spanned::new(span, s.into_owned())),
        other => Err((
            span,
            format!("invalid type: {}, expected a string", other.type_str()),
        )),
    }
}

fn strings(value: Spanned<DeValue<'_>>) -> Result<S<Vec<S<String>>>, Mismatch> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => {
            let items = items.into_iter().map(string).collect::<Result<_, _>>()?;
            Ok(Spanned::new(span, items))
        }
        other => Err((
            span,
            format!("invalid type: {}, expected an array", other.type_str()),
        )),
    }
}

fn string_map(value: Spanned<DeValue<'_>>) -> Result<S<StringMap>, Mismatch> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => {
            let mut map = BTreeMap::new();
            for (key, value) in table {
                let key = Spanned::new(key.span(), key.into_inner().into_owned());
                map.insert(key, string(value)?);
            }
            Ok(Spanned::new(span, map))
        }
        other => Err((
            span,
            format!("invalid type: {}, expected a table", other.type_str()),
        )),
    }
}
