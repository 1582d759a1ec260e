//! TLS clients for tests on the `ring` provider: one that trusts given roots, one that accepts any certificate
//! (signatures still checked) so that a test can look at which one was served, a bounded handshake, and HTTP/1.1
//! or h2 (by the ALPN result) over an established connection. Never used against anything but local test servers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::EVENT_TIMEOUT;

/// A client that trusts only `roots`, verifying the name as usual, with rustls's default versions and suites,
/// offering `alpn`.
pub fn client_trusting(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client that accepts any server certificate (signatures still checked), with `provider`'s cipher suites and
/// `versions`; it sends SNI.
pub fn client_any_with(
    provider: CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let provider = Arc::new(provider);
    ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth()
}

/// Connects to `addr` (`IP:PORT`) and completes a handshake for `name` (sent as SNI if the config sends names).
/// Bounded by [`EVENT_TIMEOUT`].
pub async fn connect(
    addr: &str,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config).connect(name, tcp).await
    };
    tokio::time::timeout(EVENT_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the handshake did not end in time")))
}

/// The leaf certificate the server presented.
pub fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// HTTP/1.1 or h2 (by the ALPN result) over an established TLS connection.
pub struct HttpsConn {
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The protocol version the response came in.
    pub version: http::Version,
    /// The response's headers.
    pub headers: http::HeaderMap,
    /// The body, as text (lossy).
    pub body: String,
}

impl HttpsConn {
    /// Starts HTTP/1.1, or h2 if the handshake chose it, over `stream`.
    pub async fn over(stream: TlsStream<TcpStream>) -> Result<HttpsConn, String> {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("http/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(HttpsConn { sender })
    }

    /// `GET path` with `Host: host`; any error (connection, timeout) as a message, so that load loops can count
    /// failures.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Answer, String> {
        let exchange = async {
            let response = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                    let req = http::Request::get(path)
                        .header(http::header::HOST, host)
                        .body(Empty::new())
                        .unwrap();
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                    let req = http::Request::get(format!("https://{host}{path}"))
                        .body(Empty::new())
                        .unwrap();
                    s.send_request(req).await
                }
            }
            .map_err(|e| format!("request: {e}"))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(EVENT_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("no response in time".to_owned()))
    }
}

/// Accepts any server certificate; signatures are still checked.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
