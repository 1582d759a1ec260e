//! The test ACME server (pebble, its DNS, an HTTP-01 responder) and small
//! helpers: a test CA, a temporary directory, captured logs.

use std::convert::Infallible;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use config::Acme;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tls::{CHALLENGE_PREFIX, Challenges};

use super::WAIT;

/// A `pebble` and its `pebble-challtestsrv`, killed on drop, and the
/// HTTP-01 responder they validate against.
pub struct Pebble {
    pub tmp: TempDir,
    processes: Vec<Child>,
    directory: String,
    management: SocketAddr,
    ca_bundle: PathBuf,
    pub challenges: Challenges,
    /// Challenge responses served: (token, key authorization).
    answered: Arc<Mutex<Vec<(String, String)>>>,
    hits: Arc<AtomicUsize>,
    /// Answer challenges with a wrong key authorization.
    pub corrupt: Arc<AtomicBool>,
    log: PathBuf,
}

impl Pebble {
    /// Starts pebble with certificates valid for `validity` (pebble's
    /// default, five years, if `None`).
    pub async fn start(validity: Option<Duration>) -> Self {
        let pebble = binary("pebble");
        let challtestsrv = binary("pebble-challtestsrv");
        let tmp = TempDir::new();

        let ca = TestCa::new();
        let ca_bundle = tmp.path().join("ca.pem");
        let cert = tmp.path().join("cert.pem");
        let key = tmp.path().join("key.pem");
        fs::write(&ca_bundle, &ca.ca_pem).unwrap();
        fs::write(&cert, &ca.leaf_pem).unwrap();
        fs::write(&key, &ca.leaf_key_pem).unwrap();

        // The HTTP-01 responder: bound here, its port given to pebble.
        let challenges = Challenges::default();
        let answered = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let corrupt = Arc::new(AtomicBool::new(false));
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = http.local_addr().unwrap().port();
        tokio::spawn(serve_challenges(
            http,
            challenges.clone(),
            answered.clone(),
            hits.clone(),
            corrupt.clone(),
        ));

        // Pebble and challtestsrv take ports, not listeners: pick free
        // ones (all held at once, so they differ), then release them.
        let [listen, management, tls, dns_management] = free_ports();
        let dns = free_tcp_udp_port();

        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = tmp.path().join("pebble.json");
        fs::write(&config_path, config.to_string()).unwrap();

        let log = tmp.path().join("pebble.log");
        let output = || {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
        };
        let mut processes = Vec::new();
        let (out, err) = output();
        processes.push(
            Command::new(&challtestsrv)
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", challtestsrv.display())),
        );
        let (out, err) = output();
        processes.push(
            Command::new(&pebble)
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // No random validation delays, no random nonce rejections,
                // and every order validates afresh.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", pebble.display())),
        );
        let mut this = Self {
            tmp,
            processes,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: ([127, 0, 0, 1], management).into(),
            ca_bundle,
            challenges,
            answered,
            hits,
            corrupt,
            log,
        };
        for port in [dns, listen, management] {
            this.wait_listening(port).await;
        }
        this
    }

    /// Waits until something accepts on `port`, failing at once if a
    /// process exited.
    async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + WAIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            for child in &mut self.processes {
                if let Some(exit) = child.try_wait().unwrap() {
                    panic!("pebble exited ({exit}):\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on port {port} after {WAIT:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn acme_config(&self, names: &[String], renew_before: Duration) -> Acme {
        Acme {
            directory: self.directory.clone(),
            contact: vec!["mailto:ops@baton.test".into()],
            names: names.to_vec(),
            ca_bundle: Some(self.ca_bundle.clone()),
            renew_before,
        }
    }

    pub fn challenges(&self) -> Challenges {
        self.challenges.clone()
    }

    pub fn answered(&self) -> Vec<(String, String)> {
        self.answered.lock().unwrap().clone()
    }

    /// Challenge requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// New orders pebble logged.
    pub fn orders_logged(&self) -> usize {
        self.log_text().matches("/order-plz").count()
    }

    /// Pebble's root CA (a new one each run), from its management API.
    pub async fn root_ca(&self) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&self.ca_bundle).unwrap())
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let url = format!("https://{}/roots/0", self.management);
        let response = tokio::time::timeout(WAIT, client.get(url.parse().unwrap()))
            .await
            .expect("pebble's management API answers")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let pem = response.into_body().collect().await.unwrap().to_bytes();
        CertificateDer::from_pem_slice(&pem).unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("pebble's log:\n{}", self.log_text());
        }
    }
}

/// Answers `CHALLENGE_PREFIX` + token from `challenges` (spoilt while
/// `corrupt`), 404 otherwise.
async fn serve_challenges(
    listener: tokio::net::TcpListener,
    challenges: Challenges,
    answered: Arc<Mutex<Vec<(String, String)>>>,
    hits: Arc<AtomicUsize>,
    corrupt: Arc<AtomicBool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (challenges, answered) = (challenges.clone(), answered.clone());
        let (hits, corrupt) = (hits.clone(), corrupt.clone());
        let service = service_fn(move |request: Request<Incoming>| {
            let answer = request
                .uri()
                .path()
                .strip_prefix(CHALLENGE_PREFIX)
                .and_then(|token| Some((token.to_owned(), challenges.answer(token)?)));
            let response = match answer {
                Some((token, key_authorization)) => {
                    hits.fetch_add(1, Ordering::SeqCst);
                    answered
                        .lock()
                        .unwrap()
                        .push((token, key_authorization.clone()));
                    let mut body = key_authorization;
                    if corrupt.load(Ordering::SeqCst) {
                        body.push_str("-wrong");
                    }
                    Response::new(Full::new(Bytes::from(body)))
                }
                None => {
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                }
            };
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A program of Debian's `pebble` package: on PATH, or in /usr/bin.
fn binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain([Path::new("/usr/bin").join(name)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is neither on PATH nor in /usr/bin: these tests need Debian's \
                 `pebble` package (scripts/test installs it: apt-get install pebble)"
            )
        })
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// A port free for both TCP and UDP (challtestsrv's DNS listens on both).
fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// A CA and a certificate for 127.0.0.1 it signed: pebble's own HTTPS.
pub struct TestCa {
    pub ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "baton test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Self {
            ca_pem,
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "baton-acme-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Everything the `tls` crate logs (at every level) on this thread while
/// alive: the tests run on a current-thread runtime, so the ACME task's
/// logs included.
pub struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    pub fn capture() -> Self {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("tls=trace")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
