//! Parked connections (`Server::park_idle`) over real sockets: a parked
//! connection serves its next request and pipelined ones, a busy one is not
//! parked, a peer that closes it is cleaned up, its keep-alive deadline
//! still applies, the drain closes it with the idle connections and answers
//! it with `Connection: close` before that, and HTTP/2 is never parked.
//! Each step waits on the listener's connection counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use handoff::http::{ConnCounts, Limits, ServeReport, Server};
use handoff::{DrainOutcome, ListenAddr, Listener, Listeners, NamedListener, Phase};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(10);
const PARK: Duration = Duration::from_millis(50);
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

struct Running {
    addr: SocketAddr,
    counts: Arc<ConnCounts>,
    stop: Option<oneshot::Sender<()>>,
    phase: watch::Receiver<Phase>,
    served: JoinHandle<std::io::Result<ServeReport>>,
}

async fn start(limits: Limits, idle_grace: Duration) -> Running {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let listeners = Listeners::from_listeners(vec![NamedListener {
        name: "test".into(),
        listener,
    }]);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Server::new(listeners)
        .notify(false)
        .limits(limits)
        .idle_grace(idle_grace)
        .drain_timeout(BOUND)
        .park_idle(Some(PARK))
        .with_shutdown(async move {
            let _ = stopped.await;
        });
    let counts = server.connection_counts().remove(0).1;
    let mut phase = server.lifecycle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        // Busy for many park delays.
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(PARK * 6).await;
                "slow"
            }),
        );
    let served = tokio::spawn(server.serve(app));
    phase.wait_for(|p| *p >= Phase::Ready).await.unwrap();
    Running {
        addr,
        counts,
        stop: Some(stop),
        phase,
        served,
    }
}

impl Running {
    /// Waits until `check` holds for the counts.
    async fn until(&self, what: &str, check: impl Fn(&ConnCounts) -> bool) {
        let waited = tokio::time::timeout(BOUND, self.counts.until(check)).await;
        assert!(
            waited.is_ok(),
            "never {what}: open {}, parked {}",
            self.counts.open(),
            self.counts.parked()
        );
    }

    /// Starts the drain and waits until the server is in it.
    async fn drain(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.phase
            .wait_for(|p| *p >= Phase::Draining)
            .await
            .unwrap();
    }
}

fn limits(keepalive: Option<Duration>) -> Limits {
    Limits {
        keepalive_timeout: keepalive,
        header_read_timeout: Some(Duration::from_secs(60)),
        ..Limits::default()
    }
}

/// Reads `n` complete responses (each with a body `ok`, or `echo` for the
/// echo route), returning them.
#[track_caller]
fn responses<'a>(
    s: &'a mut TcpStream,
    n: usize,
    last_body: &'a str,
) -> impl std::future::Future<Output = String> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(BOUND, async {
            loop {
                let text = String::from_utf8_lossy(&got);
                if text.matches("HTTP/1.1 200").count() == n && text.ends_with(last_body) {
                    return;
                }
                let read = s.read(&mut buf).await.unwrap();
                assert!(read > 0, "closed after {text:?}");
                got.extend_from_slice(&buf[..read]);
            }
        })
        .await;
        let got = String::from_utf8(got).unwrap();
        assert!(
            read.is_ok(),
            "responses not received at {caller}, only {got:?}"
        );
        got
    }
}

