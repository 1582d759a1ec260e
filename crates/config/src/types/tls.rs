//! HTTPS: `[listener.tls]` (termination), `[acme]` (certificates obtained
//! automatically) and `[pool.NAME.tls]` / `[service.NAME.tls]` (HTTPS to
//! upstreams). Plain data; files named here are read by the `tls` crate,
//! never by `config`.

use std::path::PathBuf;
use std::time::Duration;

/// `[listener.tls]`: the listener speaks HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Certificates from PEM files, in file order. A client's SNI name picks
    /// the first whose certificate covers it (its subject alternative
    /// names, `*.` wildcards included); the first one serves clients
    /// without SNI or with a name none covers. May be empty only when
    /// `acme` is true.
    pub certificates: Vec<CertificateFiles>,
    /// Also serve the certificates `[acme]` obtains, for the names they
    /// cover (they take precedence over `certificates` for those names).
    pub acme: bool,
    /// Lowest protocol version accepted (TLS 1.2 by default).
    pub min_version: TlsVersion,
    /// Highest protocol version accepted (TLS 1.3); at least `min_version`.
    pub max_version: TlsVersion,
    /// Cipher suites by IANA name, in preference order; `None`: rustls's
    /// defaults (all strong). Each is one of [`CIPHER_SUITES`]; every
    /// enabled protocol version keeps at least one.
    pub cipher_suites: Option<Vec<String>>,
    /// Strict-Transport-Security added to the listener's responses.
    pub hsts: Option<Hsts>,
}

/// One certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM file: the leaf certificate first, then the intermediates.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS protocol version baton accepts: nothing older than 1.2 exists in
/// the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The cipher suites that may be named, by IANA name, with the protocol
/// version each belongs to. Anything else is refused: names of weak suites
/// (CBC, RC4, 3DES, static RSA key exchange, NULL, EXPORT) with a message
/// that says so, unknown names as unknown.
pub const CIPHER_SUITES: &[(&str, TlsVersion)] = &[
    ("TLS13_AES_256_GCM_SHA384", TlsVersion::Tls13),
    ("TLS13_AES_128_GCM_SHA256", TlsVersion::Tls13),
    ("TLS13_CHACHA20_POLY1305_SHA256", TlsVersion::Tls13),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", TlsVersion::Tls12),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", TlsVersion::Tls12),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        TlsVersion::Tls12,
    ),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", TlsVersion::Tls12),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", TlsVersion::Tls12),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        TlsVersion::Tls12,
    ),
];

/// `hsts` of `[listener.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hsts {
    /// `max-age`, whole seconds; non-zero.
    pub max_age: Duration,
    /// `includeSubDomains`.
    pub include_subdomains: bool,
    /// `preload` (requires `include_subdomains` and a max-age of at least a
    /// year, as the preload list does).
    pub preload: bool,
}

impl Hsts {
    /// The header value, e.g. `max-age=31536000; includeSubDomains`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// `[acme]`: certificates obtained and renewed automatically (RFC 8555),
/// answering the HTTP-01 challenge on the plain-HTTP listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The directory URL of the ACME server (Let's Encrypt by default).
    pub directory: String,
    /// Account contacts, `mailto:` URLs; may be empty.
    pub contact: Vec<String>,
    /// The names to certify, one certificate for all: DNS names, unique,
    /// never empty, no wildcards (HTTP-01 cannot prove them).
    pub names: Vec<String>,
    /// PEM bundle of CAs trusted for the connection to the ACME server, in
    /// addition to the system's (e.g. a test server's CA); `None`: the
    /// system's only.
    pub ca_bundle: Option<PathBuf>,
    /// Renew once the certificate expires within this; non-zero.
    pub renew_before: Duration,
}

/// `[pool.NAME.tls]` / `[service.NAME.tls]`: HTTPS to the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM bundle of CAs that may sign the members' certificates; `None`:
    /// the system's (webpki roots).
    pub ca_bundle: Option<PathBuf>,
    /// The name sent as SNI and checked against the member's certificate;
    /// `None`: the member address's host.
    pub server_name: Option<String>,
}
