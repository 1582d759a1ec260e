//! Tests of the request path through a real [`Proxy`]: a tiny hyper
//! upstream and the proxy on 127.0.0.1:0, requests over real sockets.
//! Tests wait on events (responses, the gate's count of held requests),
//! never on sleeps.

mod https;
mod member_answers;
mod pause;
mod pki;
mod retry;
mod slow_clients;
mod slow_members;
mod stats;
mod upstream_host;
mod upstream_tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use handoff::http::Stop;
use handoff::{ListenAddr, Listener, NamedListener};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::Proxy;

/// A running upstream that answers with its name; `/status/N` answers
/// status N, `/header/NAME` the value of the request's header NAME, and
/// `/with-hsts` adds a `Strict-Transport-Security` of its own.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    served: watch::Receiver<usize>,
}

impl Upstream {
    pub(crate) async fn start(name: &'static str) -> Upstream {
        Upstream::answering(name, None).await
    }

    /// An upstream that answers every request with 500 (and its name).
    pub(crate) async fn failing(name: &'static str) -> Upstream {
        Upstream::answering(name, Some(StatusCode::INTERNAL_SERVER_ERROR)).await
    }

    /// Answers `status` to every request, or by path when `None`.
    async fn answering(name: &'static str, status: Option<StatusCode>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count, served) = watch::channel(0);
        let count = Arc::new(count);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let count = count.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    count.send_modify(|n| *n += 1);
                    let mut response = answer(name, &request);
                    if let Some(status) = status {
                        *response.status_mut() = status;
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Upstream { addr, served }
    }

    /// Requests the upstream has received.
    pub(crate) fn served(&self) -> usize {
        *self.served.borrow()
    }
}

pub(crate) fn answer<B>(name: &'static str, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let body = match path.strip_prefix("/header/") {
        Some(header) => Bytes::copy_from_slice(
            request
                .headers()
                .get(header)
                .map_or(&b"(none)"[..], |v| v.as_bytes()),
        ),
        None => Bytes::from_static(name.as_bytes()),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    if path == "/with-hsts" {
        response.headers_mut().insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            http::HeaderValue::from_static("max-age=5"),
        );
    }
    response
}

/// An upstream that answers every request with a 200 whose body breaks
/// off: it promises 100 bytes, sends 7 and closes the connection.
pub(crate) async fn broken_upstream() -> SocketAddr {
    raw_member(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial").await
}

/// A member that reads each request's head and answers `raw`, byte for
/// byte, then closes the connection.
pub(crate) async fn raw_member(raw: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                if read_request_head(&mut stream).await {
                    let _ = stream.write_all(raw).await;
                }
            });
        }
    });
    addr
}

/// Reads a request's head (and whatever came with it) from a member's
/// connection; `false` if the proxy closed it first.
pub(crate) async fn read_request_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A proxy serving on 127.0.0.1:0; stops with the test's runtime.
pub(crate) struct Running {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    _stop: watch::Sender<Stop>,
}

/// A config with one listener on port 0, the given pools, and one route to
/// `route_to`. `pools` is `[(name, [member addresses])]`.
pub(crate) fn config(pools: &[(&str, &[SocketAddr])], route_to: &str) -> config::Config {
    let mut source = String::from("[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n");
    for (name, members) in pools {
        let members: Vec<String> = members
            .iter()
            .map(|m| format!("{{ address = \"{m}\" }}"))
            .collect();
        source += &format!("[pool.{name}]\nmembers = [{}]\n", members.join(", "));
    }
    source += &format!("[[route]]\npool = \"{route_to}\"\n");
    config::parse(&source, "test.toml").unwrap()
}

/// Starts a proxy for `cfg` and waits until it accepts.
pub(crate) async fn start(cfg: &config::Config) -> Running {
    serve(Proxy::new(cfg).unwrap(), cfg).await
}

/// Serves `proxy` (built for `cfg`) on `cfg`'s first listener and waits
/// until it accepts.
pub(crate) async fn serve(proxy: Proxy, cfg: &config::Config) -> Running {
    let proxy = Arc::new(proxy);
    let spec = cfg.listeners[0].clone();
    let listener = Listener::bind(&spec.address).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        panic!("a TCP listener");
    };
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let (ready, accepting) = oneshot::channel();
    let socket = NamedListener {
        name: spec.name.clone(),
        listener,
    };
    tokio::spawn(proxy.clone().serve(
        vec![(socket, spec)],
        cfg.proxy.clone(),
        stop_rx,
        move || {
            let _ = ready.send(());
        },
    ));
    within(accepting).await.unwrap();
    Running {
        proxy,
        addr,
        _stop: stop,
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The whole body, or the error that broke it off.
    pub body: Result<String, String>,
}

/// `GET path` on a connection of its own.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Answer {
    let request = Request::get(path)
        .header(http::header::HOST, "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    send(addr, request).await
}

/// `METHOD path` with `body` (sent with a `content-length`, even if empty)
/// on a connection of its own.
pub(crate) async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &'static str,
) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "test")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    send(addr, request).await
}

/// Sends `request` on a connection of its own and reads the whole answer.
pub(crate) async fn send<B>(addr: SocketAddr, request: Request<B>) -> Answer
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    send_on(TcpStream::connect(addr).await.unwrap(), request).await
}

/// [`send`] over HTTPS, trusting `ca`'s certificates for `server_name`.
pub(crate) async fn send_tls<B>(
    addr: SocketAddr,
    ca: &pki::Ca,
    server_name: &str,
    request: Request<B>,
) -> Answer
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let stream = within(tokio_rustls::TlsConnector::from(ca.client()).connect(name, tcp))
        .await
        .unwrap();
    send_on(stream, request).await
}

async fn send_on<IO, B>(stream: IO, request: Request<B>) -> Answer
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = within(sender.send_request(request)).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = within(body.collect())
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .map_err(|e| e.to_string());
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Waits until `pool` of `proxy` holds `n` requests.
pub(crate) async fn wait_held(proxy: &Proxy, pool: &str, n: usize) {
    let mut held = {
        let registry = proxy.registry.lock().unwrap();
        registry.pool(pool).unwrap().gate.held()
    };
    within(held.wait_for(|&held| held == n)).await.unwrap();
}

/// An address nothing listens on (bound, then closed).
pub(crate) fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Bounds a wait on an event, so that a broken test fails instead of
/// hanging. Not a sleep: it returns as soon as the event happens.
pub(crate) async fn within<F: Future>(event: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), event)
        .await
        .expect("event did not happen within 20 s")
}