/// Reads until the server closes the connection.
async fn read_to_end(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .expect("the server did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// A connection answered once, then parked.
async fn parked_connection(running: &Running) -> TcpStream {
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    responses(&mut s, 1, "ok").await;
    running.until("parked", |c| c.parked() == 1).await;
    s
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests() {
    let running = start(limits(None), Duration::from_secs(1)).await;
    let mut s = parked_connection(&running).await;

    s.write_all(GET).await.unwrap();
    let got = responses(&mut s, 1, "ok").await;
    assert!(!got.contains("connection: close"), "{got:?}");
    // It is served by a new hyper connection on the same socket, and parked
    // again once idle.
    running.until("parked again", |c| c.parked() == 1).await;
    // A request with a body, in two writes.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nec")
        .await
        .unwrap();
    s.write_all(b"ho").await.unwrap();
    responses(&mut s, 1, "echo").await;
    assert_eq!(running.counts.accepted(), 1);
    assert_eq!(running.counts.open(), 1);
}

#[tokio::test]
async fn a_busy_connection_is_not_parked() {
    let running = start(limits(None), Duration::from_secs(1)).await;
    let mut slow = TcpStream::connect(running.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Another connection parks meanwhile: the slow one has been busy longer
    // than the park delay, and is not parked.
    let _idle = parked_connection(&running).await;
    responses(&mut slow, 1, "slow").await;
    assert_eq!(running.counts.open(), 2);
    running.until("both parked", |c| c.parked() == 2).await;
}

#[tokio::test]
async fn pipelined_requests_on_a_parked_connection_are_all_answered() {
    let running = start(limits(None), Duration::from_secs(1)).await;
    let mut s = parked_connection(&running).await;

    // Two whole requests and the start of a third in one write, then the rest.
    let mut burst = GET.repeat(2);
    burst.extend_from_slice(b"GET / HT");
    s.write_all(&burst).await.unwrap();
    let got = responses(&mut s, 2, "ok").await;
    assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got:?}");
    s.write_all(b"TP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    responses(&mut s, 1, "ok").await;
    running.until("parked again", |c| c.parked() == 1).await;
}

#[tokio::test]
async fn a_peer_that_closes_a_parked_connection_is_cleaned_up() {
    // No keep-alive deadline: only the peer's close can end it.
    let running = start(limits(None), Duration::from_secs(1)).await;
    let s = parked_connection(&running).await;
    assert_eq!(running.counts.open(), 1);
    drop(s);
    running
        .until("closed", |c| c.open() == 0 && c.parked() == 0)
        .await;
}

#[tokio::test]
async fn the_keepalive_deadline_still_closes_a_parked_connection() {
    let running = start(limits(Some(PARK * 10)), Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    responses(&mut s, 1, "ok").await;
    // Parked, unless a very slow machine let the keep-alive deadline pass first.
    running
        .until("parked", |c| c.parked() == 1 || c.open() == 0)
        .await;
    // A clean close, with nothing more said (no 408 for an idle client).
    assert_eq!(read_to_end(&mut s).await, "");
    running
        .until("closed", |c| c.open() == 0 && c.parked() == 0)
        .await;
}

#[tokio::test]
async fn the_drain_closes_parked_connections_with_the_idle_ones() {
    let mut running = start(limits(None), Duration::from_secs(1)).await;
    let mut s = parked_connection(&running).await;
    running.drain().await;
    assert_eq!(read_to_end(&mut s).await, "");
    // Closed when idle connections are, not at the drain deadline (600 s).
    let report = running.served.await.unwrap().unwrap();
    assert_eq!(report.outcome, DrainOutcome::Drained);
    assert_eq!(running.counts.open(), 0);
}

#[tokio::test]
async fn a_parked_connection_used_while_draining_is_told_to_close() {
    let mut running = start(limits(None), Duration::from_secs(60)).await;
    let mut s = parked_connection(&running).await;
    running.drain().await;
    s.write_all(GET).await.unwrap();
    let got = read_to_end(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.contains("connection: close"), "{got:?}");
    let report = running.served.await.unwrap().unwrap();
    assert_eq!(report.outcome, DrainOutcome::Drained);
}

#[tokio::test]
async fn http2_connections_are_never_parked() {
    let running = start(limits(None), Duration::from_secs(1)).await;
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("http://x/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let response = h2.send_request(get()).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    response.into_body().collect().await.unwrap();
    // An HTTP/1 connection idle for the park delay after the HTTP/2 one was
    // is parked, the HTTP/2 one is not, and still serves.
    let _idle = parked_connection(&running).await;
    assert_eq!(running.counts.parked(), 1);
    assert_eq!(running.counts.open(), 2);
    let response = h2.send_request(get()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(running.counts.accepted(), 2);
}
