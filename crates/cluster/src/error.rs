//! The errors of the registry: [`ConnectError`] (start-up: configuration,
//! credentials, reachability) and [`RegisterError`] (writing this node's
//! keys), both built on [`RequestError`] (one request to the registry). They
//! never contain a password.

use std::path::PathBuf;
use std::time::Duration;

use crate::name::InvalidName;

/// Why one request to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// etcd refused the request or the connection failed, and retrying
    /// cannot help (or the deadline has passed).
    #[error("{0}")]
    Etcd(#[from] etcd_client::Error),
    /// No answer within the deadline (every endpoint unreachable, or no
    /// leader); retried meanwhile.
    #[error("etcd gave no answer within {}{}", humantime::format_duration(*.after), last.as_ref().map(|e| format!(" (last error: {})", brief(e))).unwrap_or_default())]
    Timeout {
        /// The deadline.
        after: Duration,
        /// The last error seen while retrying, if any.
        last: Option<etcd_client::Error>,
    },
}

/// An etcd client error in a few words, for people: a gRPC status is its
/// message and the innermost cause (`tcp connect error: Connection refused
/// (os error 111)`), not the whole chain of transport types.
fn brief(error: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return error.to_string();
    };
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        innermost = Some(cause);
        next = cause.source();
    }
    match innermost {
        Some(cause) => format!("{}: {cause}", status.message()),
        None => format!("{}: {}", status.code().description(), status.message()),
    }
}

/// Why [`crate::Etcd::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `node` is not set and the host name could not be read.
    #[error("could not read this host's name for the node name (set `node` in [cluster]): {0}")]
    Hostname(#[source] std::io::Error),
    /// `node` is not set and the host name cannot be a node name.
    #[error("this host's name cannot be the node name (set `node` in [cluster]): {0}")]
    InvalidNode(#[source] InvalidName),
    /// `password_env` names a variable that is not set (or not UTF-8).
    #[error("could not read the etcd password: the environment variable {name} is not set")]
    PasswordEnv {
        /// The variable's name.
        name: String,
    },
    /// `password_file` could not be read.
    #[error("could not read the etcd password from {}: {source}", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS file (`ca`, `cert`, `key`) could not be read.
    #[error("could not read the etcd {what} from {}: {source}", path.display())]
    TlsFile {
        /// Which file: "CA", "client certificate", "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The endpoints are not usable URLs, or the client refused its options.
    #[error("could not set up the etcd client for {endpoints}: {source}")]
    Client {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What the client said.
        source: etcd_client::Error,
    },
    /// etcd answered but refused the user or the password.
    #[error("could not authenticate to etcd at {endpoints} as user {username:?}: {source}")]
    Auth {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The user.
        username: String,
        /// What etcd said.
        source: etcd_client::Error,
    },
    /// No endpoint answered within the connect timeout.
    #[error("could not reach etcd at {endpoints} within {}: {detail}", humantime::format_duration(*.after))]
    Unreachable {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The connect timeout.
        after: Duration,
        /// What each endpoint did, for people (`127.0.0.1:2379: connection refused`).
        detail: String,
    },
    /// Over TLS, the first request failed: most often the certificates do
    /// not match (etcd's is not signed by `ca`, or etcd refused this node's).
    #[error(
        "could not talk to etcd at {endpoints} over TLS: {source} (check that `ca` signed etcd's certificate and that etcd's --trusted-ca-file signed `cert`; etcd logs \"rejected connection\" with its reason)"
    )]
    Tls {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What went wrong.
        source: RequestError,
    },
    /// etcd answered the first request with an error.
    #[error("could not read from etcd at {endpoints}: {source}")]
    Request {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What went wrong.
        source: RequestError,
    },
}

/// What a [`RegisterError`] was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Writing an instance's key.
    Register,
    /// Deleting an instance's key.
    Deregister,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Register => "register",
            Action::Deregister => "deregister",
        })
    }
}

/// Why registering or deregistering an instance failed.
#[derive(Debug, thiserror::Error)]
#[error("could not {action} {key}: {source}")]
pub struct RegisterError {
    /// What was being done.
    pub action: Action,
    /// The instance's key.
    pub key: String,
    /// Why it failed.
    pub source: RequestError,
}
