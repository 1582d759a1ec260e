//! `[cluster]`: this node's place in a cluster of baton nodes that share an
//! etcd registry. Plain data; the `cluster` crate connects to etcd, reads the
//! host name, the password's file or variable and the TLS files, never
//! `config`.

use std::path::PathBuf;
use std::time::Duration;

/// `[cluster]`: the etcd registry this node registers its instances in and
/// discovers other nodes' instances from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// etcd's client URLs, `http://HOST:PORT` each (a bare `HOST:PORT` in
    /// the file is given the scheme); never empty, no repeats.
    pub endpoints: Vec<String>,
    /// The key prefix of this cluster: starts with `/`, no trailing `/`, no
    /// empty segment (`/baton`).
    pub prefix: String,
    /// This node's name in keys (letters, digits, `-_.`); `None`: the host
    /// name, read when the registry connects.
    pub node: Option<String>,
    /// The host (an IP address or a DNS name, without a port) at which other
    /// nodes reach this node's instances.
    pub advertise: String,
    /// The lease under which this node's keys live: whole seconds, 2 s to
    /// 1 h. A node that stops renewing it disappears from the registry
    /// after this long.
    pub lease_ttl: Duration,
    /// etcd user and password; `None`: etcd has no authentication.
    pub credentials: Option<Credentials>,
    /// TLS to etcd: `Some` exactly when the endpoints are `https://`.
    pub tls: Option<ClusterTls>,
}

/// TLS to etcd: the CA that signed etcd's certificate, and this node's
/// client certificate when etcd asks for one (`--client-cert-auth`).
/// The files are read when the registry connects (and by `baton check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// PEM file of the CA certificates etcd's certificate is checked against.
    pub ca: PathBuf,
    /// PEM files of the client certificate (chain) and its private key.
    pub client: Option<ClientCert>,
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// An etcd user and where its password is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The etcd user name (not empty).
    pub username: String,
    /// Where the password is read from.
    pub password: Password,
}

/// Where an etcd password comes from; never the configuration file itself.
/// The variable and the file are read when the registry connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// The value of this environment variable (`password = "env:NAME"`).
    Env(String),
    /// The contents of this file, without a final newline
    /// (`password = "file:PATH"`).
    File(PathBuf),
}
