//! A tiny real HTTP/1.1 upstream on 127.0.0.1:0 whose health answer the test
//! toggles, and which publishes every probe it serves so that tests wait on
//! events instead of sleeping.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the upstream answers to health probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 to every probe.
    Healthy,
    /// 503 to every probe.
    Failing,
    /// 200, 503, 200, 503, … (never two failures or successes in a row).
    Flapping,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub connection: u64,
    pub path: String,
    pub host: String,
    pub connection_header: String,
    pub status: u16,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    connections: u64,
    flap: bool,
    seen: Vec<Seen>,
}

/// A running upstream; stops with the test's runtime.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    served: watch::Sender<usize>,
}

impl Upstream {
    pub async fn start(mode: Mode) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Upstream {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                mode,
                connections: 0,
                flap: false,
                seen: Vec::new(),
            })),
            served: watch::channel(0).0,
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let connection = {
                    let mut state = server.state.lock().unwrap();
                    state.connections += 1;
                    state.connections
                };
                let handler = server.clone();
                let service = hyper::service::service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler.answer(connection, &request)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        upstream
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn served(&self) -> usize {
        *self.served.borrow()
    }

    /// Waits until the upstream has served at least `n` requests.
    pub async fn wait_served(&self, n: usize) {
        let mut served = self.served.subscribe();
        within(served.wait_for(|&count| count >= n)).await.unwrap();
    }

    fn answer(&self, connection: u64, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let mut state = self.state.lock().unwrap();
        let healthy = match state.mode {
            Mode::Healthy => true,
            Mode::Failing => false,
            Mode::Flapping => {
                state.flap = !state.flap;
                state.flap
            }
        };
        let status = if healthy { 200 } else { 503 };
        state.seen.push(Seen {
            connection,
            path: request.uri().to_string(),
            host: header("host"),
            connection_header: header("connection"),
            status,
        });
        let served = state.seen.len();
        drop(state);
        self.served.send_replace(served);
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"ok\n")))
            .unwrap()
    }
}

/// Bounds a wait on an event, so that a broken test fails instead of
/// hanging. Not a sleep: it returns as soon as the event happens.
pub async fn within<F: Future>(event: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), event)
        .await
        .expect("event did not happen within 20 s")
}

/// An upstream that accepts connections and never answers on them;
/// publishes how many it accepted.
pub struct Silent {
    pub addr: SocketAddr,
    accepted: watch::Receiver<usize>,
}

impl Silent {
    pub async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count, accepted) = watch::channel(0);
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                held.push(stream);
                count.send_replace(held.len());
            }
        });
        Silent { addr, accepted }
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_accepted(&self, n: usize) {
        let mut accepted = self.accepted.clone();
        within(accepted.wait_for(|&count| count >= n))
            .await
            .unwrap();
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }
}
