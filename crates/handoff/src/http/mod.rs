//! A graceful HTTP server for any hyper or axum (tower) service, built on
//! the rest of the crate: it serves every listener, reports `READY=1`, and on
//! the shutdown trigger drains in this order, so no client sees an error:
//!
//! 1. stop accepting (the socket stays open in the process manager, so new
//!    connections wait in the kernel's queue for the next generation);
//! 2. answer HTTP/1 requests with `Connection: close` (a `101` excepted: it
//!    switches protocols), so keep-alive clients move to a new connection
//!    after their current response;
//! 3. after a short idle grace, close idle connections (HTTP/1) and send
//!    GOAWAY (HTTP/2) — closing an idle connection at once would race with a
//!    client that is just reusing it;
//! 4. finish as soon as no connection is left, or abort the rest at the
//!    drain deadline.
//!
//! It never waits on a fixed sleep: each step ends on an event or a deadline.
//!
//! With the `tls` feature, `Server::tls` makes every connection start
//! with a TLS handshake (rustls's unbuffered API under a stream of this
//! crate's, `tls`, which frees its buffers whenever the connection waits);
//! HTTP/1.1 and HTTP/2 (ALPN `h2`) are then served and drained exactly like
//! on a plain connection.
//!
//! With `Server::park_idle`, an HTTP/1 keep-alive connection idle for that
//! long is parked: it keeps its socket and nothing of hyper's (see `park`).

mod conn;
mod guard;
mod lot;
mod park;
mod stall;
#[cfg(feature = "tls")]
mod tls;
mod trim;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

pub use self::conn::{AppBody, AppService, ConnCounts, Tracked};
use self::conn::{AsyncListener, Shared, accept_loop};
use self::guard::Timeouts;
use crate::drain::{Drain, DrainGuard, DrainOutcome};
use crate::lifecycle::{Lifecycle, Phase};
use crate::listener::{Listeners, NamedListener};
use crate::notify;
use crate::signal::{ShutdownSignals, Signal};
use crate::time::SaturatingAdd;
#[cfg(feature = "tls")]
pub use rustls;

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
    /// Each listener's connection counts, in the order of `listeners`.
    counts: Vec<Arc<ConnCounts>>,
    drain_timeout: Duration,
    idle_grace: Duration,
    park_idle: Option<Duration>,
    notify: bool,
    trigger: Trigger,
    lifecycle: Lifecycle,
    draining: watch::Sender<bool>,
    /// Connections, and whatever the application registers (upgraded
    /// connections, streams), that the drain waits for.
    drain: Drain,
    limits: Limits,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

/// Gives the TLS configuration for a new connection; see [`Server::tls`].
#[cfg(feature = "tls")]
pub type TlsConfig = Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>;

/// Protections for a server that faces clients directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; at the limit the server stops accepting
    /// and new connections wait in the kernel's queue.
    pub max_connections: usize,
    /// A client that has not sent a complete request head this long after
    /// connecting (or after starting the next request) gets `408`.
    pub header_read_timeout: Option<Duration>,
    /// A keep-alive connection with no request for this long is closed:
    /// HTTP/1 between requests, HTTP/2 with no stream open (gracefully, with
    /// a `GOAWAY`).
    pub keepalive_timeout: Option<Duration>,
    /// Request heads larger than this get `431` (at least 8 KiB).
    pub max_header_bytes: usize,
    /// A connection whose client takes none of what is written to it for
    /// this long is closed (a response it does not read, a WebSocket it
    /// does not read, alike); an HTTP/2 stream whose client keeps its
    /// window shut that long is reset alone.
    pub write_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Some(Duration::from_secs(30)),
            keepalive_timeout: None,
            max_header_bytes: 64 * 1024,
            write_timeout: None,
        }
    }
}

/// What a service factory learns about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The name of the listener it arrived on.
    pub listener: Arc<str>,
    /// The client's address (TCP only).
    pub peer: Option<SocketAddr>,
    /// Our address for it (TCP only).
    pub local: Option<SocketAddr>,
    /// Whether the connection is TLS (the server was given `Server::tls`);
    /// the service is made after the handshake.
    pub tls: bool,
    /// The name the client asked for in the TLS handshake (SNI), if any.
    pub sni: Option<String>,
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
pub struct Draining(watch::Receiver<bool>, Drain);

