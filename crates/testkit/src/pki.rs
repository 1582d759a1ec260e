//! A certificate authority made at test time with rcgen (ECDSA P-256 keys), its leaf certificates, and the PEM
//! files a config names. Test material only: keys are never protected, and validity is rcgen's default (1975 to
//! 4096) unless a caller edits it.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::CertificateDer;

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate as PEM.
    pub pem: String,
    /// The CA certificate, for a client's root store.
    pub der: CertificateDer<'static>,
}

/// A leaf certificate (chain: leaf then CA) and its key, as PEM, and the leaf's DER, which is what a client sees.
pub struct Leaf {
    /// The chain as PEM: the leaf, then the CA.
    pub cert_pem: String,
    /// The leaf's private key as PEM (PKCS#8).
    pub key_pem: String,
    /// The leaf certificate alone.
    pub der: CertificateDer<'static>,
}

impl Ca {
    /// A new CA named `name` (its common name), allowed to sign certificates.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `path` (for `curl --cacert` or a `ca_bundle`); returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_owned()
    }

    /// A leaf for `names` (DNS names or IP addresses; the first one is also its common name), with a new key and
    /// the serial `serial`.
    pub fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        self.leaf_with(names, serial, |_| {})
    }

    /// Like [`Ca::leaf`], with the parameters adjusted by `edit`.
    pub fn leaf_with(
        &self,
        names: &[&str],
        serial: u64,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.serial_number = Some(SerialNumber::from(serial));
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl Leaf {
    /// Writes `STEM.crt` and `STEM.key` into `dir`, each replaced atomically (written aside, renamed over), the
    /// key first, as a careful operator or certbot does; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        replace(&key, &self.key_pem);
        replace(&cert, &self.cert_pem);
        (cert, key)
    }
}

/// Replaces `path` with `content` atomically.
pub fn replace(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}
