//! `Server::tls` over real sockets: HTTP/1.1 and HTTP/2 (by ALPN) after the
//! handshake, what `ConnInfo` says, the handshake's time limit and
//! connection slot, failed handshakes, the drain (Connection: close,
//! GOAWAY, in-flight requests finished) and parked connections exactly as
//! on plain connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use bytes::Bytes;
use handoff::http::rustls::pki_types::{PrivateKeyDer, ServerName};
use handoff::http::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use handoff::http::{ConnCounts, Limits, ServeReport, Server};
use handoff::{DrainOutcome, ListenAddr, Listener, Listeners, NamedListener, Phase};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const BOUND: Duration = Duration::from_secs(10);

/// A self-signed certificate for `localhost` and the configs that use it.
struct Certs {
    server: Arc<ServerConfig>,
    root: RootCertStore,
}

fn certs() -> Certs {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut root = RootCertStore::empty();
    root.add(cert.der().clone()).unwrap();
    Certs {
        server: Arc::new(server),
        root,
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    phase: watch::Receiver<Phase>,
    served: JoinHandle<std::io::Result<ServeReport>>,
    /// Told when `/slow` has been called.
    started: Arc<Notify>,
    /// Released by the test: `/slow` answers only then.
    release: Arc<Notify>,
    /// How often the server asked for the TLS config.
    configs: Arc<AtomicUsize>,
    counts: Arc<ConnCounts>,
}

async fn start(certs: &Certs, limits: Limits) -> Running {
    start_with(certs, limits, None).await
}

async fn start_with(certs: &Certs, limits: Limits, park_idle: Option<Duration>) -> Running {
    let (listeners, addr) = bind_local("https");
    let (stop, stopped) = oneshot::channel::<()>();
    let configs = Arc::new(AtomicUsize::new(0));
    let config = certs.server.clone();
    let counted = configs.clone();
    let server = Server::new(listeners)
        .notify(false)
        .limits(limits)
        .idle_grace(Duration::from_millis(100))
        .park_idle(park_idle)
        .with_shutdown(async move {
            let _ = stopped.await;
        })
        .tls(Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            config.clone()
        }));
    let mut phase = server.lifecycle();
    let counts = server.connection_counts().remove(0).1;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let slow = (started.clone(), release.clone());
    let served = tokio::spawn(server.serve_with(move |info| {
        let (tls, sni) = (info.tls, info.sni.clone());
        let slow = slow.clone();
        Router::new()
            .route(
                "/",
                get(move |req: Request| async move {
                    format!("{:?} tls={tls} sni={sni:?}", req.version())
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }))
            .route(
                "/slow",
                get(move || async move {
                    slow.0.notify_one();
                    slow.1.notified().await;
                    "slow"
                }),
            )
    }));
    phase.wait_for(|p| *p >= Phase::Ready).await.unwrap();
    Running {
        addr,
        stop: Some(stop),
        phase,
        served,
        started,
        release,
        configs,
        counts,
    }
}

impl Running {
    /// Starts the drain and waits until the server is in it.
    async fn drain(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.phase
            .wait_for(|p| *p >= Phase::Draining)
            .await
            .unwrap();
    }
}

/// A listener named `name` on a free port of 127.0.0.1, and its address.
fn bind_local(name: &str) -> (Listeners, SocketAddr) {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let listeners = Listeners::from_listeners(vec![NamedListener {
        name: name.into(),
        listener,
    }]);
    (listeners, addr)
}

/// A single-threaded runtime, for a counted server thread or its clients.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(addr: SocketAddr, certs: &Certs, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let config = client_config(certs, alpn, rustls::DEFAULT_VERSIONS);
    let tcp = TcpStream::connect(addr).await.unwrap();
    handshake(&config, tcp).await
}

/// A client config trusting `certs`, offering `alpn`, speaking `versions`.
fn client_config(
    certs: &Certs,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(certs.root.clone())
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The client side of a handshake with `localhost` over `io`.
async fn handshake<IO>(config: &Arc<ClientConfig>, io: IO) -> TlsStream<IO>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(BOUND, TlsConnector::from(config.clone()).connect(name, io))
        .await
        .expect("handshake did not end")
        .unwrap()
}

fn get_req(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .header(http::header::HOST, "localhost")
        .body(Empty::new())
        .unwrap()
}

