//! The test ACME server (`testkit`'s pebble and its DNS) with an HTTP-01
//! responder of the test's own that answers from `Challenges`, as the proxy
//! does in production, and captured logs.

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use config::Acme;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tls::{CHALLENGE_PREFIX, Challenges};

pub use testkit::TempDir;
pub use testkit::pki::Ca;

/// A `pebble` and its `pebble-challtestsrv`, killed on drop, and the
/// HTTP-01 responder they validate against.
pub struct Pebble {
    // Declared first, so dropped first: pebble stops before its files go.
    pebble: testkit::pebble::Pebble,
    pub tmp: TempDir,
    pub challenges: Challenges,
    /// Challenge responses served: (token, key authorization).
    answered: Arc<Mutex<Vec<(String, String)>>>,
    hits: Arc<AtomicUsize>,
    /// Answer challenges with a wrong key authorization.
    pub corrupt: Arc<AtomicBool>,
}

impl Pebble {
    /// Starts pebble with certificates valid for `validity` (pebble's
    /// default, five years, if `None`).
    pub async fn start(validity: Option<Duration>) -> Self {
        let tmp = TempDir::new("acme");
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
        let pebble = testkit::pebble::Pebble::start_with(tmp.path(), http_port, validity).await;
        Self {
            pebble,
            tmp,
            challenges,
            answered,
            hits,
            corrupt,
        }
    }

    pub fn acme_config(&self, names: &[String], renew_before: Duration) -> Acme {
        Acme {
            directory: self.pebble.directory.clone(),
            contact: vec!["mailto:ops@baton.test".into()],
            names: names.to_vec(),
            ca_bundle: Some(self.pebble.ca_bundle.clone()),
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
        self.pebble.log_text()
    }

    /// New orders pebble logged.
    pub fn orders_logged(&self) -> usize {
        self.log_text().matches("/order-plz").count()
    }

    /// Pebble's root CA (a new one each run), from its management API.
    pub async fn root_ca(&self) -> CertificateDer<'static> {
        self.pebble.root_ca().await
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
