//! TLS termination for one listener: the rustls `ServerConfig` built from
//! `[listener.tls]`, the certificate picked by SNI for each handshake, and
//! certificate reload without a restart.
//!
//! The `ServerConfig` is built once; what a reload changes is the list of
//! certificates inside its resolver (an `ArcSwap`), so a handshake reads the
//! certificates once, lock-free, and established connections are never
//! touched. A reload either swaps in a complete, checked set or changes
//! nothing.
//!
//! A reload refuses, besides unreadable or invalid files, a certificate that
//! covers none of the names its predecessor in the same slot served
//! ("wrong name"): replacing `api.example.com`'s certificate with
//! `www.example.com`'s is almost always the wrong file copied over the
//! right one, and would break every client of the old names at once. To
//! change a slot's names on purpose, keep one name in common for one
//! reload, or restart (a new `ServerTls` has no predecessor).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use config::{CertificateFiles, Tls, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{Ticketer, cipher_suite, default_provider};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use crate::cert::{self, Loaded};
use crate::error::{TlsError, TlsErrorKind};
use crate::store::AcmeCerts;

/// Sessions remembered for resumption by ID (TLS 1.2); tickets need none.
const SESSION_CACHE: usize = 4096;

/// A certificate a listener serves from files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Its certificate file.
    pub path: PathBuf,
    /// The DNS names it covers.
    pub names: Vec<String>,
    /// When it expires.
    pub not_after: SystemTime,
}

/// TLS for one listener. Clones share the certificates: a reload through
/// any clone applies to all.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Vec<CertificateFiles>,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
    /// One reload at a time (the watcher and a SIGHUP may meet).
    reloading: Mutex<()>,
}

impl ServerTls {
    /// Reads and checks every certificate of `cfg` now and builds the
    /// listener's rustls configuration. `acme` is the store `[acme]` fills;
    /// it is consulted only when `cfg.acme` is set. A listener with no
    /// certificate files and no ACME certificate yet fails its handshakes
    /// cleanly until one is issued.
    pub fn new(cfg: &Tls, acme: Option<AcmeCerts>) -> Result<ServerTls, TlsError> {
        let provider = Arc::new(provider(cfg)?);
        let now = SystemTime::now();
        let loaded = cfg
            .certificates
            .iter()
            .map(|files| {
                let cert_pem = cert::read(&files.cert)?;
                let key_pem = cert::read(&files.key)?;
                cert::parse(files, cert_pem, key_pem, &provider, now)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolver = Arc::new(Resolver {
            certs: ArcSwap::from_pointee(loaded),
            acme: acme.filter(|_| cfg.acme),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(cfg))
            .map_err(|e| TlsError::from(TlsErrorKind::Config(e)))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // The server's order always: an explicit list is the operator's
        // order of preference, and the default one is rustls's (strongest
        // first). A client's order would let it pick a weaker suite of the
        // allowed ones (testssl.sh rates "no cipher order" HIGH).
        config.ignore_client_order = true;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = Ticketer::new().map_err(|e| TlsError::from(TlsErrorKind::Config(e)))?;
        Ok(ServerTls {
            inner: Arc::new(Inner {
                slots: cfg.certificates.clone(),
                resolver,
                config: Arc::new(config),
                provider,
                reloading: Mutex::new(()),
            }),
        })
    }

    /// The rustls configuration for the listener's handshakes (the same
    /// one for the life of this value: reloads happen inside it).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.config.clone()
    }

    /// Reads the certificate files again. If every changed slot is valid,
    /// new handshakes get the new certificates and the result says whether
    /// anything changed; on any error nothing changes (the current
    /// certificates keep serving) and the error says why. Established
    /// connections are never affected.
    ///
    /// Refused: unreadable files, no certificate or key, a key that is not
    /// the certificate's, a certificate expired or not yet valid, and a
    /// certificate that covers none of the names its predecessor in the
    /// same slot served (see the module docs). A slot whose files did not
    /// change is kept as it is, even if its certificate has expired since
    /// it was loaded: replacing it is the cure, and refusing would block
    /// the other slots.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let _one = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let current = self.inner.resolver.certs.load_full();
        let now = SystemTime::now();
        let mut next = Vec::with_capacity(current.len());
        let mut changed = false;
        for (files, old) in self.inner.slots.iter().zip(current.iter()) {
            let cert_pem = cert::read(&files.cert)?;
            let key_pem = cert::read(&files.key)?;
            if cert_pem == old.cert_pem && key_pem == old.key_pem {
                next.push(Loaded {
                    key: old.key.clone(),
                    names: old.names.clone(),
                    not_after: old.not_after,
                    cert_pem,
                    key_pem,
                });
                continue;
            }
            let new = cert::parse(files, cert_pem, key_pem, &self.inner.provider, now)?;
            if !old.names.is_empty() && !old.names.iter().any(|n| cert::covers(&new.names, n)) {
                return Err(TlsErrorKind::WrongName {
                    path: files.cert.clone(),
                    names: old.names.clone(),
                }
                .into());
            }
            changed = true;
            next.push(new);
        }
        if changed {
            self.inner.resolver.certs.store(Arc::new(next));
        }
        Ok(changed)
    }

    /// The certificates served now from files, in config order: each
    /// one's file, names and expiry.
    pub fn certificates(&self) -> Vec<CertificateInfo> {
        let current = self.inner.resolver.certs.load();
        self.inner
            .slots
            .iter()
            .zip(current.iter())
            .map(|(files, loaded)| CertificateInfo {
                path: files.cert.clone(),
                names: loaded.names.clone(),
                not_after: loaded.not_after,
            })
            .collect()
    }

    /// Every file the certificates are read from (certificates and keys),
    /// without repeats: what to watch for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::with_capacity(self.inner.slots.len() * 2);
        for slot in &self.inner.slots {
            for path in [&slot.cert, &slot.key] {
                if !files.contains(path) {
                    files.push(path.clone());
                }
            }
        }
        files
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files())
            .finish_non_exhaustive()
    }
}

