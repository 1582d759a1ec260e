//! A certificate authority of the test's own (rcgen): leaf certificates
//! for HTTPS upstreams and listeners, the PEM files the config names, and
//! a client that trusts it. Files live in the temp directory and are
//! removed with the `Ca`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    bundle: PathBuf,
    /// Every file written, removed on drop.
    files: Mutex<Vec<PathBuf>>,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "baton test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let bundle = temp_file("ca");
        std::fs::write(&bundle, issuer.pem()).unwrap();
        Ca {
            issuer,
            files: Mutex::new(vec![bundle.clone()]),
            bundle,
        }
    }

    /// The CA's certificate, as a PEM file.
    pub(crate) fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) and its
    /// key.
    pub(crate) fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let (cert, key) = self.leaf_pem(names);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// A leaf certificate for `names` and its key as PEM files, for
    /// `[listener.tls]`.
    pub(crate) fn leaf_files(&self, names: &[&str]) -> config::CertificateFiles {
        let (cert, key) = self.leaf_pem(names);
        let files = config::CertificateFiles {
            cert: temp_file("cert"),
            key: temp_file("key"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let mut written = self.files.lock().unwrap();
        written.extend([files.cert.clone(), files.key.clone()]);
        files
    }

    fn leaf_pem(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert, key)
    }

    /// A client that trusts this CA only and offers HTTP/1.1.
    pub(crate) fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        for file in self.files.lock().unwrap().drain(..) {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn temp_file(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "baton-proxy-test-{}-{}-{what}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