async fn body(response: http::Response<hyper::body::Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn http1_and_http2_by_alpn_with_tls_and_sni_in_conn_info() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;

    let stream = connect(running.addr, &certs, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = h2.send_request(get_req("/")).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(
        body(response).await,
        "HTTP/2.0 tls=true sni=Some(\"localhost\")"
    );

    let stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = h1.send_request(get_req("/")).await.unwrap();
    assert_eq!(
        body(response).await,
        "HTTP/1.1 tls=true sni=Some(\"localhost\")"
    );
    // The config is asked for once per connection (so a reloaded one
    // applies to the next connection).
    assert_eq!(running.configs.load(Ordering::Relaxed), 2);
}

/// Bodies of many TLS records both ways, over HTTP/1.1 and HTTP/2: records
/// split across reads, records larger than the reader's buffer (the rest
/// waits decrypted), writes larger than a record.
#[tokio::test]
async fn bodies_of_many_records_cross_both_ways_over_http1_and_http2() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;
    // 1 MiB, not one byte repeated: a record out of place shows.
    let sent: Bytes = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let stream = connect(running.addr, &certs, &[alpn]).await;
        let request = http::Request::post("https://localhost/echo")
            .header(http::header::HOST, "localhost")
            .body(Full::new(sent.clone()))
            .unwrap();
        let response = if alpn == b"h2" {
            let (mut h2, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            h2.send_request(request).await.unwrap()
        } else {
            let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            h1.send_request(request).await.unwrap()
        };
        assert_eq!(response.status(), http::StatusCode::OK);
        let got = tokio::time::timeout(BOUND, response.into_body().collect())
            .await
            .expect("the echo did not end")
            .unwrap()
            .to_bytes();
        assert!(
            got == sent,
            "{}: {} bytes came back, not the {} sent",
            String::from_utf8_lossy(alpn),
            got.len(),
            sent.len()
        );
    }
}

/// A client that writes one byte at a time: its ClientHello comes in many
/// reads, and the server name is still read from it whole.
#[tokio::test]
async fn a_client_hello_that_comes_a_byte_at_a_time_is_served_with_its_sni() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let config = client_config(&certs, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let mut stream = handshake(&config, Dribble(tcp)).await;
    let answer = raw_get(&mut stream).await;
    assert!(
        answer.ends_with("HTTP/1.1 tls=true sni=Some(\"localhost\")"),
        "{answer}"
    );
}

/// TLS 1.2; a TLS 1.3 key update the client asks to be answered, between
/// two requests on one connection; a second connection that resumes the
/// first's session (from the tickets the server sends after the handshake)
/// with its server name known all the same.
#[tokio::test]
async fn tls12_key_updates_and_resumed_sessions_are_served() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;

    let config = client_config(&certs, &[b"http/1.1"], &[&rustls::version::TLS12]);
    let mut stream = handshake(&config, TcpStream::connect(running.addr).await.unwrap()).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert!(
        raw_get(&mut stream)
            .await
            .ends_with("sni=Some(\"localhost\")")
    );

    let config = client_config(&certs, &[b"http/1.1"], &[&rustls::version::TLS13]);
    let mut stream = handshake(&config, TcpStream::connect(running.addr).await.unwrap()).await;
    assert!(
        raw_get(&mut stream)
            .await
            .ends_with("sni=Some(\"localhost\")")
    );
    stream.get_mut().1.refresh_traffic_keys().unwrap();
    assert!(
        raw_get(&mut stream)
            .await
            .ends_with("sni=Some(\"localhost\")")
    );
    drop(stream);

    let mut stream = handshake(&config, TcpStream::connect(running.addr).await.unwrap()).await;
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert!(
        raw_get(&mut stream)
            .await
            .ends_with("sni=Some(\"localhost\")")
    );
}

/// A client's close ends its connection on the server, with close_notify or
/// without (the socket just closed).
#[tokio::test]
async fn a_connection_ends_with_the_clients_close_with_or_without_close_notify() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;
    for close_notify in [true, false] {
        let mut stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
        raw_get(&mut stream).await;
        assert_eq!(running.counts.open(), 1);
        match close_notify {
            true => stream.shutdown().await.unwrap(),
            false => drop(stream.into_inner().0),
        }
        let closed = tokio::time::timeout(BOUND, running.counts.until(|c| c.open() == 0)).await;
        assert!(closed.is_ok(), "close_notify {close_notify}: still open");
    }
}