/// Picks a handshake's certificate; see [`config::Tls::certificates`].
struct Resolver {
    certs: ArcSwap<Vec<Loaded>>,
    acme: Option<AcmeCerts>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        if let (Some(acme), Some(name)) = (&self.acme, sni)
            && let Some(key) = acme.get(name)
        {
            return Some(key);
        }
        let certs = self.certs.load();
        if let Some(name) = sni
            && let Some(c) = certs.iter().find(|c| cert::covers(&c.names, name))
        {
            return Some(c.key.clone());
        }
        let fallback = certs
            .first()
            .map(|c| c.key.clone())
            .or_else(|| self.acme.as_ref().and_then(AcmeCerts::first));
        if fallback.is_none() {
            tracing::debug!(sni, "no certificate to serve yet: handshake refused");
        }
        fallback
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("certs", &self.certs.load())
            .field("acme", &self.acme.is_some())
            .finish()
    }
}

/// `ring` with the configured cipher suites, in the configured order.
fn provider(cfg: &Tls) -> Result<CryptoProvider, TlsError> {
    let mut provider = default_provider();
    if let Some(names) = &cfg.cipher_suites {
        provider.cipher_suites = names
            .iter()
            .map(|name| suite_named(name))
            .collect::<Result<_, _>>()?;
    }
    Ok(provider)
}

/// The rustls suite for an IANA name of [`config::CIPHER_SUITES`].
fn suite_named(name: &str) -> Result<SupportedCipherSuite, TlsError> {
    Ok(match name {
        "TLS13_AES_256_GCM_SHA384" => cipher_suite::TLS13_AES_256_GCM_SHA384,
        "TLS13_AES_128_GCM_SHA256" => cipher_suite::TLS13_AES_128_GCM_SHA256,
        "TLS13_CHACHA20_POLY1305_SHA256" => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        other => return Err(TlsErrorKind::UnknownCipherSuite(other.to_owned()).into()),
    })
}

/// The protocol versions from `min_version` to `max_version`.
fn versions(cfg: &Tls) -> Vec<&'static SupportedProtocolVersion> {
    [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(v, _)| (cfg.min_version..=cfg.max_version).contains(v))
    .map(|(_, version)| version)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configurable_cipher_suite_exists_in_rustls() {
        for (name, version) in config::CIPHER_SUITES {
            let suite = suite_named(name).unwrap();
            // The name is rustls's own for the suite, and so is the version.
            assert_eq!(format!("{:?}", suite.suite()), *name);
            let tls13 = matches!(suite, SupportedCipherSuite::Tls13(_));
            assert_eq!(tls13, *version == TlsVersion::Tls13, "{name}");
        }
        assert!(suite_named("TLS_RSA_WITH_RC4_128_SHA").is_err());
    }
}
