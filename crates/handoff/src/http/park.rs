//! Serving one connection with hyper, and parking it between HTTP/1
//! requests: once an HTTP/1 keep-alive connection has been idle for the
//! park delay (`Server::park_idle`), hyper's connection is closed on our
//! side only — its state, read and write buffers and the service's future
//! are freed. The connection then leaves its task for the server's lot
//! (`lot`), where it is an entry of a table until it is readable, and
//! [`resume`] serves it in a new task: a plain socket (TCP or Unix) as the
//! bare socket, a TLS one as its boxed stream (socket and rustls's
//! session). A TLS connection whose session already holds decrypted bytes
//! (or the peer's close) is served again at once instead, in its task.
//! Either way, when the socket becomes readable a new hyper connection
//! serves it, with any bytes hyper had already read put back in front. An
//! idle connection thus holds no read buffer of hyper's, and no task.
//!
//! A parked connection is still a connection: it keeps its place under
//! `max_connections`, its count as open on its listener and in the drain,
//! and its keep-alive deadline. The drain closes it when idle connections
//! are closed (it has nothing in flight), and a peer that closes it wakes
//! it up to find the end of the stream. HTTP/2 connections are never
//! parked: h2's state (streams, flow control, HPACK tables) cannot be
//! given up between requests.
//!
//! Owns the per-connection serving loop; never decides when to drain.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

#[cfg(feature = "tls")]
use super::tls::TlsStream;
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{AppBody, AppService, ConnCounts, DrainAware, Held, Shared};
use super::guard::{ConnState, Guarded};
use super::lot::{Detached, Entry};
use super::trim::Trim;
use super::{ConnInfo, Stage};

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's socket, as a parked connection waits on it.
pub trait Park: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// Resolves when the peer has sent something or closed the connection
    /// (possibly spuriously).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// The plain socket out of tokio, for the lot; `Err(self)` when the
    /// connection is more than a socket (TLS). `Ok(Err(_))`: taking it out
    /// failed, and the connection is lost.
    fn detach(self) -> Result<io::Result<Detached>, Self>
    where
        Self: Sized,
    {
        Err(self)
    }

    /// A socket [`Park::detach`] gave, registered with tokio again.
    fn attach(socket: Detached) -> io::Result<Self>
    where
        Self: Sized,
    {
        drop(socket);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Makes tokio forget the waker of the task that last waited on this
    /// socket: a socket that outlives its task registered with tokio (a TLS
    /// one in the lot) would otherwise keep that finished task's whole
    /// allocation alive through it.
    fn forget_task(&self) {}

    /// A TLS stream over this socket type, as the lot keeps it; `Err(tls)`
    /// for a socket type the lot does not know.
    #[cfg(feature = "tls")]
    fn detach_tls(tls: Box<TlsStream<Self>>) -> Result<Detached, Box<TlsStream<Self>>>
    where
        Self: Sized,
    {
        Err(tls)
    }

    /// A TLS stream [`Park::detach_tls`] gave.
    #[cfg(feature = "tls")]
    fn attach_tls(socket: Detached) -> io::Result<Box<TlsStream<Self>>>
    where
        Self: Sized,
    {
        drop(socket);
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Park for tokio::net::TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        tokio::net::TcpStream::readable(self)
    }

    fn detach(self) -> Result<io::Result<Detached>, Self> {
        Ok(self.into_std().map(Detached::Tcp))
    }

    fn forget_task(&self) {
        // A no-op waker takes the place of the task's (none is kept when
        // the socket is ready: a wake-up already took it).
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.poll_read_ready(&mut cx);
        let _ = self.poll_write_ready(&mut cx);
    }

    fn attach(socket: Detached) -> io::Result<Self> {
        match socket {
            Detached::Tcp(s) => tokio::net::TcpStream::from_std(s),
            _ => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    #[cfg(feature = "tls")]
    fn detach_tls(tls: Box<TlsStream<Self>>) -> Result<Detached, Box<TlsStream<Self>>> {
        Ok(Detached::TlsTcp(tls))
    }

    #[cfg(feature = "tls")]
    fn attach_tls(socket: Detached) -> io::Result<Box<TlsStream<Self>>> {
        match socket {
            Detached::TlsTcp(tls) => Ok(tls),
            _ => Err(io::ErrorKind::InvalidInput.into()),
        }
    }
}

impl Park for tokio::net::UnixStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        tokio::net::UnixStream::readable(self)
    }

    fn detach(self) -> Result<io::Result<Detached>, Self> {
        Ok(self.into_std().map(Detached::Unix))
    }

    fn forget_task(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.poll_read_ready(&mut cx);
        let _ = self.poll_write_ready(&mut cx);
    }

    fn attach(socket: Detached) -> io::Result<Self> {
        match socket {
            Detached::Unix(s) => tokio::net::UnixStream::from_std(s),
            _ => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    #[cfg(feature = "tls")]
    fn detach_tls(tls: Box<TlsStream<Self>>) -> Result<Detached, Box<TlsStream<Self>>> {
        Ok(Detached::TlsUnix(tls))
    }

    #[cfg(feature = "tls")]
    fn attach_tls(socket: Detached) -> io::Result<Box<TlsStream<Self>>> {
        match socket {
            Detached::TlsUnix(tls) => Ok(tls),
            _ => Err(io::ErrorKind::InvalidInput.into()),
        }
    }
}

/// A TLS connection is served boxed: rustls's session is over a kilobyte,
/// and every future that holds the stream (a connection's task is as large
/// as the largest of them, for the connection's whole life) would hold it
/// inline, some of them more than once. The lot keeps the same box.
#[cfg(feature = "tls")]
impl<I: Park> Park for Box<TlsStream<I>> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        let io = self.io();
        // The stream may already hold decrypted bytes (or the peer's
        // close): those are to be read now, the socket may never become
        // readable.
        let buffered = self.has_buffered_read();
        async move {
            if buffered {
                return Ok(());
            }
            io.readable().await
        }
    }

    /// The whole stream (socket and rustls's session) for the lot, unless
    /// rustls holds decrypted bytes or the peer's close: those are for now,
    /// and the socket may never become readable.
    fn detach(mut self) -> Result<io::Result<Detached>, Self> {
        if self.has_buffered_read() {
            return Err(self);
        }
        self.release();
        self.io().forget_task();
        I::detach_tls(self).map(Ok)
    }

    fn attach(socket: Detached) -> io::Result<Self> {
        I::attach_tls(socket)
    }
}

