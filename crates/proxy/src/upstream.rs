//! Connections to one upstream member: opening them (with a connect
//! timeout that covers the TLS handshake of an HTTPS member), keeping idle
//! ones for reuse, and dropping them all at once when
//! the member becomes unavailable or leaves the config — a pooled connection
//! to a stopped backend must never meet a request (the request would meet a
//! closed connection, and its client a 502).
//!
//! An idle connection has no task: the member's pool checks it before
//! reuse ([`Conn::is_dead`]), and a sweep every [`SWEEP`] while any are
//! idle closes the ones the member closed or that idled too long.
//!
//! Owns only transport; which member to use is `balance`'s business, and
//! whether to retry is `forward`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::h1::{Conn, Io};
use crate::upstream_tls::MemberTls;

/// Errors of the request body as sent upstream.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type on upstream connections.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

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
}

/// The connections of one member, shared by every snapshot that has it.
#[derive(Debug)]
pub(crate) struct MemberConns {
    key: Arc<str>,
    idle: Arc<Mutex<Vec<Idle>>>,
    /// A sweep of the idle connections is scheduled.
    sweeping: Arc<AtomicBool>,
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
    conn: Box<Conn>,
    since: Instant,
}

/// The most idle connections kept per member.
const MAX_IDLE: usize = 1024;
/// How often idle connections are looked over while there are any.
const SWEEP: Duration = Duration::from_secs(2);

impl MemberConns {
    pub(crate) fn new(key: &str, settings: ConnSettings) -> MemberConns {
        MemberConns {
            key: Arc::from(key),
            idle: Arc::default(),
            sweeping: Arc::default(),
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

    /// A pooled connection that is still open at `now`, if any. Ones that
    /// were closed by the member or idled too long are dropped on the way.
    pub(crate) fn checkout(&self, now: Instant) -> Option<Box<Conn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut c) = idle.pop() {
            if now.saturating_duration_since(c.since) <= self.idle_timeout && !c.conn.is_dead() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Returns a connection after a clean exchange that ended at `now`.
    pub(crate) fn checkin(&self, mut conn: Box<Conn>, now: Instant) {
        conn.idle();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Read under the lock: `close_idle` sets the flag before it takes
            // the lock to empty the pool, so a connection checked in on another
            // thread either sees the flag or is in the pool it empties.
            if self.closed.load(Ordering::Acquire) || idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(Idle { conn, since: now });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            self.sweep_soon();
        }
    }

    /// Schedules sweeps of the idle connections until none is left.
    fn sweep_soon(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let idle: Weak<Mutex<Vec<Idle>>> = Arc::downgrade(&self.idle);
        let sweeping = self.sweeping.clone();
        let idle_timeout = self.idle_timeout;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let Some(idle) = idle.upgrade() else {
                    return;
                };
                let empty = {
                    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
                    let now = Instant::now();
                    idle.retain_mut(|c| {
                        now.saturating_duration_since(c.since) <= idle_timeout && !c.conn.is_dead()
                    });
                    if idle.is_empty() {
                        // Under the lock: a connection checked in after this
                        // sees the flag down and schedules the next sweep.
                        sweeping.store(false, Ordering::Release);
                    }
                    idle.is_empty()
                };
                if empty {
                    return;
                }
            }
        });
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
    /// within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<Box<Conn>, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(opened) => opened,
            Err(_) => Err(ConnectError::Timeout {
                member: self.key.to_string(),
                timeout: self.connect_timeout,
            }),
        }
    }

    async fn open(&self) -> Result<Box<Conn>, ConnectError> {
        let stream = TcpStream::connect(&*self.key)
            .await
            .map_err(|source| ConnectError::Io {
                member: self.key.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let io = match &self.tls {
            None => Io::Plain(stream),
            Some(tls) => Io::Tls(Box::new(tls.handshake(stream).await.map_err(|source| {
                ConnectError::Tls {
                    member: self.key.to_string(),
                    source,
                }
            })?)),
        };
        Ok(Conn::new(io))
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A member's pool with one idle connection, and the member's end of it.
    async fn pooled(idle_timeout: Duration) -> (MemberConns, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let key = listener.local_addr().unwrap().to_string();
        let conns = MemberConns::new(
            &key,
            ConnSettings {
                idle_timeout,
                connect_timeout: Duration::from_secs(5),
                tls: None,
            },
        );
        let (conn, accepted) = tokio::join!(conns.connect(), listener.accept());
        conns.checkin(conn.unwrap(), Instant::now());
        (conns, accepted.unwrap().0)
    }

    /// Waits (bounded) for the proxy's end of the connection to close.
    async fn closed_by_the_proxy(member: &mut TcpStream) {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), member.read(&mut buf)).await;
        assert_eq!(read.expect("not closed within 10 s").unwrap(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_swept_without_waiting_for_a_request() {
        // Idled too long.
        let (_conns, mut member) = pooled(Duration::from_millis(100)).await;
        closed_by_the_proxy(&mut member).await;

        // Closed by the member (half-closed here, to see the proxy close its
        // end too): not kept in CLOSE_WAIT until a request comes.
        let (conns, mut member) = pooled(Duration::from_secs(60)).await;
        member.shutdown().await.unwrap();
        closed_by_the_proxy(&mut member).await;
        assert!(conns.checkout(Instant::now()).is_none());
    }

    #[tokio::test]
    async fn a_connection_the_member_closed_is_never_checked_out() {
        let (conns, member) = pooled(Duration::from_secs(60)).await;
        drop(member);
        // Once the reactor has seen it closed, a checkout passes it by.
        let mut conn = conns.checkout(Instant::now()).unwrap();
        while !conn.is_dead() {
            tokio::task::yield_now().await;
        }
        conns.checkin(conn, Instant::now());
        assert!(conns.checkout(Instant::now()).is_none());
    }
}
