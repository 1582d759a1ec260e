//! Accepting and serving connections: one accept loop per listener, one
//! task per connection. Each connection follows the server's drain stage
//! (see the parent module) and is counted by the drain tracker while it
//! lives. Owns the per-connection plumbing; never decides when to drain.
//! With TLS (feature `tls`) a connection's task starts with the handshake,
//! then follows exactly the plain path. Serving the connection itself, and
//! parking it while idle, is `park`'s.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tower_service::Service;

use super::guard::{BusyGuard, ConnState, Timeouts};
use super::park::{self, Park};
use super::stall::{Progress, StreamExec};
use super::{ConnInfo, Stage};
use crate::drain::{Drain, DrainGuard};
use crate::listener::Listener;

pub(super) type BoxError = Box<dyn StdError + Send + Sync>;

/// A tower service the server can run: what axum's `Router` is.
pub trait AppService<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> AppService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A response body the server can send.
pub trait AppBody: Body<Data: Send + Unpin, Error: Into<BoxError>> + Send + 'static {}

impl<B> AppBody for B where B: Body<Data: Send + Unpin, Error: Into<BoxError>> + Send + 'static {}

/// What the accept loops and connection tasks of one server share.
pub(super) struct Shared<F> {
    pub http1: http1::Builder,
    pub http2: http2::Builder<StreamExec>,
    pub make: F,
    pub stage: watch::Receiver<Stage>,
    pub drain: Drain,
    pub accepted: AtomicU64,
    pub timeouts: Timeouts,
    pub slots: Arc<Semaphore>,
    /// Connections released, for the heap trimmer (with parking only).
    pub trim: super::trim::Trim,
    /// Where parked plain connections wait (with parking only).
    pub lot: Option<super::lot::Lot>,
    #[cfg(feature = "tls")]
    pub tls: Option<super::TlsConfig>,
}

pub(super) enum AsyncListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl AsyncListener {
    pub(super) fn new(listener: Listener) -> io::Result<AsyncListener> {
        Ok(match listener {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                AsyncListener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                AsyncListener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        })
    }
}

