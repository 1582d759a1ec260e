//! The server's protections, over real sockets: a slow request head gets
//! 408, an oversized one 431, an idle keep-alive connection is closed, and a
//! draining server answers `Connection: close`. None of it applies to a
//! connection that switched protocols (`101`), draining or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, routing::get};
use handoff::http::{ConnCounts, Limits, Server};
use handoff::{ListenAddr, Listener, Listeners, NamedListener, Phase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

const BOUND: Duration = Duration::from_secs(10);

async fn start(limits: Limits) -> (SocketAddr, oneshot::Sender<()>, watch::Receiver<Phase>) {
    let (addr, stop, phase, _) =
        start_with(|server| server.limits(limits).idle_grace(Duration::from_millis(100)));
    (addr, stop, phase)
}

/// [`start`], with the listener's connection counts.
async fn start_counted(limits: Limits) -> (SocketAddr, oneshot::Sender<()>, Arc<ConnCounts>) {
    let counts = Arc::new(std::sync::Mutex::new(None));
    let seen = counts.clone();
    let (addr, stop, _, _) = start_with(move |server| {
        let server = server.limits(limits).idle_grace(Duration::from_millis(100));
        *seen.lock().unwrap() = Some(server.connection_counts().remove(0).1);
        server
    });
    let counts = counts.lock().unwrap().take().unwrap();
    (addr, stop, counts)
}

/// A server configured by `configure`, with the task that serves it.
fn start_with(
    configure: impl FnOnce(Server) -> Server,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    watch::Receiver<Phase>,
    tokio::task::JoinHandle<std::io::Result<handoff::http::ServeReport>>,
) {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let listeners = Listeners::from_listeners(vec![NamedListener {
        name: "test".into(),
        listener,
    }]);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = configure(Server::new(listeners).notify(false)).with_shutdown(async move {
        let _ = stopped.await;
    });
    let phase = server.lifecycle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", get(upgrade_to_echo))
        .route("/hold", get(hold))
        .route("/endless", get(|| endless(&ENDLESS_DROPPED)))
        .route("/endless-h2", get(|| endless(&ENDLESS_H2_DROPPED)))
        .route("/endless-probe", get(|| endless(&ENDLESS_PROBE_DROPPED)))
        .route("/trickle", get(trickle));
    let serving = tokio::spawn(server.serve(app));
    (addr, stop, phase, serving)
}

/// `/hold` has started.
static HOLDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
/// Lets `/hold` answer.
static RELEASE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// Answers once the test releases it.
async fn hold() -> &'static str {
    HOLDING.add_permits(1);
    RELEASE.acquire().await.unwrap().forget();
    "held"
}

/// A permit each time the body of `/endless` is dropped: the server gave
/// up on it.
static ENDLESS_DROPPED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
/// The same for `/endless-h2`, the HTTP/2 test's own.
static ENDLESS_H2_DROPPED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// The same for `/endless-probe`.
static ENDLESS_PROBE_DROPPED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
/// Lets `/trickle` send its second part.
static TRICKLE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// `first`, then, once the test releases it, `second` and the end: a body
/// that waits for its own data, as an event stream between events does.
async fn trickle() -> axum::response::Response {
    let (mut tx, body) = http_body_util::channel::Channel::<bytes::Bytes>::new(1);
    tokio::spawn(async move {
        let _ = tx.send_data(bytes::Bytes::from_static(b"first ")).await;
        TRICKLE.acquire().await.unwrap().forget();
        let _ = tx.send_data(bytes::Bytes::from_static(b"second")).await;
    });
    axum::response::Response::new(axum::body::Body::new(body))
}

/// A response body that never ends, 64 KiB a frame, as fast as the client
/// takes it; adds a permit to its semaphore when dropped.
struct Endless(&'static tokio::sync::Semaphore);

impl hyper::body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(
            bytes::Bytes::from_static(&CHUNK),
        ))))
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        self.0.add_permits(1);
    }
}

async fn endless(dropped: &'static tokio::sync::Semaphore) -> axum::response::Response {
    axum::response::Response::new(axum::body::Body::new(Endless(dropped)))
}