/// A record that does not decrypt (bytes written past the client's TLS)
/// ends its connection with an alert the client reads, and the server
/// serves the next connection.
#[tokio::test]
async fn a_record_that_does_not_decrypt_ends_its_connection_with_an_alert() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;
    let mut stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
    raw_get(&mut stream).await;
    // An application-data record of 32 bytes that no key made.
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    forged.extend_from_slice(&[0x5a; 32]);
    stream.get_mut().0.write_all(&forged).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("the connection stayed open");
    let err = read.expect_err("no alert came");
    assert!(
        err.to_string().contains("BadRecordMac"),
        "not the alert for a record that does not decrypt: {err}"
    );
    let closed = tokio::time::timeout(BOUND, running.counts.until(|c| c.open() == 0)).await;
    assert!(closed.is_ok(), "the connection is still open");
    let mut stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
    assert!(
        raw_get(&mut stream)
            .await
            .ends_with("sni=Some(\"localhost\")")
    );
}

/// `GET /` written by hand on a kept-alive HTTP/1.1 connection; the answer,
/// head and body (read to its length).
async fn raw_get<IO>(stream: &mut IO) -> String
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(BOUND, async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection ended before the answer did");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("no content-length");
                if body.len() >= length {
                    return;
                }
            }
        }
    })
    .await
    .expect("no whole answer");
    String::from_utf8(answer).unwrap()
}

/// A socket that takes one byte per write.
struct Dribble(TcpStream);

