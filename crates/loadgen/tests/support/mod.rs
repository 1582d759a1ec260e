//! A tiny HTTP/1.1 test server that can misbehave on demand.
//!
//! Well-behaved modes use hyper's server; the two modes that break HTTP's connection rules (closing a keep-alive
//! connection without saying so, promising more body than is sent) write raw bytes, because hyper will not.

pub mod streams;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The `x-instance` value every hyper-served response carries.
pub const INSTANCE: &str = "test-a";

/// How the server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `GET /` says Hello, `POST /echo` echoes, `GET /slow?ms=N` answers after N ms; keep-alive.
    Healthy,
    /// Every response has this status.
    Status(u16),
    /// Healthy answers, each carrying `Connection: close`, after which the server closes (a draining server).
    AnnouncedClose,
    /// Healthy `GET /` answers with keep-alive semantics, then the server closes without announcing it.
    SilentClose,
    /// Healthy `GET /` answers with keep-alive semantics; the next request on the connection is read in full and
    /// then the server closes without answering it.
    HangUpOnReuse,
    /// `Content-Length: 100` with a 5-byte body, then close.
    Truncated,
    /// `GET /` answers "Goodbye", `POST /echo` flips the first byte.
    WrongBody,
}

/// A running test server; dropping it stops accepting.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves `mode`. The listener is bound before this returns, so no wait is needed.
    pub async fn start(mode: Mode) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(mode, stream));
            }
        });
        TestServer {
            addr,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const RAW_HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nx-instance: raw\r\n\r\nHello, raw!\n";

async fn serve(mode: Mode, mut stream: TcpStream) {
    match mode {
        Mode::SilentClose => {
            let _ = answer_one(&mut stream, RAW_HELLO).await;
        }
        Mode::HangUpOnReuse => {
            if answer_one(&mut stream, RAW_HELLO).await {
                let _ = answer_one(&mut stream, b"").await;
            }
        }
        Mode::Truncated => {
            let _ = answer_one(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nHello",
            )
            .await;
        }
        _ => {
            let service = service_fn(move |req| handle(mode, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

/// Reads one request (head and any Content-Length body) and writes `response`; `false` if the client went away.
/// Callers drop the stream right after, which closes it with a FIN: everything the client sent has been read, so
/// the kernel has no reason to send a RST.
async fn answer_one(stream: &mut TcpStream, response: &[u8]) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if buf.len() >= end + 4 + body_len {
                break;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    stream.write_all(response).await.is_ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn handle(mode: Mode, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let (status, payload) = match (mode, path.as_str()) {
        (Mode::Status(code), _) => (
            StatusCode::from_u16(code).unwrap(),
            Bytes::from_static(b"unavailable\n"),
        ),
        (Mode::WrongBody, "/") => (StatusCode::OK, Bytes::from_static(b"Goodbye\n")),
        (_, "/") => (
            StatusCode::OK,
            Bytes::from_static(b"Hello from the test server\n"),
        ),
        (Mode::WrongBody, "/echo") => {
            let mut wrong = body.to_vec();
            wrong[0] ^= 0xff;
            (StatusCode::OK, Bytes::from(wrong))
        }
        (_, "/echo") => (StatusCode::OK, body),
        (_, "/slow") => {
            let ms = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::OK, Bytes::from_static(b"slow done\n"))
        }
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut response = Response::builder()
        .status(status)
        .header("x-instance", INSTANCE);
    if mode == Mode::AnnouncedClose {
        response = response.header("connection", "close");
    }
    Ok(response.body(Full::new(payload)).unwrap())
}
