//! The schema table of `[cluster]`: the etcd registry this node shares with
//! the other nodes of a cluster (`docs/cluster.md` documents the keys baton
//! writes there).

use super::IfMissing::{Default, Required, Unset};
use super::{Section, Type, key};

pub(crate) static CLUSTER: Section = Section {
    place: "in [cluster]",
    heading: "`[cluster]`",
    doc: "Several baton nodes sharing one etcd registry: each node registers the instances it runs under a lease it keeps alive, and discovers those of every node. Without `[cluster]`, baton runs on one machine and never contacts etcd. A node registers every instance its pools route to, takes it out of the registry (and waits until every node's front door has stopped routing to it) before signalling it, and fills the pools with `discover` from the registry; the key layout and value format are in `docs/cluster.md`. `baton check` validates the section without connecting; `baton serve` connects at start and stops with the reason if etcd cannot be reached or refuses the credentials. Needs a baton built with `--features cluster`.",
    keys: &[
        key(
            "endpoints",
            Type::Strings,
            Required,
            "etcd's client URLs, `http://HOST:PORT` or `https://HOST:PORT` (a bare `HOST:PORT` means `http://`): 1 to 16, no repeats, all with the same scheme. List every member of the etcd cluster, so that the registry survives the loss of one. `https://` needs `ca`.",
        ),
        key(
            "prefix",
            Type::String,
            Default("/baton"),
            "The key prefix of this cluster, so that one etcd can hold several: starts with `/`, no trailing `/`, segments of letters, digits, `-`, `_` and `.` (not `.` or `..`), 256 bytes at most.",
        ),
        key(
            "node",
            Type::String,
            Unset("this host's name"),
            "This node's name in the registry: 1 to 128 letters, digits, `-`, `_` or `.`; unique in the cluster.",
        ),
        key(
            "advertise",
            Type::String,
            Required,
            "The host at which the other nodes reach this node's instances: an IP address (`10.0.0.5`, `fd00::5`) or a DNS name, without a port (each instance adds its own).",
        ),
        key(
            "lease_ttl",
            Type::Duration,
            Default("10s"),
            "The lease this node's registrations live under, in whole seconds from `2s` to `1h`. The node renews it every third of this; a node that dies or is cut off disappears from every front door within this long, and a longer etcd outage makes it register again on reconnect.",
        ),
        key(
            "username",
            Type::String,
            Unset("etcd without authentication"),
            "The etcd user (etcd's `--auth` role-based access); requires `password`. The user needs read and write access to the keys under `prefix`.",
        ),
        key(
            "password",
            Type::String,
            Unset("none; required with `username`"),
            "Where the etcd password is, never the password itself: `\"env:NAME\"` (an environment variable) or `\"file:PATH\"` (a file, its final newline removed; a relative path is relative to the directory baton runs in). Read when baton connects; never logged.",
        ),
        key(
            "ca",
            Type::String,
            Unset("none; required with `https://` endpoints"),
            "TLS to etcd: the PEM file of the CA certificates that etcd's server certificate is checked against (etcd's `--trusted-ca-file` side of it; the certificate must name the host or IP address of each endpoint). Only with `https://` endpoints. Read when baton connects and by `baton check`.",
        ),
        key(
            "cert",
            Type::String,
            Unset("no client certificate"),
            "TLS to etcd: the PEM file of this node's client certificate (chain, leaf first), for an etcd started with `--client-cert-auth`; requires `key`. Only with `https://` endpoints.",
        ),
        key(
            "key",
            Type::String,
            Unset("none; required with `cert`"),
            "TLS to etcd: the PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1); requires `cert`.",
        ),
    ],
};
