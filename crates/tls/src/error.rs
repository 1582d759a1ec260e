//! The one error of this crate: which file (if any) and what is wrong with
//! it, worded for the operator who has to fix it. Owns wording only.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate, key or CA bundle that cannot be used, or a TLS setting
/// rustls refuses. Its message names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct TlsError {
    path: Option<PathBuf>,
    kind: TlsErrorKind,
}

/// What is wrong; each message names the file it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The file could not be read.
    #[error("could not read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("could not parse {} as PEM: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// No `CERTIFICATE` section in the file.
    #[error("no certificate in {} (expected PEM `BEGIN CERTIFICATE` sections)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The leaf certificate is not valid X.509.
    #[error("could not parse the certificate in {}: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// No private key section in the file.
    #[error(
        "no private key in {} (expected an unencrypted PEM key: PKCS#8 `BEGIN PRIVATE KEY`, PKCS#1 `BEGIN RSA PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A private key the crypto provider cannot use.
    #[error("unsupported private key in {}: {reason}", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error(
        "the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate's validity has ended.
    #[error("the certificate in {} expired on {}", path.display(), Utc(*not_after))]
    Expired {
        /// The file.
        path: PathBuf,
        /// The end of its validity.
        not_after: SystemTime,
    },
    /// The leaf certificate's validity has not begun.
    #[error("the certificate in {} is not valid before {}", path.display(), Utc(*not_before))]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// The start of its validity.
        not_before: SystemTime,
    },
    /// A reloaded certificate no longer covers any name its predecessor in
    /// the same file served: most likely the wrong file was copied there.
    #[error(
        "refusing the new certificate in {}: it covers none of the names the current certificate serves: {}",
        path.display(),
        names.join(", ")
    )]
    WrongName {
        /// The file.
        path: PathBuf,
        /// The names the current certificate serves.
        names: Vec<String>,
    },
    /// A CA certificate in a bundle that cannot be a trust anchor.
    #[error("could not use a CA certificate in {}: {reason}", path.display())]
    BadCa {
        /// The bundle.
        path: PathBuf,
        /// What webpki said.
        reason: String,
    },
    /// A cipher suite name this build does not know.
    #[error("unknown cipher suite {0:?}")]
    UnknownCipherSuite(String),
    /// The upstream name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}: expected a DNS name or an IP address")]
    ServerName(String),
    /// rustls refused the settings (e.g. no cipher suite for the versions).
    #[error("could not build the TLS configuration: {0}")]
    Config(rustls::Error),
}

impl TlsError {
    /// The file the error is about, if it is about one (for `KeyMismatch`,
    /// the certificate).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What is wrong.
    pub fn kind(&self) -> &TlsErrorKind {
        &self.kind
    }
}

impl From<TlsErrorKind> for TlsError {
    fn from(kind: TlsErrorKind) -> TlsError {
        let path = match &kind {
            TlsErrorKind::Unreadable { path, .. }
            | TlsErrorKind::BadPem { path, .. }
            | TlsErrorKind::NoCertificate { path }
            | TlsErrorKind::BadCertificate { path, .. }
            | TlsErrorKind::NoKey { path }
            | TlsErrorKind::UnsupportedKey { path, .. }
            | TlsErrorKind::Expired { path, .. }
            | TlsErrorKind::NotYetValid { path, .. }
            | TlsErrorKind::WrongName { path, .. }
            | TlsErrorKind::BadCa { path, .. } => Some(path.clone()),
            TlsErrorKind::KeyMismatch { cert, .. } => Some(cert.clone()),
            TlsErrorKind::UnknownCipherSuite(_)
            | TlsErrorKind::ServerName(_)
            | TlsErrorKind::Config(_) => None,
        };
        TlsError { path, kind }
    }
}

/// A certificate time as `2026-01-31T12:00:00Z`.
struct Utc(SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Times before 1970 do not occur in certificates anyone still uses.
        let t = self.0.max(UNIX_EPOCH);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

/// Seconds since the epoch (as X.509 parsers give them) as a `SystemTime`.
pub(crate) fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_date() {
        let e = TlsError::from(TlsErrorKind::Expired {
            path: "/etc/baton/a.pem".into(),
            not_after: from_unix(1_700_000_000),
        });
        assert_eq!(
            e.to_string(),
            "the certificate in /etc/baton/a.pem expired on 2023-11-14T22:13:20Z"
        );
        assert_eq!(e.path(), Some(Path::new("/etc/baton/a.pem")));
        let e = TlsError::from(TlsErrorKind::KeyMismatch {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        });
        assert_eq!(
            e.to_string(),
            "the private key in k.pem does not match the certificate in c.pem"
        );
    }
}
