//! HTTPS for baton, on rustls with the `ring` provider (installed once, at
//! start-up, by [`install_default_provider`]; baton links no other).
//!
//! - `store`: what the ACME client hands to the handshakes (certificates by
//!   name) and to the proxy (HTTP-01 challenge answers).

#![forbid(unsafe_code)]

mod store;

pub use store::{AcmeCerts, CHALLENGE_PREFIX, Challenges};

/// Installs `ring` as the process's rustls crypto provider; later calls do
/// nothing. Call it before building any TLS config.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
