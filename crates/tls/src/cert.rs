//! Reading a certificate chain and its key from PEM files, checking them
//! (the key is the certificate's, the certificate is valid now) and the
//! names a certificate covers. Owns file parsing and name matching; never
//! decides which certificate a handshake gets (that is `server`).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use config::CertificateFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};
use x509_parser::extensions::GeneralName;

use crate::error::{TlsError, TlsErrorKind, from_unix};

/// A certificate chain with its key, checked, and what it was read from.
pub(crate) struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The DNS names (subject alternative names) the leaf covers,
    /// lowercase; `*.` wildcards as written.
    pub names: Vec<String>,
    /// When the leaf expires.
    pub not_after: SystemTime,
    /// The files' bytes, to tell whether a reload changes anything.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("names", &self.names)
            .finish()
    }
}

/// Reads a file whole.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| {
        TlsErrorKind::Unreadable {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

/// The certificates of a PEM file, in file order; at least one.
pub(crate) fn certificates(
    path: &Path,
    pem_bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if chain.is_empty() {
        return Err(TlsErrorKind::NoCertificate {
            path: path.to_owned(),
        }
        .into());
    }
    Ok(chain)
}

/// Parses and checks one certificate slot from the files' bytes: the
/// chain, the key (which must be the leaf's), and the leaf's validity at
/// `now`.
pub(crate) fn parse(
    files: &CertificateFiles,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, TlsError> {
    let chain = certificates(&files.cert, &cert_pem)?;
    let (names, not_before, not_after) = inspect(&files.cert, &chain[0])?;
    if now < not_before {
        return Err(TlsErrorKind::NotYetValid {
            path: files.cert.clone(),
            not_before,
        }
        .into());
    }
    if now > not_after {
        return Err(TlsErrorKind::Expired {
            path: files.cert.clone(),
            not_after,
        }
        .into());
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsErrorKind::NoKey {
                path: files.key.clone(),
            }
            .into());
        }
        Err(e) => return Err(bad_pem(&files.key, e)),
    };
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        TlsError::from(TlsErrorKind::UnsupportedKey {
            path: files.key.clone(),
            reason: e.to_string(),
        })
    })?;
    let key = CertifiedKey::new(chain, signing_key);
    match key.keys_match() {
        // A key whose public half the provider cannot derive cannot be
        // compared; the handshake would fail visibly anyway.
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsErrorKind::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            }
            .into());
        }
        Err(e) => {
            return Err(TlsErrorKind::BadCertificate {
                path: files.cert.clone(),
                reason: e.to_string(),
            }
            .into());
        }
    }
    Ok(Loaded {
        key: Arc::new(key),
        not_after,
        names,
        cert_pem,
        key_pem,
    })
}

/// The leaf's DNS names and validity period.
fn inspect(
    path: &Path,
    leaf: &CertificateDer<'_>,
) -> Result<(Vec<String>, SystemTime, SystemTime), TlsError> {
    let bad = |reason: String| {
        TlsError::from(TlsErrorKind::BadCertificate {
            path: path.to_owned(),
            reason,
        })
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| bad(e.to_string()))?;
    let validity = cert.validity();
    let not_before = from_unix(validity.not_before.timestamp());
    let not_after = from_unix(validity.not_after.timestamp());
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?
    {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                let dns = dns.trim_end_matches('.').to_ascii_lowercase();
                if !dns.is_empty() && !names.contains(&dns) {
                    names.push(dns);
                }
            }
        }
    }
    Ok((names, not_before, not_after))
}

fn bad_pem(path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsErrorKind::Unreadable {
            path: path.to_owned(),
            source,
        },
        e => TlsErrorKind::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
    .into()
}

/// Whether any of `patterns` (a certificate's DNS names) covers `name`.
pub(crate) fn covers(patterns: &[String], name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    patterns.iter().any(|p| matches(p, name))
}

/// RFC 6125 matching as browsers do it: case-insensitive, and a `*.`
/// wildcard stands for exactly one whole leftmost label.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') => {
            name.len() > suffix.len() && name.is_char_boundary(name.len() - suffix.len()) && {
                let (label, rest) = name.split_at(name.len() - suffix.len());
                !label.contains('.') && rest.eq_ignore_ascii_case(suffix)
            }
        }
        _ => pattern.eq_ignore_ascii_case(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_names_match_case_insensitively() {
        let p = names(&["api.example.com"]);
        assert!(covers(&p, "api.example.com"));
        assert!(covers(&p, "API.Example.COM"));
        assert!(covers(&p, "api.example.com."));
        assert!(!covers(&p, "example.com"));
        assert!(!covers(&p, "x.api.example.com"));
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let p = names(&["*.example.com"]);
        assert!(covers(&p, "a.example.com"));
        assert!(covers(&p, "A.EXAMPLE.com"));
        assert!(!covers(&p, "example.com"));
        assert!(!covers(&p, "a.b.example.com"));
        assert!(!covers(&p, ".example.com"));
        assert!(!covers(&p, "aexample.com"));
        // Only a whole leftmost label is a wildcard.
        assert!(!covers(&names(&["a*.example.com"]), "ab.example.com"));
    }
}
