//! A graceful HTTP server for any hyper or axum (tower) service, built on
//! the rest of the crate: it serves every listener, reports `READY=1`, and on
//! the shutdown trigger drains in this order, so no client sees an error:
//!
//! 1. stop accepting (the socket stays open in the process manager, so new
//!    connections wait in the kernel's queue for the next generation);
//! 2. answer HTTP/1 requests with `Connection: close`, so keep-alive clients
//!    move to a new connection after their current response;
//! 3. after a short idle grace, close idle connections (HTTP/1) and send
//!    GOAWAY (HTTP/2) — closing an idle connection at once would race with a
//!    client that is just reusing it;
//! 4. finish as soon as no connection is left, or abort the rest at the
//!    drain deadline.
//!
//! It never waits on a fixed sleep: each step ends on an event or a deadline.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Context;
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use crate::drain::{Drain, DrainGuard, DrainOutcome};
use crate::lifecycle::{Lifecycle, Phase};
use crate::listener::{Listener, Listeners, NamedListener};
use crate::notify;
use crate::signal::{ShutdownSignals, Signal};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How far the shutdown has gone; connections react to each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Serving,
    /// Not accepting; HTTP/1 responses carry `Connection: close`.
    Draining,
    /// Idle connections are closed, HTTP/2 gets GOAWAY.
    Closing,
    /// The drain deadline passed: drop what is left.
    Abort,
}

/// A graceful server over a set of listeners. See the module docs.
pub struct Server {
    listeners: Vec<NamedListener>,
    drain_timeout: Duration,
    idle_grace: Duration,
    notify: bool,
    trigger: Trigger,
    lifecycle: Lifecycle,
    draining: watch::Sender<bool>,
}

/// What happened during a server's life, returned when it has stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReport {
    /// The signal that stopped it (`None` for a custom shutdown future).
    pub signal: Option<Signal>,
    /// Connections accepted over the whole life.
    pub connections: u64,
    /// Whether everything finished before the drain deadline.
    pub outcome: DrainOutcome,
    /// Time from the shutdown trigger to the end of the drain.
    pub drain_time: Duration,
}

/// Tells application code that the server is draining, e.g. to end
/// long-lived streams (SSE, WebSocket) cleanly instead of being cut at the
/// deadline.
#[derive(Debug, Clone)]
pub struct Draining(watch::Receiver<bool>);

impl Draining {
    /// True once the drain has started.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the drain starts (at once if it has started).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the server is gone, which also ends the wait.
        let _ = rx.wait_for(|d| *d).await;
    }
}

impl Server {
    /// A server over these listeners with the defaults: 30 s drain deadline,
    /// 1 s idle grace, `sd_notify` on, stop on SIGTERM/SIGINT.
    pub fn new(listeners: Listeners) -> Server {
        Server {
            listeners: listeners.into_vec(),
            drain_timeout: Duration::from_secs(30),
            idle_grace: Duration::from_secs(1),
            notify: true,
            trigger: Trigger::DefaultSignals,
            lifecycle: Lifecycle::new(),
            draining: watch::Sender::new(false),
        }
    }

    /// The longest the drain may take before remaining connections are cut.
    pub fn drain_timeout(mut self, timeout: Duration) -> Server {
        self.drain_timeout = timeout;
        self
    }

    /// How long idle keep-alive connections are left open after the drain
    /// starts, so clients reusing them get a `Connection: close` answer
    /// instead of a closed socket.
    pub fn idle_grace(mut self, grace: Duration) -> Server {
        self.idle_grace = grace;
        self
    }

    /// Whether to send `READY=1` / `STOPPING=1` to `NOTIFY_SOCKET`.
    pub fn notify(mut self, on: bool) -> Server {
        self.notify = on;
        self
    }

    /// Stops on this future instead of SIGTERM/SIGINT.
    pub fn with_shutdown(mut self, fut: impl Future<Output = ()> + Send + 'static) -> Server {
        self.trigger = Trigger::Custom(Box::pin(fut));
        self
    }

    /// Stops on these (already installed) signal handlers. Install them as
    /// early as possible — before announcing the sockets — so that a SIGTERM
    /// during a slow start-up is a graceful stop, not a kill. A second signal
    /// during the drain closes the remaining connections at once.
    pub fn with_signals(mut self, signals: ShutdownSignals) -> Server {
        self.trigger = Trigger::Signals(signals);
        self
    }

    /// Watches the lifecycle phases.
    pub fn lifecycle(&self) -> watch::Receiver<Phase> {
        self.lifecycle.subscribe()
    }

    /// A handle that tells when the drain begins.
    pub fn draining(&self) -> Draining {
        Draining(self.draining.subscribe())
    }

    /// Serves `service` until the shutdown trigger, then drains.
    ///
    /// Fails only if the listeners or the signal handlers cannot be set up.
    pub async fn serve<S, B>(self, service: S) -> io::Result<ServeReport>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        // Handlers first: a SIGTERM that arrives right after READY=1 must count.
        let (mut custom, mut signals) = match self.trigger {
            Trigger::Custom(fut) => (Some(fut), None),
            Trigger::Signals(s) => (None, Some(s)),
            Trigger::DefaultSignals => (None, Some(ShutdownSignals::install()?)),
        };
        let (stage_tx, stage_rx) = watch::channel(Stage::Serving);
        let shared = Arc::new(Shared {
            builder: builder(),
            service,
            stage: stage_rx,
            drain: Drain::new(),
            accepted: AtomicU64::new(0),
        });

