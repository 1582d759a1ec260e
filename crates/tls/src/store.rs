//! Shared state between the ACME client, the TLS handshakes and the proxy.
//! Both are read on hot paths (every handshake, every request to the
//! challenge path) and written rarely (an issuance, a challenge).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

/// Certificates obtained by ACME and the names each covers; a handshake
/// whose SNI name one covers is served it. Clones share the store.
#[derive(Clone, Default)]
pub struct AcmeCerts(Arc<ArcSwap<Entries>>);

/// Each certificate with the names it covers, in the order obtained.
type Entries = Vec<(Vec<String>, Arc<CertifiedKey>)>;

impl AcmeCerts {
    /// The certificate for `sni` (exact name, case-insensitive), if any.
    pub fn get(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        self.0
            .load()
            .iter()
            .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(sni)))
            .map(|(_, key)| key.clone())
    }

    /// Serves `key` for `names` from the next handshake on, replacing any
    /// certificate for the same set of names.
    pub fn set(&self, names: Vec<String>, key: Arc<CertifiedKey>) {
        self.0.rcu(|current| {
            let mut next: Vec<_> = current
                .iter()
                .filter(|(n, _)| *n != names)
                .cloned()
                .collect();
            next.push((names.clone(), key.clone()));
            next
        });
    }

    /// The certificate obtained first, if any: what a listener with no
    /// certificate files serves to a client whose name none covers (or
    /// that sends no SNI).
    pub fn first(&self) -> Option<Arc<CertifiedKey>> {
        self.0.load().first().map(|(_, key)| key.clone())
    }

    /// Whether any certificate is there yet.
    pub fn is_empty(&self) -> bool {
        self.0.load().is_empty()
    }
}

/// The HTTP-01 challenges being answered: token → key authorization, served
/// at `/.well-known/acme-challenge/TOKEN` on the plain-HTTP listeners.
#[derive(Clone, Default)]
pub struct Challenges(Arc<RwLock<HashMap<String, String>>>);

/// The path prefix of HTTP-01 challenges.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl Challenges {
    /// The key authorization for `token`, if it is being answered.
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Starts answering `token`.
    pub fn insert(&self, token: String, key_authorization: String) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, key_authorization);
    }

    /// Stops answering `token`.
    pub fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}
