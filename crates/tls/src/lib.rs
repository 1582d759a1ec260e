//! HTTPS for baton, on rustls with the `ring` provider (installed once, at
//! start-up, by [`install_default_provider`]; baton links no other).
//!
//! - `store`: what the ACME client hands to the handshakes (certificates by
//!   name) and to the proxy (HTTP-01 challenge answers).
//! - `server`: [`ServerTls`], TLS termination for a listener (certificates
//!   picked by SNI, versions and cipher suites from the config, reload);
//!   `cert` reads and checks the PEM files; `watch` reloads on file changes.
//! - `client`: [`client_config`] and [`server_name`] for HTTPS upstreams.
//! - `error`: [`TlsError`], which file and what is wrong with it.
//! - `acme`: [`start_acme`] obtains and renews the `[acme]` certificate into
//!   [`AcmeCerts`], answering HTTP-01 challenges through [`Challenges`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod acme;
mod cert;
mod client;
mod error;
mod server;
mod store;
mod watch;

pub use acme::{
    AcmeClient, AcmePhase, AcmeStatus, renew_at as acme_renew_at, retry_delay as acme_retry_delay,
    start as start_acme,
};
pub use client::{client_config, server_name};
pub use error::{TlsError, TlsErrorKind};
pub use server::{CertificateInfo, ServerTls};
pub use store::{AcmeCerts, CHALLENGE_PREFIX, Challenges};
pub use watch::watch;

/// Installs `ring` as the process's rustls crypto provider; later calls do
/// nothing. Call it before building any TLS config.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