/// Serves one connection until it ends: HTTP/2 as one hyper connection,
/// HTTP/1 as hyper connections one after the other with the connection
/// parked in between (in the lot when there is one, else in this task).
pub(super) async fn serve<I, F, S, B>(
    io: I,
    service: S,
    shared: &Shared<F>,
    info: ConnInfo,
    held: Held,
) where
    I: Park,
    S: AppService<B>,
    B: AppBody,
{
    let released = Released(&shared.trim);
    let mut stage = shared.stage.clone();
    let state = Arc::new(ConnState::counted(held.shared_counts()));
    let mut io = Guarded::new(Prefixed::new(io), state.clone(), shared.timeouts);
    match sniff(&mut io, &mut stage).await {
        Sniffed::Http2 => return serve_h2(io, service, state, shared, stage).await,
        Sniffed::Http1 => {}
        Sniffed::End => return close(io, &mut stage).await,
    }
    serve_http1(io, state, service, shared, stage, info, held, released).await
}

/// Serves a connection taken out of the lot: idle HTTP/1 until its
/// keep-alive deadline, as when it was parked.
pub(super) async fn resume<I, F, S, B>(
    io: I,
    service: S,
    shared: &Shared<F>,
    info: ConnInfo,
    held: Held,
    deadline: Option<Instant>,
) where
    I: Park,
    S: AppService<B>,
    B: AppBody,
{
    let released = Released(&shared.trim);
    let state = Arc::new(ConnState::counted(held.shared_counts()));
    let io = Guarded::resumed(Prefixed::new(io), state.clone(), shared.timeouts, deadline);
    let stage = shared.stage.clone();
    serve_http1(io, state, service, shared, stage, info, held, released).await
}

