//! Test certificates (a CA and leaves made with rcgen at test time, written
//! to a temporary directory), TLS clients, and servers on 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use bytes::Bytes;
use config::{CertificateFiles, Tls, TlsVersion};
use handoff::http::Server;
use handoff::{ListenAddr, Listener, Listeners, NamedListener, Phase};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tls::ServerTls;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The longest any single wait in these tests may take.
pub const BOUND: Duration = Duration::from_secs(10);

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("baton-tls-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A leaf certificate and its key, as PEM, and the DER the client sees.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "baton test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for `names`, valid from 1975 to 4096 (rcgen's defaults).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A leaf for `names` with its parameters adjusted by `edit`.
    pub fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
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
    /// Writes `STEM.crt` and `STEM.key` into `dir`, each replaced
    /// atomically (written aside, then renamed over), as a careful
    /// operator or certbot does.
    pub fn write(&self, dir: &TempDir, stem: &str) -> CertificateFiles {
        let files = CertificateFiles {
            cert: dir.path(&format!("{stem}.crt")),
            key: dir.path(&format!("{stem}.key")),
        };
        replace(&files.key, &self.key_pem);
        replace(&files.cert, &self.cert_pem);
        files
    }
}

/// Replaces `path` with `content` atomically.
pub fn replace(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// `[listener.tls]` with these certificates and the defaults.
pub fn tls_config(certificates: Vec<CertificateFiles>) -> Tls {
    Tls {
        certificates,
        acme: false,
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        cipher_suites: None,
        hsts: None,
    }
}

/// A client that accepts any certificate (so that the test can look at
/// which one was served), with rustls's default versions and suites.
pub fn client_any() -> ClientConfig {
    client_any_with(ring::default_provider(), rustls::DEFAULT_VERSIONS)
}

/// Like [`client_any`], with a chosen provider (cipher suites) and versions.
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

/// Connects to `addr` and completes a handshake, sending `sni` (none if
/// `None`).
pub async fn handshake(
    addr: SocketAddr,
    mut config: ClientConfig,
    sni: Option<&str>,
) -> std::io::Result<TlsStream<TcpStream>> {
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("unused.invalid"))
        .unwrap()
        .to_owned();
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        BOUND,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake did not end")
}

/// The leaf certificate the server presented.
pub fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// A bare TLS server: handshakes, then holds each connection until the
/// client closes it.
pub async fn tls_server(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut sink = Vec::new();
                    let _ = tls.read_to_end(&mut sink).await;
                }
            });
        }
    });
    addr
}

/// An HTTPS server through `handoff::http::Server` with `tls`'s config;
/// answers `/` with the protocol version and what `ConnInfo` said.
pub struct Https {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub async fn https_server(tls: ServerTls) -> Https {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let listeners = Listeners::from_listeners(vec![NamedListener {
        name: "https".into(),
        listener,
    }]);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Server::new(listeners)
        .notify(false)
        .with_shutdown(async move {
            let _ = stopped.await;
        })
        .tls(Arc::new(move || tls.server_config()));
    let mut phase = server.lifecycle();
    tokio::spawn(server.serve_with(|info| {
        let (tls, sni) = (info.tls, info.sni.clone());
        Router::new().route(
            "/",
            get(move |req: Request| async move {
                format!(
                    "{:?} tls={tls} sni={}",
                    req.version(),
                    sni.unwrap_or_default()
                )
            }),
        )
    }));
    phase.wait_for(|p| *p >= Phase::Ready).await.unwrap();
    Https { addr, _stop: stop }
}

/// Sends `GET /` over an HTTP/1.1 or HTTP/2 connection (by the ALPN
/// result) and returns the body.
pub struct HttpClient {
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl HttpClient {
    pub async fn over(stream: TlsStream<TcpStream>) -> HttpClient {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        HttpClient { sender }
    }

    pub async fn get(&mut self) -> String {
        let req = http::Request::get("https://test.invalid/")
            .header(http::header::HOST, "test.invalid")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(BOUND, async {
            match &mut self.sender {
                Sender::H1(s) => s.send_request(req).await,
                Sender::H2(s) => s.send_request(req).await,
            }
        })
        .await
        .expect("no response in time")
        .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
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
