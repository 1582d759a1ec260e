//! The schema of `baton.toml` as one table: every section, every key, its
//! type, its default and what it means. `check` walks the file against it,
//! `validate` takes defaults from it and `docs/config.md` is generated from
//! it, so the three cannot disagree. Tests compare it with the serde structs
//! in `raw`. It holds data only: no parsing, no I/O. The tables themselves
//! are in `client` (top level, proxy, access log, listeners, routes),
//! `upstream` (pools, the keys they share with services, health checks),
//! `service` (services and their deploy strategies), `tls` (HTTPS:
//! listeners' TLS, HSTS, ACME, TLS to upstreams) `cluster` (the etcd
//! registry) and `admin` (the control API on TCP).

mod admin;
mod client;
mod cluster;
mod service;
mod tls;
mod upstream;

pub(crate) use admin::ADMIN;
pub(crate) use client::{ACCESS_LOG, LISTENER, PROXY, ROOT, ROUTE};
pub(crate) use cluster::CLUSTER;
pub(crate) use service::{BLUE_GREEN, CANARY, SERVICE};
pub(crate) use tls::{ACME, CERTIFICATE, HSTS, LISTENER_TLS, UPSTREAM_TLS};
pub(crate) use upstream::{HEALTH, MEMBER, PASSIVE, POOL};

/// A table of the file (`[proxy]`, each `[[listener]]`, each `[pool.NAME]`…).
pub(crate) struct Section {
    /// Where an error is, with `*` standing for the named table it is in
    /// (`pool.app`, `service.web`): `"in [*.health]"`. A section may be
    /// shared by several named tables (`health` is in pools and services).
    pub(crate) place: &'static str,
    /// The heading in the docs; unique, so it also names the section.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the docs generator (tests)")
    )]
    pub(crate) heading: &'static str,
    /// A paragraph for the docs.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the docs generator (tests)")
    )]
    pub(crate) doc: &'static str,
    pub(crate) keys: &'static [Key],
}

/// One key of a section.
pub(crate) struct Key {
    pub(crate) name: &'static str,
    pub(crate) ty: Type,
    pub(crate) if_missing: IfMissing,
    /// The meaning, for the docs.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the docs generator (tests)")
    )]
    pub(crate) doc: &'static str,
}

/// The TOML shape a key accepts. `check` enforces the shape; `validate`
/// enforces the meaning (a duration string that parses, a port in range…).
#[derive(Clone, Copy)]
pub(crate) enum Type {
    String,
    Integer,
    Bool,
    /// A string such as `"2s"` or `"500ms"` (humantime).
    Duration,
    /// An integer number of bytes or a string such as `"64KiB"`.
    Size,
    /// An integer status or a string range such as `"200-399"`.
    Status,
    /// An integer or a float (TOML keeps them apart; users do not).
    Number,
    /// An integer port or a boolean (`redirect_https = 8443` or `true`).
    PortOrBool,
    /// An array of strings.
    Strings,
    /// An array of integers.
    Integers,
    /// A table whose keys are free and whose values are strings.
    StringMap,
    /// A table with the keys of the section.
    Table(&'static Section),
    /// An array of tables (`[[listener]]` or `[{..}, {..}]`).
    Tables(&'static Section),
    /// A table of tables keyed by a name chosen by the user (`[pool.NAME]`).
    NamedTables(&'static Section),
}

/// What happens when a key is absent.
#[derive(Clone, Copy)]
pub(crate) enum IfMissing {
    /// The key must be present.
    Required,
    /// Exactly one of this key and the named other key of the same section
    /// must be present (`command`/`targets`, `pool`/`service`).
    Either(&'static str),
    /// This value is used; written as in the file, without quotes.
    Default(&'static str),
    /// The feature is off or unconstrained; the text says what that means.
    Unset(
        #[cfg_attr(
            not(test),
            expect(dead_code, reason = "read by the docs generator (tests)")
        )]
        &'static str,
    ),
}

impl Type {
    /// How the docs and the error messages name the type.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Type::String => "a string",
            Type::Integer => "an integer",
            Type::Bool => "a boolean",
            Type::Duration => "a duration string (like \"2s\")",
            Type::Size => "a size (integer bytes or a string like \"64KiB\")",
            Type::Status => "a status code or range (like \"200-399\")",
            Type::Number => "a number",
            Type::PortOrBool => "a port (an integer) or a boolean",
            Type::Strings => "an array of strings",
            Type::Integers => "an array of integers",
            Type::StringMap => "a table of strings",
            Type::Table(_) => "a table",
            Type::Tables(_) => "an array of tables",
            Type::NamedTables(_) => "a table of named tables",
        }
    }
}

impl Section {
    /// The key named `name`; panics on a typo in this crate's own code.
    pub(crate) fn key(&'static self, name: &str) -> &'static Key {
        self.keys
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("schema has no key `{name}` {}", self.place))
    }

    /// `place` with the named table filled in (`pool.app`).
    pub(crate) fn place_for(&self, table: Option<&str>) -> String {
        self.place.replace('*', table.unwrap_or("NAME"))
    }
}

pub(super) const fn key(
    name: &'static str,
    ty: Type,
    if_missing: IfMissing,
    doc: &'static str,
) -> Key {
    Key {
        name,
        ty,
        if_missing,
        doc,
    }
}

/// Every section, in the order of the docs.
#[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
pub(crate) static SECTIONS: [&Section; 19] = [
    &ROOT,
    &PROXY,
    &ACCESS_LOG,
    &LISTENER,
    &LISTENER_TLS,
    &CERTIFICATE,
    &HSTS,
    &ACME,
    &POOL,
    &MEMBER,
    &HEALTH,
    &PASSIVE,
    &UPSTREAM_TLS,
    &SERVICE,
    &BLUE_GREEN,
    &CANARY,
    &ROUTE,
    &CLUSTER,
    &ADMIN,
];
