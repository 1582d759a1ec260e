//! Test certificates (`testkit`'s CA and leaves, written to a temporary
//! directory as a config names them), TLS clients, and servers on
//! 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use config::{CertificateFiles, Tls, TlsVersion};
use handoff::http::Server;
use handoff::{ListenAddr, Listener, Listeners, NamedListener, Phase};
use rustls::crypto::ring;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use testkit::client::HttpsConn;
use tls::ServerTls;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The longest any single wait in these tests may take.
pub const BOUND: Duration = Duration::from_secs(10);

pub use testkit::TempDir;
pub use testkit::client::{client_any_with, served};
pub use testkit::pki::{Ca, Leaf, replace};

/// A leaf's files in a test's directory, as a config names them.
pub trait LeafFiles {
    /// Writes `STEM.crt` and `STEM.key` into `dir` (each replaced
    /// atomically, as a careful operator or certbot does).
    fn files(&self, dir: &TempDir, stem: &str) -> CertificateFiles;
}

impl LeafFiles for Leaf {
    fn files(&self, dir: &TempDir, stem: &str) -> CertificateFiles {
        let (cert, key) = self.write(dir.path(), stem);
        CertificateFiles { cert, key }
    }
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
pub struct HttpClient(HttpsConn);

impl HttpClient {
    pub async fn over(stream: TlsStream<TcpStream>) -> HttpClient {
        HttpClient(HttpsConn::over(stream).await.unwrap())
    }

    pub async fn get(&mut self) -> String {
        let answer = self.0.get("test.invalid", "/").await.unwrap();
        assert_eq!(answer.status, 200);
        answer.body
    }
}