impl tokio::io::AsyncRead for Dribble {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Dribble {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let one = &buf[..buf.len().min(1)];
        std::pin::Pin::new(&mut self.0).poll_write(cx, one)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_failed_handshake_closes_the_socket_and_the_server_goes_on() {
    let certs = certs();
    let running = start(&certs, Limits::default()).await;
    // Plain HTTP to the TLS port.
    let mut plain = TcpStream::connect(running.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(BOUND, plain.read_to_end(&mut got))
        .await
        .expect("the server did not close the connection");
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");

    let stream = connect(running.addr, &certs, &[]).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(h1.send_request(get_req("/")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_stalled_handshake_is_bounded_by_the_head_timeout_and_holds_a_slot() {
    let certs = certs();
    let running = start(
        &certs,
        Limits {
            max_connections: 1,
            header_read_timeout: Some(Duration::from_millis(300)),
            ..Limits::default()
        },
    )
    .await;
    let begin = tokio::time::Instant::now();
    // Connects and never says hello: it holds the only slot.
    let mut stalled = TcpStream::connect(running.addr).await.unwrap();
    // This handshake can only proceed once the stalled one was given up.
    let stream = connect(running.addr, &certs, &[]).await;
    assert!(begin.elapsed() >= Duration::from_millis(300));
    let mut got = Vec::new();
    let n = tokio::time::timeout(BOUND, stalled.read_to_end(&mut got))
        .await
        .expect("the stalled connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    drop(stream);
}

#[tokio::test]
async fn draining_http1_over_tls_answers_connection_close() {
    let certs = certs();
    let mut running = start(&certs, Limits::default()).await;
    let stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let response = h1.send_request(get_req("/")).await.unwrap();
    assert!(!response.headers().contains_key(http::header::CONNECTION));
    body(response).await;

    running.drain().await;
    // The keep-alive connection is still served, and told to go.
    let response = h1.send_request(get_req("/")).await.unwrap();
    assert_eq!(response.headers()[http::header::CONNECTION], "close");
    body(response).await;
    tokio::time::timeout(BOUND, conn)
        .await
        .expect("the connection was not closed")
        .unwrap()
        .unwrap();
    let report = running.served.await.unwrap().unwrap();
    assert_eq!(report.outcome, DrainOutcome::Drained);
}

#[tokio::test]
async fn draining_http2_over_tls_finishes_in_flight_requests_then_goaway() {
    let certs = certs();
    let mut running = start(&certs, Limits::default()).await;
    let stream = connect(running.addr, &certs, &[b"h2"]).await;
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let in_flight = tokio::spawn(h2.send_request(get_req("/slow")));
    running.started.notified().await;

    running.drain().await;
    // The request in flight completes; then (past the idle grace) the
    // server sends GOAWAY and the connection ends.
    running.release.notify_one();
    let response = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("no response")
        .unwrap()
        .unwrap();
    assert_eq!(body(response).await, "slow");
    tokio::time::timeout(BOUND, conn)
        .await
        .expect("the connection did not end after GOAWAY")
        .unwrap()
        .unwrap();
    let report = tokio::time::timeout(BOUND, running.served)
        .await
        .expect("the drain did not end")
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, DrainOutcome::Drained);
    assert_eq!(report.connections, 1);
}

#[tokio::test]
async fn a_parked_tls_connection_serves_its_next_request() {
    let certs = certs();
    let running = start_with(&certs, Limits::default(), Some(Duration::from_millis(50))).await;
    let stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for round in 0..2 {
        let response = h1.send_request(get_req("/")).await.unwrap();
        assert_eq!(
            body(response).await,
            "HTTP/1.1 tls=true sni=Some(\"localhost\")"
        );
        // Parked with its TLS session, then served again on the same one.
        let parked = tokio::time::timeout(BOUND, running.counts.until(|c| c.parked() == 1)).await;
        assert!(parked.is_ok(), "round {round}: never parked");
    }
    assert_eq!(running.counts.accepted(), 1);
}

#[tokio::test]
async fn the_drain_closes_a_parked_tls_connection_with_close_notify() {
    let certs = certs();
    let mut running = start_with(&certs, Limits::default(), Some(Duration::from_millis(50))).await;
    let mut stream = connect(running.addr, &certs, &[b"http/1.1"]).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"sni=Some(\"localhost\")") {
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer");
        seen.extend_from_slice(&buf[..n]);
    }
    let parked = tokio::time::timeout(BOUND, running.counts.until(|c| c.parked() == 1)).await;
    assert!(parked.is_ok(), "never parked");
    running.drain().await;
    // close_notify, then FIN: a clean end of the stream, not an error.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut rest))
        .await
        .expect("the parked connection was not closed");
    assert_eq!(read.unwrap(), 0);
    running
        .counts
        .until(|c| c.open() == 0 && c.parked() == 0)
        .await;
}

/// Heap per parked TLS connection, counted on the server's own thread: a
/// parked connection keeps its socket and rustls's session in the lot, not
/// the task that served it (whose allocation is the size of its largest
/// state: the handshake, hyper's connection, the service's future).
#[test]
fn a_parked_tls_connection_holds_little_heap() {
    const ROUND: usize = 64;
    let certs = certs();
    let server = certs.server.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        counting::count_this_thread();
        let rt = current_thread();
        rt.block_on(async move {
            let (listeners, addr) = bind_local("https");
            let server = Server::new(listeners)
                .notify(false)
                .park_idle(Some(Duration::from_millis(20)))
                .with_shutdown(async move {
                    let _ = stopped.await;
                })
                .tls(Arc::new(move || server.clone()));
            let counts = server.connection_counts().remove(0).1;
            let mut phase = server.lifecycle();
            let served = tokio::spawn(
                server.serve_with(|_| Router::new().route("/", get(|| async { "ok" }))),
            );
            phase.wait_for(|p| *p >= Phase::Ready).await.unwrap();
            ready_tx.send((addr, counts)).unwrap();
            served.await.unwrap().unwrap();
        });
    });
    let (addr, counts) = ready_rx.recv().unwrap();
    let rt = current_thread();
    rt.block_on(async move {
        let mut clients = Vec::new();
        let mut live = Vec::new();
        // Two rounds: the second one's cost is what one more parked
        // connection adds (the first pays for what is made once).
        for round in 1..=2 {
            for _ in 0..ROUND {
                let stream = connect(addr, &certs, &[b"http/1.1"]).await;
                let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let response = h1.send_request(get_req("/")).await.unwrap();
                assert_eq!(body(response).await, "ok");
                clients.push(h1);
            }
            let all = tokio::time::timeout(
                BOUND,
                counts.until(|c| c.parked() == (round * ROUND) as u64),
            )
            .await;
            assert!(all.is_ok(), "round {round}: not all parked");
            live.push(counting::live());
        }
        // About 4.5 KB: rustls's session (its record keys, the stream that
        // holds it, no buffer) and the lot's entry. Over rustls's buffered
        // connection it was 8.6 KB (a 4 KiB read buffer for the session's
        // whole life); a parked connection that kept its task held that
        // task too (23 KB in all here).
        let per_conn = (live[1] - live[0]) / ROUND as i64;
        assert!(
            per_conn < 6 * 1024,
            "a parked TLS connection holds {per_conn} B of heap"
        );
        drop(clients);
    });
    stop.send(()).unwrap();
    thread.join().unwrap();
}

/// Heap per idle HTTP/2 connection, over TLS and over plain TCP, counted on
/// the servers' own thread: what TLS adds is rustls's session (its record
/// keys, the stream itself), once, and no buffer while the connection waits.
/// A connection's task is allocated at the size of its largest state for
/// the connection's whole life; with the TLS stream inline in those states
/// (some of them hold it more than once) an idle HTTP/2 connection over TLS
/// held 17 KB more than one over TCP; with the stream boxed, about 8 KB
/// more, 4 KiB of it rustls's read buffer; with the stream's buffers freed
/// while it waits, about 4 KB more.
#[test]
fn tls_adds_only_its_session_to_an_idle_http2_connection() {
    const ROUND: usize = 64;
    let certs = certs();
    let server_tls = certs.server.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::spawn(move || {
        counting::count_this_thread();
        let rt = current_thread();
        rt.block_on(async move {
            let mut addrs = Vec::new();
            let mut served = Vec::new();
            for tls in [true, false] {
                let (listeners, addr) = bind_local("h2");
                let mut stopped = stopped.clone();
                let mut server = Server::new(listeners)
                    .notify(false)
                    .with_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                if tls {
                    let config = server_tls.clone();
                    server = server.tls(Arc::new(move || config.clone()));
                }
                let mut phase = server.lifecycle();
                served.push(tokio::spawn(
                    server.serve_with(|_| Router::new().route("/", get(|| async { "ok" }))),
                ));
                phase.wait_for(|p| *p >= Phase::Ready).await.unwrap();
                addrs.push(addr);
            }
            ready_tx.send((addrs[0], addrs[1])).unwrap();
            for serving in served {
                serving.await.unwrap().unwrap();
            }
        });
    });
    let (tls_addr, plain_addr) = ready_rx.recv().unwrap();
    let rt = current_thread();
    let per_conn = rt.block_on(async move {
        let mut clients = Vec::new();
        let mut per_conn = Vec::new();
        for tls in [true, false] {
            let mut live = Vec::new();
            // Two rounds: the second one's cost is what one more idle
            // connection adds (the first pays for what is made once).
            for _ in 1..=2 {
                for _ in 0..ROUND {
                    let mut h2 = match tls {
                        true => {
                            let stream = connect(tls_addr, &certs, &[b"h2"]).await;
                            h2_client(TokioIo::new(stream)).await
                        }
                        false => {
                            let stream = TcpStream::connect(plain_addr).await.unwrap();
                            h2_client(TokioIo::new(stream)).await
                        }
                    };
                    let response = h2.send_request(get_req("/")).await.unwrap();
                    assert_eq!(response.version(), http::Version::HTTP_2);
                    assert_eq!(body(response).await, "ok");
                    clients.push(h2);
                }
                live.push(counting::live());
            }
            per_conn.push((live[1] - live[0]) / ROUND as i64);
        }
        per_conn
    });
    // The clients' connections close with their runtime, before the drain.
    drop(rt);
    stop.send(true).unwrap();
    thread.join().unwrap();
    let (tls, plain) = (per_conn[0], per_conn[1]);
    assert!(
        tls - plain < 6 * 1024,
        "an idle HTTP/2 connection holds {tls} B of heap over TLS, {plain} B over TCP"
    );
}

/// An HTTP/2 client connection over `io`, driven by a task of its own.
async fn h2_client<T>(io: TokioIo<T>) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    h2
}

/// A global allocator that counts the bytes held by the threads that ask
/// for it, and hands every call to the system allocator.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicI64, Ordering};