/// The HTTP/1 loop of [`serve`]: hyper connections one after the other,
/// parked in between.
#[expect(clippy::too_many_arguments, reason = "one connection's whole state")]
async fn serve_http1<I, F, S, B>(
    mut io: Guarded<Prefixed<I>>,
    mut state: Arc<ConnState>,
    mut service: S,
    shared: &Shared<F>,
    mut stage: watch::Receiver<Stage>,
    mut info: ConnInfo,
    mut held: Held,
    released: Released<'_>,
) where
    I: Park,
    S: AppService<B>,
    B: AppBody,
{
    loop {
        let Some(parked) = serve_h1(io, service, state, shared, &mut stage).await else {
            return;
        };
        let mut socket = parked.io;
        // With bytes of the next request already read, it is served now.
        if parked.prefix.is_empty() {
            if let Some(lot) = &shared.lot {
                match socket.detach() {
                    Err(kept) => socket = kept,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "parked connection lost");
                        return;
                    }
                    Ok(Ok(detached)) => {
                        let entry = Entry {
                            socket: detached,
                            info,
                            held,
                            deadline: parked.deadline,
                        };
                        let Err(entry) = lot.park(entry, &shared.trim) else {
                            // The lot counts its end for the trimmer.
                            std::mem::forget(released);
                            return;
                        };
                        (info, held) = (entry.info, entry.held);
                        socket = match I::attach(entry.socket) {
                            Ok(socket) => socket,
                            Err(e) => {
                                tracing::debug!(error = %e, "parked connection lost");
                                return;
                            }
                        };
                    }
                }
            }
            let counts = held.counts();
            socket = match wait(socket, parked.deadline, &mut stage, counts, &shared.trim).await {
                Some(socket) => socket,
                None => return,
            };
        }
        service = parked.service;
        state = Arc::new(ConnState::counted(held.shared_counts()));
        let socket = Prefixed {
            prefix: parked.prefix,
            io: socket,
        };
        io = Guarded::resumed(socket, state.clone(), shared.timeouts, parked.deadline);
    }
}

/// What a connection speaks, from its first bytes.
enum Sniffed {
    Http1,
    Http2,
    /// The peer closed, or sent nothing in time (answered by `Guarded`).
    End,
}

/// Reads until the first bytes show whether the connection starts with the
/// HTTP/2 preface, then puts them back in front of the stream. Gives up when
/// idle connections are being closed.
async fn sniff<I: Park>(
    io: &mut Guarded<Prefixed<I>>,
    stage: &mut watch::Receiver<Stage>,
) -> Sniffed {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let read = async {
        while filled < H2_PREFACE.len() {
            let n = io.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Ok(Sniffed::End);
            }
            let matches = buf[filled..filled + n] == H2_PREFACE[filled..filled + n];
            filled += n;
            if !matches {
                return Ok(Sniffed::Http1);
            }
        }
        Ok::<_, io::Error>(Sniffed::Http2)
    };
    let sniffed = tokio::select! {
        res = read => res,
        _ = stage.wait_for(|s| *s >= Stage::Closing) => return Sniffed::End,
    };
    match sniffed {
        Ok(Sniffed::End) => Sniffed::End,
        Ok(found) => {
            io.get_mut().prefix = Bytes::copy_from_slice(&buf[..filled]);
            if matches!(found, Sniffed::Http2) {
                io.speaks_h2();
            }
            found
        }
        Err(e) => {
            tracing::debug!(error = %e, "connection failed before its first request");
            Sniffed::End
        }
    }
}

/// A parked HTTP/1 connection: the socket, the bytes hyper had read but not
/// used, the keep-alive deadline and the application's service.
struct Parked<I, S> {
    io: I,
    prefix: Bytes,
    deadline: Option<Instant>,
    service: S,
}