        let mut accept_tasks = Vec::with_capacity(self.listeners.len());
        for named in self.listeners {
            let listener = AsyncListener::new(named.listener)?;
            accept_tasks.push(tokio::spawn(accept_loop(listener, shared.clone())));
        }
        self.lifecycle.set(Phase::Ready);
        if self.notify {
            report_notify(notify::ready());
        }

        let signal = match (&mut custom, &mut signals) {
            (Some(fut), _) => {
                fut.await;
                None
            }
            (None, Some(s)) => Some(s.recv().await),
            (None, None) => unreachable!("one trigger is always set"),
        };
        let started = Instant::now();
        let deadline = started + self.drain_timeout;
        tracing::info!(?signal, in_flight = shared.drain.active(), "draining");
        self.lifecycle.set(Phase::Draining);
        self.draining.send_replace(true);
        if self.notify {
            report_notify(notify::stopping());
        }

        stage_tx.send_replace(Stage::Draining);
        for task in accept_tasks {
            // The loops return as soon as they see the stage; dropping their
            // listener is what stops this process accepting.
            let _ = task.await;
        }
        let grace = deadline.min(started + self.idle_grace);
        let mut waited = drain_or_signal(&shared.drain, grace, signals.as_mut()).await;
        if waited == Waited::Deadline {
            stage_tx.send_replace(Stage::Closing);
            waited = drain_or_signal(&shared.drain, deadline, signals.as_mut()).await;
        }
        let outcome = match waited {
            Waited::Drained => DrainOutcome::Drained,
            Waited::Deadline => {
                let remaining = shared.drain.active();
                tracing::warn!(
                    remaining,
                    "drain deadline reached, closing remaining connections"
                );
                DrainOutcome::DeadlineReached { remaining }
            }
            Waited::Signal(signal) => {
                let remaining = shared.drain.active();
                tracing::warn!(
                    ?signal,
                    remaining,
                    "second stop signal, closing remaining connections"
                );
                DrainOutcome::DeadlineReached { remaining }
            }
        };
        if let DrainOutcome::DeadlineReached { .. } = outcome {
            stage_tx.send_replace(Stage::Abort);
            // Aborted connection tasks return at once; this only waits for them to run.
            shared
                .drain
                .wait(Instant::now() + Duration::from_secs(1))
                .await;
        }
        self.lifecycle.set(Phase::Stopped);
        let report = ServeReport {
            signal,
            connections: shared.accepted.load(Ordering::Relaxed),
            outcome,
            drain_time: started.elapsed(),
        };
        tracing::info!(?report.outcome, drain_ms = report.drain_time.as_millis() as u64, "stopped");
        Ok(report)
    }
}

enum Trigger {
    DefaultSignals,
    Signals(ShutdownSignals),
    Custom(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// How a drain wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    Drained,
    /// The deadline given to this wait passed.
    Deadline,
    /// Another stop signal arrived.
    Signal(Signal),
}

async fn drain_or_signal(
    drain: &Drain,
    deadline: Instant,
    signals: Option<&mut ShutdownSignals>,
) -> Waited {
    let wait = async {
        match drain.wait(deadline).await {
            DrainOutcome::Drained => Waited::Drained,
            DrainOutcome::DeadlineReached { .. } => Waited::Deadline,
        }
    };
    match signals {
        None => wait.await,
        Some(s) => tokio::select! {
            w = wait => w,
            sig = s.recv() => Waited::Signal(sig),
        },
    }
}

fn report_notify(result: io::Result<bool>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new());
    b.http2().timer(TokioTimer::new());
    b
}

/// What the accept loops and connection tasks share.
struct Shared<S> {
    builder: Builder<TokioExecutor>,
    service: S,
    stage: watch::Receiver<Stage>,
    drain: Drain,
    accepted: AtomicU64,
}

enum AsyncListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl AsyncListener {
    fn new(listener: Listener) -> io::Result<AsyncListener> {
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

async fn accept_loop<S, B>(listener: AsyncListener, shared: Arc<Shared<S>>)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut stage = shared.stage.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s >= Stage::Draining) => return,
            res = accept(&listener) => res,
        };
        match accepted {
            Ok(Accepted::Tcp(io)) => {
                let _ = io.set_nodelay(true);
                spawn_connection(io, &shared);
            }
            Ok(Accepted::Unix(io)) => spawn_connection(io, &shared),
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

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &AsyncListener) -> io::Result<Accepted> {
    match listener {
        AsyncListener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        AsyncListener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn spawn_connection<I, S, B>(io: I, shared: &Arc<Shared<S>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let guard = shared.drain.guard();
    let shared = shared.clone();
    tokio::spawn(serve_connection(io, shared, guard));
}

async fn serve_connection<I, S, B>(io: I, shared: Arc<Shared<S>>, _guard: DrainGuard)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut stage = shared.stage.clone();
    let service = DrainAware {
        inner: shared.service.clone(),
        stage: stage.clone(),
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let now = *stage.borrow_and_update();
        if now == Stage::Abort {
            return; // dropping the connection closes the socket
        }
        if now >= Stage::Closing && !closing {
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stage.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Wraps the application's service: once draining, HTTP/1 responses carry
/// `Connection: close`, so a keep-alive client finishes its exchange and then
/// reconnects — to the next generation — instead of meeting a closed socket.
#[derive(Clone)]
struct DrainAware<S> {
    inner: S,
    stage: watch::Receiver<Stage>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut inner = self.inner.clone();
        let stage = self.stage.clone();
        let http1 = req.version() < Version::HTTP_2;
        Box::pin(async move {
            std::future::poll_fn(|cx: &mut Context<'_>| inner.poll_ready(cx)).await?;
            let mut response = inner.call(req).await?;
            if http1 && *stage.borrow() >= Stage::Draining {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}
