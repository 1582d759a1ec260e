//! Connections to one upstream member: opening them (with a connect
//! timeout that covers the TLS handshake of an HTTPS member), keeping idle
//! ones for reuse, and dropping them all at once when
//! the member becomes unavailable or leaves the config — a pooled connection
//! to a stopped backend must never meet a request (the request would meet a
//! closed connection, and its client a 502).
//!
//! Owns only transport; which member to use is `balance`'s business, and
//! whether to retry is `forward`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::upstream_tls::MemberTls;

/// Errors of the request body as sent upstream.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type on upstream connections.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, BoxError>;
/// A connection ready to carry one request.
pub(crate) type Sender = http1::SendRequest<ReqBody>;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("could not connect to {member}: {source}")]
    Io {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {member} failed: {source}")]
    Tls {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not connect to {member} within {timeout:?}")]
    Timeout { member: String, timeout: Duration },
    #[error("HTTP handshake with {member} failed: {source}")]
    Handshake {
        member: String,
        #[source]
        source: hyper::Error,
    },
}

/// The connections of one member, shared by every snapshot that has it.
#[derive(Debug)]
pub(crate) struct MemberConns {
    key: Arc<str>,
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// `Some`: the member speaks HTTPS.
    tls: Option<MemberTls>,
    /// Set while the member is unavailable or gone: nothing is pooled.
    closed: AtomicBool,
    /// Turns true when the member leaves the config: its long-lived
    /// streams end the way their protocols announce it (`tunnel`, `sse`).
    leaving: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

/// The most idle connections kept per member.
const MAX_IDLE: usize = 1024;

impl MemberConns {
    pub(crate) fn new(key: &str, settings: ConnSettings) -> MemberConns {
        MemberConns {
            key: Arc::from(key),
            idle: Mutex::new(Vec::new()),
            idle_timeout: settings.idle_timeout,
            connect_timeout: settings.connect_timeout,
            tls: settings.tls,
            closed: AtomicBool::new(false),
            leaving: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The member left the config: no request goes to it any more, so its
    /// WebSockets and event streams are ended too, cleanly, rather than
    /// holding it (a deploy waits for its requests before stopping it).
    pub(crate) fn leave(&self) {
        self.leaving.send_replace(true);
    }

    /// Turns true when the member leaves the config.
    pub(crate) fn leaving(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leaving.subscribe()
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The member's `host:port`, shared (for the access log).
    pub(crate) fn shared_key(&self) -> Arc<str> {
        self.key.clone()
    }

    /// A pooled connection that is still open and ready, if any. Ones that
    /// were closed by the member or idled too long are dropped on the way.
    pub(crate) async fn checkout(&self) -> Option<Sender> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    match idle.pop() {
                        None => return None,
                        Some(c)
                            if c.sender.is_closed() || c.since.elapsed() > self.idle_timeout => {}
                        Some(c) => break c.sender,
                    }
                }
            };
            let mut sender = candidate;
            if sender.is_ready() {
                return Some(sender);
            }
            // Just returned by a finished exchange: hyper marks it ready as
            // soon as its task has seen the end of the response.
            match tokio::time::timeout(self.connect_timeout, sender.ready()).await {
                Ok(Ok(())) => return Some(sender),
                _ => continue,
            }
        }
    }

    /// Returns a connection after a complete exchange.
    pub(crate) fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: `close_idle` sets the flag before it takes
        // the lock to empty the pool, so a connection checked in on another
        // thread either sees the flag or is in the pool it empties.
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes every idle connection, and pools none until `reopen`.
    pub(crate) fn close_idle(&self) {
        self.closed.store(true, Ordering::Release);
        let dropped = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        if !dropped.is_empty() {
            tracing::debug!(member = %self.key, count = dropped.len(), "closed idle upstream connections");
        }
    }

    /// Allows pooling again (the member is available).
    pub(crate) fn reopen(&self) {
        self.closed.store(false, Ordering::Release);
    }

    /// Opens a new connection: TCP, then TLS for an HTTPS member, all
    /// within the connect timeout; then the HTTP/1.1 handshake (no I/O).
    pub(crate) async fn connect(&self) -> Result<Sender, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(opened) => opened,
            Err(_) => Err(ConnectError::Timeout {
                member: self.key.to_string(),
                timeout: self.connect_timeout,
            }),
        }
    }

    async fn open(&self) -> Result<Sender, ConnectError> {
        let stream = TcpStream::connect(&*self.key)
            .await
            .map_err(|source| ConnectError::Io {
                member: self.key.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            // The plain path stays monomorphic: no boxing, no extra layer.
            None => self.handshake(stream).await,
            Some(tls) => {
                let stream = tls
                    .handshake(stream)
                    .await
                    .map_err(|source| ConnectError::Tls {
                        member: self.key.to_string(),
                        source,
                    })?;
                self.handshake(stream).await
            }
        }
    }

    /// The HTTP/1.1 client on `io`; its connection task runs on its own.
    async fn handshake<IO>(&self, io: IO) -> Result<Sender, ConnectError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ConnectError::Handshake {
                member: self.key.to_string(),
                source,
            })?;
        let member = self.key.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%member, error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// How a member's connections are made and kept; a change means new
/// connections (the idle ones are closed).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConnSettings {
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub tls: Option<MemberTls>,
}

impl Drop for MemberConns {
    fn drop(&mut self) {
        self.close_idle();
    }
}
