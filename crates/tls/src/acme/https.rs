//! HTTPS to the ACME server: rustls on `ring`, trusting the system's CAs and
//! `[acme] ca_bundle` (a test server's CA), with every request bounded in
//! time so that a server that accepts and then stays silent cannot stall
//! renewals.

use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How long one request (connection, TLS, response and body) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTPS client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The CA bundle cannot be read.
    #[error("could not read the ACME CA bundle {}: {source}", path.display())]
    Read {
        /// The bundle.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The CA bundle holds no usable certificate.
    #[error("could not use the ACME CA bundle {}: {reason}", path.display())]
    Bundle {
        /// The bundle.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Nothing to trust at all.
    #[error(
        "could not find any CA to trust for the ACME server: the system has none and no ca_bundle is set"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("could not set up TLS to the ACME server: {0}")]
    Rustls(#[from] rustls::Error),
}

/// An HTTPS client for the ACME server.
pub fn client(ca_bundle: Option<&Path>) -> Result<Box<dyn HttpClient>, HttpSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "could not load some of the system's CA certificates");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_bundle {
        add_bundle(&mut roots, path)?;
    }
    if roots.is_empty() {
        return Err(HttpSetupError::NoRoots);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Box::new(Timed(
        Client::builder(TokioExecutor::new()).build(connector),
    )))
}

fn add_bundle(roots: &mut RootCertStore, path: &Path) -> Result<(), HttpSetupError> {
    let pem = fs::read(path).map_err(|source| HttpSetupError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bundle = |reason: String| HttpSetupError::Bundle {
        path: path.to_owned(),
        reason,
    };
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bundle(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bundle(format!("certificate {} is not a usable CA: {e}", added + 1)))?;
        added += 1;
    }
    if added == 0 {
        return Err(bundle("it holds no certificate".into()));
    }
    Ok(())
}

/// The hyper client with [`REQUEST_TIMEOUT`] over each whole exchange
/// (instant-acme reads the body later, unbounded: it is read here).
struct Timed(Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl HttpClient for Timed {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = HttpClient::request(&self.0, req);
        Box::pin(async move {
            let exchange = async {
                let mut response = response.await?;
                let body = response
                    .body
                    .into_bytes()
                    .await
                    .map_err(instant_acme::Error::Other)?;
                Ok(BytesResponse {
                    parts: response.parts,
                    body: Box::new(body),
                })
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err(instant_acme::Error::Other(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no response from the ACME server within {}s",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                )))),
            }
        })
    }
}
