//! A certificate authority of the test's own (`testkit`'s, made with rcgen):
//! leaf certificates for HTTPS upstreams and listeners, the PEM files the
//! config names, and a client that trusts it. Files live in a temp directory
//! removed with the `Ca`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use testkit::TempDir;
use testkit::client::client_trusting;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub(crate) struct Ca {
    ca: testkit::pki::Ca,
    dir: TempDir,
    bundle: PathBuf,
    /// The serial of the next leaf.
    next: AtomicU64,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let ca = testkit::pki::Ca::new("baton test CA");
        let dir = TempDir::new("proxy-test");
        let bundle = ca.write(&dir.join("ca.pem"));
        Ca {
            ca,
            dir,
            bundle,
            next: AtomicU64::new(1),
        }
    }

    /// The CA's certificate, as a PEM file.
    pub(crate) fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) and its
    /// key.
    pub(crate) fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let leaf = self
            .ca
            .leaf(names, self.next.fetch_add(1, Ordering::Relaxed));
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        (leaf.der, key)
    }

    /// A leaf certificate for `names` and its key as PEM files, for
    /// `[listener.tls]`.
    pub(crate) fn leaf_files(&self, names: &[&str]) -> config::CertificateFiles {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let leaf = self.ca.leaf(names, serial);
        let (cert, key) = leaf.write(self.dir.path(), &format!("leaf-{serial}"));
        config::CertificateFiles { cert, key }
    }

    /// A client that trusts this CA only and offers HTTP/1.1.
    pub(crate) fn client(&self) -> Arc<ClientConfig> {
        client_trusting(std::slice::from_ref(&self.ca.der), &[b"http/1.1"])
    }
}
