//! A certificate chain and its key as the handshakes serve them: parsed,
//! checked against the configured names and against each other, and made
//! into rustls's `CertifiedKey` with the `ring` provider.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// A usable certificate.
pub struct Issued {
    /// Start of the leaf's validity.
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
    /// What the handshakes serve.
    pub key: Arc<CertifiedKey>,
}

/// Why a chain and key cannot be served for the configured names.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The chain is not PEM.
    #[error("the chain is not valid PEM: {0}")]
    ChainPem(rustls::pki_types::pem::Error),
    /// The chain is empty.
    #[error("the chain holds no certificate")]
    Empty,
    /// The leaf is not X.509.
    #[error("the certificate cannot be parsed: {0}")]
    X509(String),
    /// The leaf is not for the configured names.
    #[error("the certificate covers {found:?}, not the configured names {wanted:?}")]
    Names {
        /// The leaf's DNS names.
        found: BTreeSet<String>,
        /// The configured names.
        wanted: BTreeSet<String>,
    },
    /// The key is not PEM.
    #[error("the private key is not valid PEM: {0}")]
    KeyPem(rustls::pki_types::pem::Error),
    /// The key is of a type `ring` cannot sign with.
    #[error("the private key cannot be used: {0}")]
    Key(rustls::Error),
    /// The key is not the certificate's.
    #[error("the private key does not match the certificate: {0}")]
    Mismatch(rustls::Error),
}

/// Parses `chain` (PEM, leaf first) and `key` (PEM) and checks that the
/// leaf covers exactly `names` (case-insensitive) and that the key is its.
pub fn parse(chain: &str, key: &str, names: &[String]) -> Result<Issued, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertError::ChainPem)?;
    let leaf = chain.first().ok_or(CertError::Empty)?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| CertError::X509(e.to_string()))?;
    let found: BTreeSet<String> = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => BTreeSet::new(),
        Err(e) => return Err(CertError::X509(e.to_string())),
    };
    let wanted: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    if found != wanted {
        return Err(CertError::Names { found, wanted });
    }
    let validity = x509.validity();
    let not_before = timestamp(validity.not_before.timestamp());
    let not_after = timestamp(validity.not_after.timestamp());

    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(CertError::KeyPem)?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(CertError::Key)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(CertError::Mismatch)?;
    Ok(Issued {
        not_before,
        not_after,
        key: Arc::new(certified),
    })
}

fn timestamp(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs())
}
