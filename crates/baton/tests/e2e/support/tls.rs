//! HTTPS pieces of the end-to-end tests: certificates made at test time
//! (rcgen), a rustls client that shows which certificate a handshake got
//! and speaks HTTP/1.1 or h2 over it, `curl`, and a probe that captures the
//! ClientHello a `curl` invocation really sends (so that a "refused" result
//! is known to come from baton, not from curl's own OpenSSL policy).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::EVENT_TIMEOUT;

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

/// A leaf certificate (chain: leaf then CA) and its key, as PEM, and the
/// leaf's DER, which is what a client sees.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
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

    /// Writes the CA certificate to `path` (for `curl --cacert`).
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_owned()
    }

    /// A leaf for `names` (the first one is also its common name), with a
    /// new key and the serial `serial`, valid from 1975 to 4096 (rcgen's
    /// defaults).
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
    /// Writes `STEM.crt` and `STEM.key` into `dir`, each replaced
    /// atomically (written aside, renamed over), the key first; returns
    /// their paths.
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

/// A TOML inline table naming a certificate's files.
pub fn cert_entry((cert, key): &(PathBuf, PathBuf)) -> String {
    format!(
        "{{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    )
}

/// A client that trusts only `roots`, verifying the name as usual, with
/// rustls's default versions and suites, offering `alpn`.
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

/// A client that accepts any certificate (signatures still checked), so
/// that a test can look at which one was served; `sni` says whether it
/// sends a name.
pub fn client_any(sni: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

/// Connects to `addr` (`IP:PORT`) and completes a handshake for `name`
/// (sent as SNI if the config sends names). Bounded by `EVENT_TIMEOUT`.
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
    pub status: u16,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl HttpsConn {
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

    /// `GET path` with `Host: host`; any error (connection, timeout) as a
    /// message, so that load loops can count failures.
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

/// What a `curl` run gave.
#[derive(Debug)]
pub struct Curl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A program of a Debian package the tests need: on PATH, or in /usr/bin
/// (where `scripts/test` installs it). Missing, it fails the test with what
/// to install.
pub fn system_tool(name: &str, package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain([Path::new("/usr/bin").join(name)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is neither on PATH nor in /usr/bin: this test needs Debian's \
                 `{package}` package (scripts/test installs it: apt-get install {package})"
            )
        })
}

/// Runs `curl -sS ARGS` to completion (bounded). A missing `curl` fails
/// the test with what to install.
pub async fn curl(args: &[&str]) -> Curl {
    let mut cmd = Command::new(system_tool("curl", "curl"));
    cmd.args(["-sS", "--max-time", "20"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(EVENT_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("could not run curl {args:?}: {e}"),
        Err(_) => panic!("curl {args:?} did not finish within {EVENT_TIMEOUT:?}"),
    };
    Curl {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The parts of a ClientHello the tests look at.
#[derive(Debug)]
pub struct ClientHello {
    /// The versions offered: `supported_versions` if sent, else the
    /// legacy version field (0x0302 is TLS 1.1, 0x0303 TLS 1.2, 0x0304
    /// TLS 1.3).
    pub versions: Vec<u16>,
    /// The cipher suites offered, without signalling values (SCSVs).
    pub cipher_suites: Vec<u16>,
}

/// The ClientHello that `curl ARGS https://probe.test:PORT/` sends, caught
/// by a listener of the test (which then closes the connection).
pub async fn curl_client_hello(args: &[&str]) -> ClientHello {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resolve = format!("probe.test:{port}:127.0.0.1");
    let url = format!("https://probe.test:{port}/");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--resolve", &resolve, &url]);
    let capture = async {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut record = vec![0u8; 5];
        tcp.read_exact(&mut record).await.unwrap();
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        let mut body = vec![0u8; len];
        tcp.read_exact(&mut body).await.unwrap();
        assert_eq!(record[0], 22, "not a handshake record: {record:?}");
        body
    };
    let (_, body) = tokio::join!(curl(&all), async {
        tokio::time::timeout(EVENT_TIMEOUT, capture)
            .await
            .unwrap_or_else(|_| panic!("curl {args:?} sent no ClientHello"))
    });
    parse_client_hello(&body)
}

/// Parses a ClientHello handshake message (one record's payload).
fn parse_client_hello(msg: &[u8]) -> ClientHello {
    let mut r = Reader(msg);
    assert_eq!(r.u8(), 1, "not a ClientHello");
    let _len = r.take(3);
    let legacy = r.u16();
    r.take(32); // random
    let session = r.u8() as usize;
    r.take(session);
    let suites = r.u16() as usize;
    let cipher_suites: Vec<u16> = r
        .take(suites)
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        // TLS_EMPTY_RENEGOTIATION_INFO_SCSV and TLS_FALLBACK_SCSV.
        .filter(|s| *s != 0x00ff && *s != 0x5600)
        .collect();
    let compression = r.u8() as usize;
    r.take(compression);
    let mut versions = vec![legacy];
    if !r.0.is_empty() {
        let total = r.u16() as usize;
        let mut ext = Reader(r.take(total));
        while !ext.0.is_empty() {
            let kind = ext.u16();
            let len = ext.u16() as usize;
            let data = ext.take(len);
            if kind == 0x002b {
                versions = data[1..]
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    // GREASE values (0x?a?a) are not versions.
                    .filter(|v| v & 0x0f0f != 0x0a0a)
                    .collect();
            }
        }
    }
    ClientHello {
        versions,
        cipher_suites,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([b[0], b[1]])
    }
}