/// Switches to a protocol that echoes every byte back.
async fn upgrade_to_echo(mut req: axum::extract::Request) -> axum::response::Response {
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = on.await {
            let (mut r, mut w) = tokio::io::split(hyper_util::rt::TokioIo::new(io));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    axum::response::Response::builder()
        .status(101)
        .header("upgrade", "echo")
        .header("connection", "upgrade")
        .body(axum::body::Body::empty())
        .unwrap()
}

const UPGRADE: &[u8] =
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n";

/// Reads a response head (bounded).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(BOUND, s.read(&mut byte))
            .await
            .expect("no response head")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `text` on an upgraded connection and expects it back.
async fn echoes(s: &mut TcpStream, text: &str) {
    s.write_all(text.as_bytes()).await.unwrap();
    let mut got = vec![0u8; text.len()];
    tokio::time::timeout(BOUND, s.read_exact(&mut got))
        .await
        .expect("no echo")
        .unwrap_or_else(|e| panic!("no echo of {text:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&got), text);
}

/// Reads until EOF (bounded), returning everything received.
async fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .expect("server did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slowloris_head_gets_408() {
    let (addr, _stop, counts) = start_counted(Limits {
        header_read_timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    })
    .await;
    // Half a request head, then nothing.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let got = read_all(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    // Connecting and sending nothing at all gets the same answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(read_all(&mut s).await.starts_with("HTTP/1.1 408"));
    assert_eq!((counts.head_timeouts(), counts.write_timeouts()), (2, 0));
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let (addr, _stop, _) = start(Limits {
        max_header_bytes: 8192,
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(20_000);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The server may close before reading everything; the answer is what counts.
    let _ = s.write_all(req.as_bytes()).await;
    let got = read_all(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_without_a_408() {
    let (addr, _stop, _) = start(Limits {
        keepalive_timeout: Some(Duration::from_millis(200)),
        header_read_timeout: Some(Duration::from_secs(5)),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut s).await;
    // Exactly one response, then a clean close: no 408 for an idle client.
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.ends_with("ok"), "{got:?}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got:?}");
}

#[tokio::test]
async fn keepalive_requests_within_the_limits_are_served() {
    let (addr, _stop, _) = start(Limits {
        keepalive_timeout: Some(Duration::from_secs(5)),
        header_read_timeout: Some(Duration::from_secs(5)),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(BOUND, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(
            got.starts_with("HTTP/1.1 200") && got.ends_with("ok"),
            "{got:?}"
        );
    }
}

#[tokio::test]
async fn draining_server_answers_connection_close() {
    let (addr, stop, mut phase) = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("connection: close"));
    stop.send(()).unwrap();
    phase.wait_for(|p| *p >= Phase::Draining).await.unwrap();
    // The next request on the same keep-alive connection is still served,
    // and told to go elsewhere afterwards.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.contains("connection: close"), "{got:?}");
}

/// Timeouts and grace periods as long as a `Duration` holds: deadlines
/// computed from them once overflowed the clock and panicked (a request's
/// connection task, or the whole drain).
#[tokio::test]
async fn the_longest_durations_serve_and_drain_without_a_panic() {
    let (addr, stop, _, serving) = start_with(|server| {
        server
            .limits(Limits {
                header_read_timeout: Some(Duration::MAX),
                keepalive_timeout: Some(Duration::MAX),
                ..Limits::default()
            })
            .drain_timeout(Duration::MAX)
            .idle_grace(Duration::MAX)
    });
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut s).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("ok"),
        "{got:?}"
    );
    stop.send(()).unwrap();
    let report = tokio::time::timeout(BOUND, serving)
        .await
        .expect("the drain did not end")
        .expect("the server panicked")
        .unwrap();
    assert_eq!(report.outcome, handoff::DrainOutcome::Drained);
}

/// A connection that switched protocols carries another protocol's bytes:
/// they are never a slow request head (it once got a 408 written into its
/// stream `header_read_timeout` after its first byte) and a quiet one is not
/// an idle keep-alive connection.
#[tokio::test]
async fn an_upgraded_connection_outlives_the_head_and_idle_limits() {
    let (addr, _stop, _) = start(Limits {
        header_read_timeout: Some(Duration::from_millis(200)),
        keepalive_timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(UPGRADE).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    echoes(&mut s, "first").await;
    // A slow head started after that gets its 408: both limits have passed
    // for the upgraded connection too.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert!(read_all(&mut probe).await.starts_with("HTTP/1.1 408"));
    echoes(&mut s, "second").await;
}

/// A draining server still lets a request switch protocols, with no
/// `Connection: close` on the `101` (which would refuse the switch).
#[tokio::test]
async fn a_draining_server_still_switches_protocols() {
    let (addr, stop, mut phase, _serving) =
        start_with(|server| server.idle_grace(Duration::from_secs(60)));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    let mut ok = [0u8; 2];
    s.read_exact(&mut ok).await.unwrap();
    stop.send(()).unwrap();
    phase.wait_for(|p| *p >= Phase::Draining).await.unwrap();
    s.write_all(UPGRADE).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    assert!(!head.to_ascii_lowercase().contains("close"), "{head:?}");
    echoes(&mut s, "still here").await;
}

/// A server that answers before it has read the whole request (here a body
/// nobody reads) and closes reads and discards the rest, so the client
/// finishes sending and reads the answer: closing with bytes unread would
/// reset the connection under the client's feet.
#[tokio::test]
async fn a_closing_connection_reads_what_the_client_still_sends() {
    let (addr, _stop, _) = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = vec![b'x'; 16 << 20];
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::timeout(BOUND, s.write_all(&body))
        .await
        .expect("the body was not taken")
        .expect("the connection was reset while the body was sent");
    let got = read_all(&mut s).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("ok"),
        "{got:?}"
    );
}

/// The first byte of a request head can also be the first of the HTTP/2
/// preface: until the preface is whole, the head limit applies (a client
/// that sent `P` and nothing else was once held for ever).
#[tokio::test]
async fn a_head_that_starts_like_the_h2_preface_still_gets_408() {
    let (addr, _stop, _) = start(Limits {
        header_read_timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    })
    .await;
    for start in ["P", "PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(start.as_bytes()).await.unwrap();
        let got = read_all(&mut s).await;
        assert!(got.starts_with("HTTP/1.1 408"), "after {start:?}: {got:?}");
    }
}

/// The HTTP/2 frames in `bytes`, as (type, stream id); panics on a
/// truncated frame.
fn h2_frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 9, "a truncated frame header: {bytes:?}");
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        frames.push((bytes[3], stream));
        assert!(bytes.len() >= 9 + len, "a truncated frame: {bytes:?}");
        bytes = &bytes[9 + len..];
    }
    frames
}

const GOAWAY: u8 = 7;

/// A client that sends the HTTP/2 preface and nothing else is not held for
/// ever: past the idle limit it gets a `GOAWAY` and the connection ends,
/// though it never answers.
#[tokio::test]
async fn a_silent_h2_connection_gets_goaway_past_the_idle_limit() {
    let (addr, _stop, _) = start(Limits {
        header_read_timeout: Some(Duration::from_millis(200)),
        keepalive_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut got))
        .await
        .expect("the idle HTTP/2 connection was not closed")
        .unwrap();
    // hyper's graceful close: a `GOAWAY` and a `PING` whose answer would
    // bring the final `GOAWAY`; this client never answers, so the
    // connection ends without it.
    let frames = h2_frames(&got);
    assert!(frames.contains(&(GOAWAY, 0)), "{frames:?}");
}

type H2Send = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// An HTTP/2 client connection, prior knowledge, that sends a `PING` every
/// 50 ms; its task ends when the server closes the connection.
async fn h2_client(addr: SocketAddr) -> (H2Send, tokio::task::JoinHandle<hyper::Result<()>>) {
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(50))
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

/// `GET path`'s response head (a 200), its body still to be read.
async fn h2_open(send: &mut H2Send, path: &str) -> hyper::body::Incoming {
    let req = hyper::Request::get(format!("http://x{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = tokio::time::timeout(BOUND, send.send_request(req))
        .await
        .expect("no response")
        .unwrap();
    assert_eq!(res.status(), 200);
    res.into_body()
}

async fn h2_get(send: &mut H2Send, path: &str) -> String {
    use http_body_util::BodyExt;
    let body = h2_open(send, path)
        .await
        .collect()
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// An HTTP/2 connection is idle when no stream is open: `PING`s do not keep
/// it, a stream open longer than the limit is not cut, and the limit counts
/// from the end of the last stream.
#[tokio::test]
async fn an_h2_connection_is_closed_when_idle_not_while_a_stream_is_open() {
    let (addr, _stop, _) = start(Limits {
        keepalive_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    })
    .await;
    let (mut busy, busy_conn) = h2_client(addr).await;
    assert_eq!(h2_get(&mut busy, "/").await, "ok");
    let held = tokio::spawn(async move {
        let body = h2_get(&mut busy, "/hold").await;
        (busy, body)
    });
    HOLDING.acquire().await.unwrap().forget();
    // A connection opened after the held stream started, with pings and no
    // request: its end shows the idle limit has passed for the other too.
    let (_idle, idle_conn) = h2_client(addr).await;
    tokio::time::timeout(BOUND, idle_conn)
        .await
        .expect("an idle HTTP/2 connection that pings was not closed")
        .unwrap()
        .expect("the idle connection did not end cleanly");
    assert!(
        !busy_conn.is_finished(),
        "a connection with a stream open was closed"
    );
    RELEASE.add_permits(1);
    let (mut busy, body) = held.await.unwrap();
    assert_eq!(body, "held");
    // Idle again after a last request: closed in time.
    assert_eq!(h2_get(&mut busy, "/").await, "ok");
    tokio::time::timeout(BOUND, busy_conn)
        .await
        .expect("the connection was not closed once idle")
        .unwrap()
        .expect("the connection did not end cleanly");
}

/// A client that stops reading its response does not keep the connection
/// (and whatever feeds the response) for ever: once nothing of it has been
/// taken for the write limit, the connection ends.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_write_limit() {
    let (addr, _stop, counts) = start_counted(Limits {
        write_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    // No more reading: the server's writes wait, then fail.
    tokio::time::timeout(BOUND, ENDLESS_DROPPED.acquire())
        .await
        .expect("the server kept writing to a client that reads nothing")
        .unwrap()
        .forget();
    let mut taken = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => taken += n,
            Err(_) => panic!("the connection was not closed"),
        }
    }
    assert!(taken < 256 << 20, "{taken} bytes");
    assert_eq!((counts.head_timeouts(), counts.write_timeouts()), (0, 1));
}

/// An HTTP/2 client can stop one stream alone by never opening its window:
/// the socket keeps moving, so that stream is ended by itself (reset) once
/// nothing of it has been taken for the write limit — and the connection
/// goes on serving.
#[tokio::test]
async fn an_h2_stream_whose_client_takes_nothing_is_reset_after_the_write_limit() {
    let (addr, _stop, counts) = start_counted(Limits {
        write_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    })
    .await;
    let (mut send, conn) = h2_client(addr).await;
    // The body is never read: its window closes after 64 KiB.
    let body = h2_open(&mut send, "/endless-h2").await;
    tokio::time::timeout(BOUND, ENDLESS_H2_DROPPED.acquire())
        .await
        .expect("the server kept a stream whose client takes nothing")
        .unwrap()
        .forget();
    assert_eq!(h2_get(&mut send, "/").await, "ok");
    assert!(!conn.is_finished(), "the whole connection was closed");
    use http_body_util::BodyExt;
    let read = tokio::time::timeout(BOUND, body.collect())
        .await
        .expect("the reset stream did not end");
    assert!(read.is_err(), "the endless body ended cleanly");
    // One stream reset, the connection not closed.
    assert_eq!(counts.write_timeouts(), 1);
}

/// The HTTP/2 write limit is for a client that takes nothing, never for a
/// body waiting for its own data (an event stream between events): such a
/// stream outlives the limit.
#[tokio::test]
async fn an_h2_stream_waiting_for_its_own_data_outlives_the_write_limit() {
    use http_body_util::BodyExt;
    let (addr, _stop, _) = start(Limits {
        write_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    })
    .await;
    let (mut send, _conn) = h2_client(addr).await;
    let mut body = h2_open(&mut send, "/trickle").await;
    let first = tokio::time::timeout(BOUND, body.frame()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first ");
    // A stream started after that, whose client takes nothing, is reset:
    // the limit has passed for the waiting one too.
    let (mut probe, _probe_conn) = h2_client(addr).await;
    let _held = h2_open(&mut probe, "/endless-probe").await;
    tokio::time::timeout(BOUND, ENDLESS_PROBE_DROPPED.acquire())
        .await
        .expect("the probe's stream was not reset")
        .unwrap()
        .forget();
    TRICKLE.add_permits(1);
    let rest = tokio::time::timeout(BOUND, body.collect())
        .await
        .expect("the waiting stream did not end")
        .expect("the waiting stream was cut");
    assert_eq!(rest.to_bytes(), "second");
}