    pub struct Counting;

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Bytes allocated minus bytes freed on counted threads.
    static LIVE: AtomicI64 = AtomicI64::new(0);

    thread_local! {
        // `const` and without a destructor: reading it never allocates.
        static COUNTED: Cell<bool> = const { Cell::new(false) };
    }

    /// Counts the calling thread's allocations from now on.
    pub fn count_this_thread() {
        COUNTED.with(|c| c.set(true));
    }

    /// The bytes counted threads hold now.
    pub fn live() -> i64 {
        LIVE.load(Ordering::Relaxed)
    }

    fn add(bytes: usize, sign: i64) {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            LIVE.fetch_add(sign * bytes as i64, Ordering::Relaxed);
        }
    }

    #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
    // SAFETY: every method forwards its arguments unchanged to `System`, which
    // upholds `GlobalAlloc`'s contract; the counting never allocates.
    unsafe impl GlobalAlloc for Counting {
        #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size(), 1);
            // SAFETY: the caller's layout, passed on.
            unsafe { System.alloc(layout) }
        }

        #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size(), 1);
            // SAFETY: the caller's layout, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(layout.size(), -1);
            // SAFETY: `ptr` came from `System` with this layout (the caller's contract).
            unsafe { System.dealloc(ptr, layout) }
        }

        #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(layout.size(), -1);
            add(new_size, 1);
            // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}