pub(super) async fn accept_loop<F, S, B>(
    listener: AsyncListener,
    name: Arc<str>,
    counts: Arc<ConnCounts>,
    shared: Arc<Shared<F>>,
) where
    F: Fn(&ConnInfo) -> S + Send + Sync + 'static,
    S: AppService<B>,
    B: AppBody,
{
    let mut stage = shared.stage.clone();
    loop {
        // At the connection limit, stop accepting: new connections wait in
        // the kernel's queue instead of being refused.
        let permit = tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s >= Stage::Draining) => return,
            permit = shared.slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s >= Stage::Draining) => return,
            res = accept(&listener) => res,
        };
        match accepted {
            Ok((Accepted::Tcp(io), peer)) => {
                let permit = Slot::new(permit, &counts);
                let _ = io.set_nodelay(true);
                let info = ConnInfo {
                    listener: name.clone(),
                    peer,
                    local: io.local_addr().ok(),
                    tls: false,
                    sni: None,
                };
                spawn_connection(io, info, permit, &shared);
            }
            Ok((Accepted::Unix(io), _)) => {
                let permit = Slot::new(permit, &counts);
                let info = ConnInfo {
                    listener: name.clone(),
                    peer: None,
                    local: None,
                    tls: false,
                    sni: None,
                };
                spawn_connection(io, info, permit, &shared);
            }
            Err(e) if is_resource_exhaustion(&e) => {
                // Out of descriptors or memory: accepting again at once would
                // spin; wait a little for connections to close.
                tracing::warn!(error = %e, "accept failed, backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
}

/// The connections of one listener: accepted over its life, open now,
/// parked now.
#[derive(Debug, Default)]
pub struct ConnCounts {
    accepted: AtomicU64,
    open: AtomicU64,
    parked: AtomicU64,
    head_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
    /// Tasks in `until`: changes are announced only when there are some.
    watchers: AtomicUsize,
    changed: Notify,
}

impl ConnCounts {
    /// Connections accepted since the server started serving.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now (TLS handshakes included).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Open connections parked now: idle HTTP/1 connections that hold only
    /// their socket (see `Server::park_idle`).
    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// Connections answered `408` because their request head was not in
    /// within the head limit (or their HTTP/2 preface).
    pub fn head_timeouts(&self) -> u64 {
        self.head_timeouts.load(Ordering::Relaxed)
    }

    /// Connections closed, and HTTP/2 streams reset, because their client
    /// took nothing of what was written for the write limit.
    pub fn write_timeouts(&self) -> u64 {
        self.write_timeouts.load(Ordering::Relaxed)
    }

    pub(super) fn count_head_timeout(&self) {
        self.head_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_write_timeout(&self) {
        self.write_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Resolves once `done(self)` holds: checked now, and again each time
    /// a count changes. For waiting on the server's connections without
    /// polling.
    pub async fn until(&self, done: impl Fn(&ConnCounts) -> bool) {
        struct Watching<'a>(&'a AtomicUsize);
        impl Drop for Watching<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let _watching = Watching(&self.watchers);
        loop {
            // Registered before the check: a change between the two wakes it.
            let changed = self.changed.notified();
            std::sync::atomic::fence(Ordering::SeqCst);
            if done(self) {
                return;
            }
            changed.await;
        }
    }

    /// Counts a connection as parked, or no longer parked.
    pub(super) fn count_parked(&self, parked: bool) {
        if parked {
            self.parked.fetch_add(1, Ordering::SeqCst);
        } else {
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
        self.announce();
    }

    fn announce(&self) {
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// What a connection holds for its life: its place under
/// `max_connections` and its count as open on its listener.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    counts: Arc<ConnCounts>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, counts: &Arc<ConnCounts>) -> Slot {
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        counts.open.fetch_add(1, Ordering::SeqCst);
        counts.announce();
        Slot {
            _permit: permit,
            counts: counts.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::SeqCst);
        self.counts.announce();
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &AsyncListener) -> io::Result<(Accepted, Option<SocketAddr>)> {
    match listener {
        AsyncListener::Tcp(l) => l
            .accept()
            .await
            .map(|(s, peer)| (Accepted::Tcp(s), Some(peer))),
        AsyncListener::Unix(l) => l.accept().await.map(|(s, _)| (Accepted::Unix(s), None)),
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn spawn_connection<I, F, S, B>(io: I, info: ConnInfo, permit: Slot, shared: &Arc<Shared<F>>)
where
    I: Park,
    F: Fn(&ConnInfo) -> S + Send + Sync + 'static,
    S: AppService<B>,
    B: AppBody,
{
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let guard = shared.drain.guard();
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        let config = tls.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            // The provider runs in the connection's task, off the accept loop.
            let config = config();
            // Boxed: the task is allocated at the size of its largest
            // state for the connection's whole life, and the handshake's
            // is the largest once the stream is boxed.
            let Some((io, info)) = Box::pin(tls_handshake(io, info, config, &shared)).await else {
                return;
            };
            let service = (shared.make)(&info);
            let held = Held {
                slot: permit,
                _guard: guard,
            };
            park::serve(Box::new(io), service, &shared, info, held).await
        });
        return;
    }
    let service = (shared.make)(&info);
    let shared = shared.clone();
    let held = Held {
        slot: permit,
        _guard: guard,
    };
    tokio::spawn(async move { park::serve(io, service, &shared, info, held).await });
}

/// Completes the TLS handshake within the head timeout, or gives up when
/// the drain starts closing idle connections (a connection still
/// handshaking has no request in flight). `None`: the socket is dropped.
#[cfg(feature = "tls")]
async fn tls_handshake<I, F>(
    io: I,
    mut info: ConnInfo,
    config: Arc<super::rustls::ServerConfig>,
    shared: &Shared<F>,
) -> Option<(super::tls::TlsStream<I>, ConnInfo)>
where
    I: Park,
{
    let mut stage = shared.stage.clone();
    let handshake = super::tls::TlsStream::accept(io, config);
    let bounded = async {
        match shared.timeouts.head {
            Some(limit) => tokio::time::timeout(limit, handshake).await.ok(),
            None => Some(handshake.await),
        }
    };
    let stream = tokio::select! {
        res = bounded => match res {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::debug!(error = %e, peer = ?info.peer, "TLS handshake failed");
                return None;
            }
            None => {
                tracing::debug!(peer = ?info.peer, "TLS handshake not completed in time");
                return None;
            }
        },
        _ = stage.wait_for(|s| *s >= Stage::Closing) => return None,
    };
    info.tls = true;
    info.sni = stream.server_name().map(str::to_owned);
    Some((stream, info))
}

/// What a connection holds for its life, besides its socket: its slot and
/// its place in the drain. Moves with the connection into the lot and back.
pub(super) struct Held {
    slot: Slot,
    _guard: DrainGuard,
}

impl Held {
    /// The connection counts of its listener.
    pub(super) fn counts(&self) -> &ConnCounts {
        &self.slot.counts
    }

    /// The same, shared: for what outlives a borrow (the connection's state).
    pub(super) fn shared_counts(&self) -> Arc<ConnCounts> {
        self.slot.counts.clone()
    }
}

/// Wraps the application's service for one connection: marks the
/// connection busy while a response is produced and sent (for the time
/// limits) and upgraded once it switches protocols (no time limit after
/// that), and once draining adds `Connection: close` to HTTP/1 responses,
/// so a keep-alive client finishes its exchange and then reconnects — to the
/// next generation — instead of meeting a closed socket. Never to a `101`:
/// the switch is what the client asked for, and its new protocol has its
/// own way to end (a WebSocket's close frame).
pub(super) struct DrainAware<S> {
    // hyper calls with `&self`; tower services need `&mut self`, so each
    // request gets a clone (cheap for axum's `Router`).
    inner: S,
    stage: watch::Receiver<Stage>,
    state: Arc<ConnState>,
}

// Never pinned structurally: `inner` is only cloned. Being `Unpin` lets a
// finished hyper connection be taken apart (`into_parts`) to park it.
impl<S> Unpin for DrainAware<S> {}

impl<S> DrainAware<S> {
    pub(super) fn new(
        inner: S,
        stage: watch::Receiver<Stage>,
        state: Arc<ConnState>,
    ) -> DrainAware<S> {
        DrainAware {
            inner,
            stage,
            state,
        }
    }

    pub(super) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: AppBody,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = Respond<S, S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let http1 = req.version() < Version::HTTP_2;
        Respond {
            // hyper spawns an HTTP/2 stream's task right after this call.
            progress: (!http1).then(|| Progress::for_next_stream(self.state.counts())),
            http1,
            call: Call::Ready {
                service: self.inner.clone(),
                req: Some(req),
            },
            busy: Some(self.state.request_started()),
            stage: self.stage.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// One request through [`DrainAware`]: the application's service made
    /// ready and called, then its response marked (`Connection: close`
    /// while draining) and its body tracked. A named future rather than a
    /// boxed one: no allocation per request.
    pub(super) struct Respond<S, F> {
        #[pin]
        call: Call<S, F>,
        busy: Option<BusyGuard>,
        stage: watch::Receiver<Stage>,
        http1: bool,
        // HTTP/2: what the stream's write limit watches (see `stall`).
        progress: Option<Arc<Progress>>,
    }
}

pin_project_lite::pin_project! {
    #[project = CallProj]
    pub(super) enum Call<S, F> {
        /// Waiting for the service to be ready.
        Ready { service: S, req: Option<Request<Incoming>> },
        /// The service's response on its way.
        Called { #[pin] response: F },
    }
}

impl<S, B> Future for Respond<S, S::Future>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Output = Result<Response<Tracked<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let response = match this.call.as_mut().project() {
                CallProj::Ready { service, req } => {
                    std::task::ready!(service.poll_ready(cx))?;
                    let req = req.take().expect("a request is called once");
                    service.call(req)
                }
                CallProj::Called { response } => {
                    let mut response = std::task::ready!(response.poll(cx))?;
                    let busy = this.busy.take().expect("a response is produced once");
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        // `Connection: upgrade` is what makes it a switch: a
                        // `close` added here would refuse it.
                        busy.upgraded();
                    } else if *this.http1 && *this.stage.borrow() >= Stage::Draining {
                        response
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    let progress = this.progress.take();
                    if let Some(progress) = &progress {
                        progress.head_ready();
                    }
                    return Poll::Ready(Ok(response.map(|body| Tracked {
                        body,
                        _busy: busy,
                        progress,
                    })));
                }
            };
            this.call.set(Call::Called { response });
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its connection marked busy until it is
    /// dropped (fully sent, or abandoned), and on HTTP/2 tells the stream's
    /// write limit when it hands a frame over.
    pub struct Tracked<B> {
        #[pin]
        body: B,
        _busy: BusyGuard,
        progress: Option<Arc<Progress>>,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if let Some(progress) = this.progress {
            progress.frame_taken(matches!(polled, Poll::Ready(Some(Ok(_)))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
