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

type S<T> = Spanned<T>;
type Opt<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) proxy: Opt<RawProxy>,
    pub(crate) access_log: Opt<RawAccessLog>,
    pub(crate) listener: Opt<Vec<S<RawListener>>>,
    #[serde(default)]
    pub(crate) pool: BTreeMap<S<String>, S<RawPool>>,
    #[serde(default)]
    pub(crate) route: Vec<S<RawRoute>>,
}

/// `[proxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
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
    pub(crate) keepalive_timeout: Opt<String>,
}

/// One `[pool.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) balance: Opt<String>,
    pub(crate) members: Opt<Vec<S<RawMember>>>,
    pub(crate) max_connections_per_member: Opt<i64>,
    pub(crate) connect_timeout: Opt<String>,
    pub(crate) header_timeout: Opt<String>,
    pub(crate) idle_timeout: Opt<String>,
    pub(crate) total_timeout: Opt<String>,
    pub(crate) retry_non_idempotent: Opt<bool>,
    pub(crate) upstream_host: Opt<String>,
    pub(crate) health: Opt<RawHealth>,
    pub(crate) passive: Opt<RawPassive>,
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

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Opt<String>,
    pub(crate) listeners: Opt<Vec<S<String>>>,
    pub(crate) host: Opt<String>,
    pub(crate) path_prefix: Opt<String>,
    pub(crate) path: Opt<String>,
    pub(crate) path_regex: Opt<String>,
    pub(crate) methods: Opt<Vec<S<String>>>,
    pub(crate) headers: Opt<BTreeMap<S<String>, S<String>>>,
    pub(crate) pool: Opt<String>,
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