/// Serves HTTP/1 requests until the connection ends (`None`) or is parked.
async fn serve_h1<I, F, S, B>(
    io: Guarded<Prefixed<I>>,
    service: S,
    state: Arc<ConnState>,
    shared: &Shared<F>,
    stage: &mut watch::Receiver<Stage>,
) -> Option<Parked<I, S>>
where
    I: Park,
    S: AppService<B>,
    B: AppBody,
{
    let service = DrainAware::new(service, stage.clone(), state.clone());
    // Boxed: a parked connection's task keeps none of hyper's state.
    let mut conn = Box::new(
        shared
            .http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades(),
    );
    let mut closing = false;
    let mut parking = false;
    // Tells whether the stage moved without touching its waiters (below).
    let mut probe = stage.clone();
    loop {
        let now = *stage.borrow_and_update();
        probe.mark_unchanged();
        if now == Stage::Abort {
            return None; // dropping the connection closes the socket
        }
        if now >= Stage::Closing && !closing {
            closing = true;
            Pin::new(&mut *conn).graceful_shutdown();
        }
        // Outside tokio's cooperative budget: a poll made when the task's
        // budget is spent would return without registering the waker, and
        // this one is not polled again until the stage moves.
        let changed = tokio::task::unconstrained(stage.changed());
        let mut changed = std::pin::pin!(changed);
        let mut waiting = false;
        // The stage's `changed` is polled once to register its waker, and
        // again only when the stage did change: a wake for the
        // connection's I/O (every request) costs one atomic load here
        // rather than a visit to the watch's list of waiters.
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(res) = poll_h1(&mut conn, &state, &mut parking, cx) {
                return Poll::Ready(Woke::Served(res));
            }
            if !waiting || probe.has_changed().unwrap_or(true) {
                waiting = true;
                if let Poll::Ready(changed) = changed.as_mut().poll(cx) {
                    return Poll::Ready(match changed {
                        Ok(()) => Woke::Stage,
                        Err(_) => Woke::Gone,
                    });
                }
            }
            Poll::Pending
        })
        .await;
        let ended = match woke {
            Woke::Served(res) => res,
            Woke::Stage => continue,
            Woke::Gone => return None,
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
            return None;
        }
        if !parking {
            return None; // hyper closed the connection and shut the socket down
        }
        // `None`: the connection was upgraded and now belongs to the application.
        let parts = conn.into_parts()?;
        let (socket, deadline) = parts.io.into_inner().into_parked();
        let (io, rest) = socket.into_parts();
        return Some(Parked {
            io,
            prefix: join(parts.read_buf, rest),
            deadline,
            service: parts.service.into_inner(),
        });
    }
}

/// What woke a served HTTP/1 connection's task.
enum Woke {
    /// hyper's connection ended (or closed to be parked).
    Served(hyper::Result<()>),
    /// The server's stage moved.
    Stage,
    /// The server is gone.
    Gone,
}

type Http1<I, S> =
    hyper::server::conn::http1::UpgradeableConnection<TokioIo<Guarded<Prefixed<I>>>, DrainAware<S>>;