impl Draining {
    /// True once the drain has started.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Counts work the server cannot see — an upgraded connection (a
    /// WebSocket), a task still writing — as in flight until the guard is
    /// dropped: the drain waits for it (up to its deadline) before the
    /// server returns and the process exits.
    pub fn guard(&self) -> DrainGuard {
        self.1.guard()
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
        let listeners = listeners.into_vec();
        Server {
            counts: listeners.iter().map(|_| Arc::default()).collect(),
            listeners,
            drain_timeout: Duration::from_secs(30),
            idle_grace: Duration::from_secs(1),
            park_idle: None,
            notify: true,
            trigger: Trigger::DefaultSignals,
            lifecycle: Lifecycle::new(),
            draining: watch::Sender::new(false),
            drain: Drain::new(),
            limits: Limits::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Serves HTTPS: each accepted connection first completes a TLS
    /// handshake with the configuration `config` returns, called once per
    /// connection (so a configuration swapped behind it, e.g. a reloaded
    /// certificate, applies to new connections only). The configuration's
    /// ALPN list decides the protocols offered (`h2`, `http/1.1`): a
    /// connection that negotiated `h2` speaks HTTP/2, any other HTTP/1.1
    /// (hyper's detection of the HTTP/2 preface, as on plain connections).
    ///
    /// The handshake counts like the rest of the connection: against
    /// `max_connections`, in the drain, and it is bounded by
    /// `header_read_timeout` (then the request head gets its own). A failed
    /// or timed-out handshake closes the socket (logged at debug level); a
    /// handshake still running when idle connections are closed during the
    /// drain is abandoned.
    #[cfg(feature = "tls")]
    pub fn tls(
        mut self,
        config: Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>,
    ) -> Server {
        self.tls = Some(config);
        self
    }

    /// Sets the connection limits and time limits.
    pub fn limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
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

    /// Parks HTTP/1 keep-alive connections idle for this long (`None`, the
    /// default: never): hyper's state and buffers for the connection are
    /// freed and only its socket is kept until the next bytes arrive, when
    /// a new hyper connection serves them. The connection also gives up its
    /// task meanwhile: it waits as an entry of one table per server,
    /// watched through an epoll set of the server's own. An idle connection
    /// then costs a few hundred bytes instead of its read and write buffers
    /// and its task (with TLS, rustls's session too, without a buffer:
    /// about 4 KB). A parked connection still counts as open, is
    /// still closed at its keep-alive deadline, and is closed by the drain
    /// with the other idle connections. HTTP/2 connections are not parked.
    /// With parking, the heap is also trimmed (glibc's `malloc_trim`) once
    /// a burst of at least 1,024 parked or closed connections has ended, so
    /// that the memory they held goes back to the system.
    pub fn park_idle(mut self, after: Option<Duration>) -> Server {
        self.park_idle = after;
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

    /// Stops when `stop` moves to [`Stop::Drain`] and closes what is left
    /// when it moves to [`Stop::Now`]: for a program that runs several
    /// servers and stops them together.
    pub fn with_stop(mut self, stop: watch::Receiver<Stop>) -> Server {
        self.trigger = Trigger::Stop(stop);
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

    /// Each listener's name with its connection counts (accepted, open),
    /// which the server updates as it serves.
    pub fn connection_counts(&self) -> Vec<(String, Arc<ConnCounts>)> {
        self.listeners
            .iter()
            .zip(&self.counts)
            .map(|(l, c)| (l.name.clone(), c.clone()))
            .collect()
    }

    /// Watches the lifecycle phases.
    pub fn lifecycle(&self) -> watch::Receiver<Phase> {
        self.lifecycle.subscribe()
    }

    /// A handle that tells when the drain begins.
    pub fn draining(&self) -> Draining {
        Draining(self.draining.subscribe(), self.drain.clone())
    }

    /// Serves `service` until the shutdown trigger, then drains.
    ///
    /// Fails only if the listeners or the signal handlers cannot be set up.
    pub async fn serve<S, B>(self, service: S) -> io::Result<ServeReport>
    where
        S: AppService<B> + Sync,
        B: AppBody,
    {
        self.serve_with(move |_: &ConnInfo| service.clone()).await
    }

    /// Like [`Server::serve`], with a service made for each connection from
    /// what is known about it (e.g. the client's address).
    pub async fn serve_with<F, S, B>(self, make: F) -> io::Result<ServeReport>
    where
        F: Fn(&ConnInfo) -> S + Send + Sync + 'static,
        S: AppService<B>,
        B: AppBody,
    {
        // Handlers first: a SIGTERM that arrives right after READY=1 must count.
        let mut trigger = match self.trigger {
            Trigger::DefaultSignals => Trigger::Signals(ShutdownSignals::install()?),
            other => other,
        };
        let (stage_tx, stage_rx) = watch::channel(Stage::Serving);
        let (http1, http2) = builders(&self.limits);
        let lot = match self.park_idle {
            Some(_) => lot::Lot::new()
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no parking lot: parked connections keep their task");
                })
                .ok(),
            _ => None,
        };
        let shared = Arc::new(Shared {
            http1,
            http2,
            make,
            stage: stage_rx,
            drain: self.drain.clone(),
            accepted: AtomicU64::new(0),
            timeouts: Timeouts {
                head: self.limits.header_read_timeout,
                idle: self.limits.keepalive_timeout,
                park: self.park_idle,
                write: self.limits.write_timeout,
            },
            slots: Arc::new(Semaphore::new(self.limits.max_connections.max(1))),
            trim: trim::Trim::default(),
            lot,
            #[cfg(feature = "tls")]
            tls: self.tls,
        });

        let mut accept_tasks = Vec::with_capacity(self.listeners.len());
        for (named, counts) in self.listeners.into_iter().zip(self.counts) {
            let listener = AsyncListener::new(named.listener)?;
            let name: Arc<str> = Arc::from(named.name);
            let task = accept_loop(listener, name, counts, shared.clone());
            accept_tasks.push(tokio::spawn(task));
        }
        // With parking, what a burst of connections freed goes back to the
        // system once it has ended.
        // (Ended with the server, even if its future is dropped.)
        let _trimmer = self.park_idle.map(|_| {
            let shared = shared.clone();
            AbortOnDrop(tokio::spawn(async move {
                shared.trim.run(trim::trim_heap).await
            }))
        });
        let _lot = shared
            .lot
            .is_some()
            .then(|| AbortOnDrop(tokio::spawn(lot::run(shared.clone()))));
        self.lifecycle.set(Phase::Ready);
        if self.notify {
            report_notify(notify::ready());
        }

        let signal = trigger.first().await;
        let started = Instant::now();
        let deadline = started.saturating_add(self.drain_timeout);
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
        let grace = deadline.min(started.saturating_add(self.idle_grace));
        let mut waited = drain_or_stop(&shared.drain, grace, &mut trigger).await;
        if waited == Waited::Deadline {
            stage_tx.send_replace(Stage::Closing);
            waited = drain_or_stop(&shared.drain, deadline, &mut trigger).await;
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
            Waited::Again(signal) => {
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

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Trigger {
    DefaultSignals,
    Signals(ShutdownSignals),
    Custom(Pin<Box<dyn Future<Output = ()> + Send>>),
    Stop(watch::Receiver<Stop>),
}

/// The stop level shared by servers that stop together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep serving.
    Run,
    /// Drain gracefully.
    Drain,
    /// Close whatever is left now.
    Now,
}

impl Trigger {
    /// Waits for the request to stop.
    async fn first(&mut self) -> Option<Signal> {
        match self {
            Trigger::Signals(s) => Some(s.recv().await),
            Trigger::Custom(fut) => {
                fut.as_mut().await;
                None
            }
            Trigger::Stop(rx) => {
                // A dropped sender means nobody can stop us later: stop now.
                let _ = rx.wait_for(|s| *s >= Stop::Drain).await;
                None
            }
            Trigger::DefaultSignals => unreachable!("installed before serving"),
        }
    }

    /// Waits for a second request, which cuts the drain short.
    async fn again(&mut self) -> Option<Signal> {
        match self {
            Trigger::Signals(s) => Some(s.recv().await),
            Trigger::Stop(rx) => {
                if rx.wait_for(|s| *s == Stop::Now).await.is_err() {
                    std::future::pending::<()>().await;
                }
                None
            }
            _ => std::future::pending().await,
        }
    }
}

/// How a drain wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    Drained,
    /// The deadline given to this wait passed.
    Deadline,
    /// A second stop request arrived.
    Again(Option<Signal>),
}

async fn drain_or_stop(drain: &Drain, deadline: Instant, trigger: &mut Trigger) -> Waited {
    tokio::select! {
        outcome = drain.wait(deadline) => match outcome {
            DrainOutcome::Drained => Waited::Drained,
            DrainOutcome::DeadlineReached { .. } => Waited::Deadline,
        },
        signal = trigger.again() => Waited::Again(signal),
    }
}

fn report_notify(result: io::Result<bool>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

fn builders(limits: &Limits) -> (http1::Builder, http2::Builder<stall::StreamExec>) {
    let mut h1 = http1::Builder::new();
    // The head timeout is ours (408 instead of a silent close), see `guard`.
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let mut h2 = http2::Builder::new(stall::StreamExec {
        write_timeout: limits.write_timeout,
    });
    h2.timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
    (h1, h2)
}