/// Polls hyper's connection; when the I/O side asks for the connection to
/// be parked, closes hyper's side of it, which ends at once on an idle
/// connection (and after the exchange in progress otherwise).
fn poll_h1<I, S, B>(
    conn: &mut Http1<I, S>,
    state: &ConnState,
    parking: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<hyper::Result<()>>
where
    I: Park,
    S: AppService<B>,
    B: AppBody,
{
    loop {
        match Pin::new(&mut *conn).poll(cx) {
            Poll::Pending if !*parking && state.park_requested() => {
                *parking = true;
                Pin::new(&mut *conn).graceful_shutdown();
            }
            other => return other,
        }
    }
}

/// Serves an HTTP/2 connection to its end.
async fn serve_h2<I, F, S, B>(
    io: Guarded<Prefixed<I>>,
    service: S,
    state: Arc<ConnState>,
    shared: &Shared<F>,
    mut stage: watch::Receiver<Stage>,
) where
    I: Park,
    S: AppService<B>,
    B: AppBody,
{
    let service = DrainAware::new(service, stage.clone(), state.clone());
    let mut conn = Box::pin(shared.http2.serve_connection(TokioIo::new(io), service));
    let mut closing = false;
    loop {
        let now = *stage.borrow_and_update();
        if now == Stage::Abort {
            return;
        }
        if now >= Stage::Closing && !closing {
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
        let served = std::future::poll_fn(|cx| {
            loop {
                match conn.as_mut().poll(cx) {
                    // Idle past the keep-alive limit: a `GOAWAY`, then the end.
                    Poll::Pending if !closing && state.close_requested() => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    other => return other,
                }
            }
        });
        tokio::select! {
            res = served => {
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

/// Waits, parked, for the next bytes; `None` when the connection was closed
/// instead: its keep-alive deadline passed, or the drain closes idle
/// connections.
async fn wait<I: Park>(
    io: I,
    deadline: Option<Instant>,
    stage: &mut watch::Receiver<Stage>,
    counts: &ConnCounts,
    trim: &Trim,
) -> Option<I> {
    let _parked = ParkedGauge::new(counts);
    trim.released();
    let expired = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let woken = tokio::select! {
        biased;
        _ = stage.wait_for(|s| *s >= Stage::Closing) => false,
        _ = expired => {
            tracing::debug!("keep-alive connection idle: closing");
            false
        }
        res = io.readable() => match res {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "parked connection failed");
                false
            }
        },
    };
    if woken {
        return Some(io);
    }
    close(io, stage).await;
    None
}

/// Ends the connection cleanly (FIN, or TLS close_notify then FIN), unless
/// the drain is aborted meanwhile.
async fn close<W: AsyncWrite + Unpin>(mut io: W, stage: &mut watch::Receiver<Stage>) {
    tokio::select! {
        _ = io.shutdown() => {}
        _ = stage.wait_for(|s| *s == Stage::Abort) => {}
    }
}

/// Counts the connection's end for the heap trimmer.
struct Released<'a>(&'a Trim);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.released();
    }
}

/// Counts a connection as parked on its listener while it lives.
struct ParkedGauge<'a>(&'a ConnCounts);

impl<'a> ParkedGauge<'a> {
    fn new(counts: &'a ConnCounts) -> ParkedGauge<'a> {
        counts.count_parked(true);
        ParkedGauge(counts)
    }
}

impl Drop for ParkedGauge<'_> {
    fn drop(&mut self) {
        self.0.count_parked(false);
    }
}

/// `first` followed by `then`, in an allocation of their size: `first` is
/// hyper's read buffer, which an empty `Bytes` made from it would keep whole.
fn join(first: Bytes, then: Bytes) -> Bytes {
    if first.is_empty() && then.is_empty() {
        return Bytes::new();
    }
    let mut joined = BytesMut::with_capacity(first.len() + then.len());
    joined.extend_from_slice(&first);
    joined.extend_from_slice(&then);
    joined.freeze()
}

/// A stream that reads `prefix` first: bytes already taken from the socket
/// (while sniffing the protocol, or by a previous hyper connection) and
/// given back.
pub(super) struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    fn new(io: I) -> Prefixed<I> {
        Prefixed {
            prefix: Bytes::new(),
            io,
        }
    }

    fn into_parts(self) -> (I, Bytes) {
        (self.io, self.prefix)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = Bytes::new(); // frees its buffer
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use super::Park;

    /// A waker that only counts its clones (through its `Arc`).
    struct Counted;

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {}
    }

    #[tokio::test]
    async fn forget_task_drops_the_waker_tokio_kept_for_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let task = Arc::new(Counted);
        let waker = Waker::from(task.clone());
        // Nothing to read (a read that would block clears tokio's readiness):
        // tokio keeps the waker, as for a task that waited.
        let would_block = server.try_read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(would_block.kind(), std::io::ErrorKind::WouldBlock);
        assert!(
            server
                .poll_read_ready(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(waker);
        assert_eq!(Arc::strong_count(&task), 2, "tokio keeps the waker");
        server.forget_task();
        assert_eq!(Arc::strong_count(&task), 1, "tokio still keeps the waker");
        drop(client);
    }
}
