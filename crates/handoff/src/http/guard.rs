//! Per-connection time limits hyper does not enforce the way a front door
//! must: a client that is slow to send its request head gets
//! `408 Request Timeout` (slowloris), and an HTTP/1 keep-alive connection
//! idle for too long is closed. Owns only the I/O wrapper and the small
//! shared state the service side updates; it never touches requests.
//!
//! An HTTP/2 connection owes its preface in the head time like any new
//! connection; once the connection is known to speak HTTP/2, the head
//! timeout no longer applies (requests are streams, and frames of any kind
//! arrive between them), and the idle limit counts from the end of the last
//! stream: when it passes with no stream open, the connection loop is asked
//! to close the connection gracefully (a `GOAWAY`, so a request crossing it
//! is refused, never lost), and if that has not ended it `LINGER` later
//! (a client that never finished its handshake) reading ends it. Frames
//! that open no stream (`PING`, `SETTINGS`) do not keep a connection alive.
//! Upgraded connections (a `101 Switching Protocols` was sent) are left
//! alone: their bytes are another protocol's (a WebSocket's frames), never a
//! request head, and a quiet WebSocket is neither an idle keep-alive
//! connection nor one to park.
//!
//! It also tells when an HTTP/1 connection has been idle long enough to be
//! parked (see `park`): it asks for it through `ConnState`, and then lets
//! hyper's closing of the connection end without shutting the socket down.
//!
//! Writes have a limit too: one that has waited `Timeouts::write` for the
//! client to take any byte fails, and the connection ends — a client that
//! stops reading a response (or a WebSocket) cannot keep it, and the
//! member's exchange feeding it, for ever.
//!
//! And it closes lingering: once our side is shut down, what the peer still
//! sends is read and dropped until it closes its side too (at most 2 s), so
//! that no unread byte makes the kernel reset the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::conn::ConnCounts;
use crate::time::SaturatingAdd;

const TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Requests in flight on one connection, shared by the I/O wrapper and the
/// service wrapper.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    busy: AtomicUsize,
    /// Requests ever handed to the service on this connection.
    started: AtomicUsize,
    /// The reader parked while busy: woken when the last response is done,
    /// so the idle clock starts even though no byte arrives.
    reader: Mutex<Option<Waker>>,
    /// Set when `reader` holds a waker, so most request ends skip the lock.
    parked: AtomicBool,
    /// The connection has been idle for the park delay: the connection loop
    /// is to close hyper's side of it and keep the socket.
    park: AtomicBool,
    /// Set when the connection switched protocols: no time limit applies
    /// any more.
    upgraded: AtomicBool,
    /// An HTTP/2 connection has had no stream open for the idle limit: the
    /// connection loop is to close it gracefully.
    close_idle: AtomicBool,
    /// Its listener's counts, where the time limits count what they end.
    counts: Option<Arc<ConnCounts>>,
}

impl ConnState {
    /// The state of a new connection of a listener with `counts`.
    pub(crate) fn counted(counts: Arc<ConnCounts>) -> ConnState {
        ConnState {
            counts: Some(counts),
            ..ConnState::default()
        }
    }

    /// Its listener's counts, if it has them.
    pub(crate) fn counts(&self) -> Option<Arc<ConnCounts>> {
        self.counts.clone()
    }

    /// A request's head was parsed and handed to the service.
    pub(crate) fn request_started(self: &Arc<Self>) -> BusyGuard {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    /// Whether the I/O side asked for the connection to be parked.
    pub(crate) fn park_requested(&self) -> bool {
        self.park.load(Ordering::Acquire)
    }

    /// Whether the I/O side asked for an idle HTTP/2 connection to be
    /// closed.
    pub(crate) fn close_requested(&self) -> bool {
        self.close_idle.load(Ordering::Acquire)
    }

    fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }
}

/// Keeps the connection "busy" until the response (body included) is done.
#[derive(Debug)]
pub(crate) struct BusyGuard(Arc<ConnState>);

impl BusyGuard {
    /// The response switches protocols: from now on the connection's bytes
    /// are not HTTP, and neither the head nor the idle limit applies. Set
    /// before hyper sends the `101`, so before any byte of the new protocol
    /// is read.
    pub(crate) fn upgraded(&self) {
        self.0.upgraded.store(true, Ordering::Release);
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.parked.swap(false, Ordering::AcqRel)
        {
            let waker = self
                .0
                .reader
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// The time limits; `None` disables one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub head: Option<Duration>,
    pub idle: Option<Duration>,
    /// How long an HTTP/1 connection stays idle before it is parked.
    pub park: Option<Duration>,
    /// The longest a write waits for the client to take bytes.
    pub write: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Bytes of a request head have arrived (or the connection is new).
    Head,
    /// Nothing in flight, nothing received.
    Idle,
    /// A request is being served (its body may still be read).
    Busy,
}

/// The connection's I/O with the time limits applied on the read side.
pub(crate) struct Guarded<I> {
    io: I,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    /// What the current deadline is for, and when it passes.
    armed: Option<(Waiting, Instant)>,
    /// Fires at `timer_at` or earlier than the deadline. Deadlines only move
    /// later from one request to the next, so the timer is reset only when
    /// it would fire too late; firing early just re-arms it (a lazy timer:
    /// no timer-wheel work per request).
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    /// Set once the connection is known to speak HTTP/2.
    h2: bool,
    /// When an idle HTTP/2 connection asked to close gracefully stops being
    /// read (an end of stream for hyper).
    h2_close_by: Option<Instant>,
    /// A request head is owed: the connection is new, or bytes of the next
    /// request arrived while idle.
    pending_head: bool,
    /// `ConnState::started` as last seen: when it moves, a head was received.
    seen_started: usize,
    /// When the connection, idle since, is to be parked.
    park_at: Option<Instant>,
    /// Parking was asked for: a shutdown from hyper leaves the socket open.
    parking: bool,
    /// When a closing connection stops waiting for its peer to close too
    /// (see `poll_shutdown`); set once our side is shut down.
    linger_until: Option<Instant>,
    /// When a write that is waiting for the client to take bytes fails;
    /// cleared by every write that makes progress.
    write_by: Option<Instant>,
}

/// The longest a closing connection reads and discards what its peer still
/// sends, waiting for it to close its side too.
const LINGER: Duration = Duration::from_secs(2);

impl<I> Guarded<I> {
    pub(crate) fn new(io: I, state: Arc<ConnState>, timeouts: Timeouts) -> Guarded<I> {
        Guarded {
            io,
            state,
            timeouts,
            armed: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
            h2: false,
            h2_close_by: None,
            // A new connection owes us a request head.
            pending_head: true,
            seen_started: 0,
            park_at: None,
            parking: false,
            linger_until: None,
            write_by: None,
        }
    }

    /// The I/O of a parked HTTP/1 connection served again: idle (its first
    /// bytes start the head clock) until `idle_deadline`, as when it was
    /// parked, and known not to be HTTP/2.
    pub(crate) fn resumed(
        io: I,
        state: Arc<ConnState>,
        timeouts: Timeouts,
        idle_deadline: Option<Instant>,
    ) -> Guarded<I> {
        let mut guarded = Guarded::new(io, state, timeouts);
        guarded.pending_head = false;
        guarded.armed = idle_deadline.map(|at| (Waiting::Idle, at));
        guarded
    }

    /// The connection's first bytes were the HTTP/2 preface: from now on
    /// the head limit no longer applies, and the idle limit counts between
    /// streams.
    pub(crate) fn speaks_h2(&mut self) {
        self.h2 = true;
        self.pending_head = false;
        self.armed = None;
    }

    pub(crate) fn get_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// The I/O back, with the keep-alive deadline of the idle connection.
    pub(crate) fn into_parked(self) -> (I, Option<Instant>) {
        let deadline = match self.armed {
            Some((Waiting::Idle, at)) => Some(at),
            _ => None,
        };
        (self.io, deadline)
    }

    fn waiting(&mut self) -> Waiting {
        let started = self.state.started.load(Ordering::Acquire);
        if started != self.seen_started {
            self.seen_started = started;
            self.pending_head = false;
        }
        if self.state.is_busy() {
            Waiting::Busy
        } else if self.pending_head {
            Waiting::Head
        } else {
            Waiting::Idle
        }
    }

    fn arm(&mut self, waiting: Waiting) {
        if self.armed.is_some_and(|(w, _)| w == waiting) {
            return;
        }
        let limit = match waiting {
            Waiting::Head => self.timeouts.head,
            Waiting::Idle => self.timeouts.idle,
            Waiting::Busy => None,
        };
        self.armed = limit.map(|d| (waiting, Instant::now().saturating_add(d)));
        if let Some((_, at)) = self.armed
            && self.timer_at.is_none_or(|t| t > at)
        {
            self.timer.as_mut().reset(at);
            self.timer_at = Some(at);
        }
    }

    /// Whether the armed deadline has passed; registers for a wake-up
    /// otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        match self.armed {
            Some((_, at)) => self.passed(cx, at),
            None => false,
        }
    }

    /// Whether `at` has passed; otherwise makes sure the timer wakes the
    /// task by then.
    fn passed(&mut self, cx: &mut Context<'_>, at: Instant) -> bool {
        loop {
            if self.timer_at.is_none_or(|t| t > at) {
                self.timer.as_mut().reset(at);
                self.timer_at = Some(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.timer_at = None;
            if Instant::now() >= at {
                return true;
            }
            // Fired for an earlier deadline: re-arm for this one.
        }
    }

    /// On an idle connection with nothing to read: asks for it to be
    /// parked once it has been idle for the park delay.
    fn maybe_park(&mut self, cx: &mut Context<'_>) {
        let Some(after) = self.timeouts.park else {
            return;
        };
        if self.parking {
            return;
        }
        let at = *self
            .park_at
            .get_or_insert_with(|| Instant::now().saturating_add(after));
        if self.passed(cx, at) {
            self.parking = true;
            self.state.park.store(true, Ordering::Release);
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.state.is_upgraded() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.h2 {
            return this.poll_read_h2(cx, buf);
        }
        let before = buf.filled().len();
        let waiting = this.waiting();
        if waiting != Waiting::Idle {
            this.park_at = None;
        }
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        match result {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                // The first bytes of the next request start its head clock.
                if !got.is_empty() && waiting == Waiting::Idle {
                    this.pending_head = true;
                    this.park_at = None;
                    this.arm(Waiting::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if waiting == Waiting::Busy {
                    // Only an idle clock (or the park delay) needs to start the
                    // moment the last response ends (a head clock starts with
                    // the next byte).
                    if this.timeouts.idle.is_some() || this.timeouts.park.is_some() {
                        this.wait_for_idle(cx);
                    }
                    return Poll::Pending;
                }
                this.arm(waiting);
                if !this.expired(cx) {
                    if waiting == Waiting::Idle {
                        this.maybe_park(cx);
                    }
                    return Poll::Pending;
                }
                this.armed = None;
                match waiting {
                    Waiting::Head => {
                        // Nothing of a response exists yet, so the socket is ours
                        // to answer on; best effort, then end the connection.
                        let _ = Pin::new(&mut this.io).poll_write(cx, TIMEOUT_RESPONSE);
                        tracing::debug!("request head not received in time: 408");
                        if let Some(counts) = &this.state.counts {
                            counts.count_head_timeout();
                        }
                    }
                    Waiting::Idle => tracing::debug!("keep-alive connection idle: closing"),
                    Waiting::Busy => unreachable!("no timer while busy"),
                }
                // End of stream: hyper closes the connection cleanly.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Guarded<I> {
    /// While a request is in flight: no deadline, and a wake-up when the
    /// last response ends, so that the idle clock starts then even though no
    /// byte arrives.
    fn wait_for_idle(&mut self, cx: &mut Context<'_>) {
        self.armed = None;
        *self.state.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        self.state.parked.store(true, Ordering::Release);
        // The response may have finished since the state was read.
        if !self.state.is_busy() {
            cx.waker().wake_by_ref();
        }
    }

    /// Reads of an HTTP/2 connection: hyper always has one pending, so the
    /// idle clock is checked here whenever nothing is to be read.
    fn poll_read_h2(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(idle) = self.timeouts.idle else {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        };
        if let Some(by) = self.h2_close_by {
            if self.passed(cx, by) {
                tracing::debug!("idle HTTP/2 connection did not close in time: closing");
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if result.is_ready() {
            return result;
        }
        let started = self.state.started.load(Ordering::Acquire) != self.seen_started;
        if self.waiting() == Waiting::Busy {
            self.wait_for_idle(cx);
            return Poll::Pending;
        }
        // Idle since the last stream ended (or since the preface): frames
        // that open no stream do not move the deadline.
        let at = match self.armed {
            Some((Waiting::Idle, at)) if !started => at,
            _ => {
                let at = Instant::now().saturating_add(idle);
                self.armed = Some((Waiting::Idle, at));
                at
            }
        };
        if self.passed(cx, at) {
            tracing::debug!("HTTP/2 connection idle: closing");
            self.armed = None;
            self.h2_close_by = Some(Instant::now().saturating_add(LINGER));
            self.state.close_idle.store(true, Ordering::Release);
            // The connection loop sees the request when hyper returns.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl<I> Guarded<I> {
    /// A write's outcome with the write limit applied: a write that has
    /// waited `Timeouts::write` for the client to take bytes fails, so the
    /// connection ends (and whatever fed it, a member's response, with it).
    fn write_limited<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_by = None;
            return polled;
        }
        let Some(limit) = self.timeouts.write else {
            return Poll::Pending;
        };
        let at = *self
            .write_by
            .get_or_insert_with(|| Instant::now().saturating_add(limit));
        if self.passed(cx, at) {
            self.write_by = None;
            tracing::debug!(
                "the client took nothing of what was written for the write timeout: closing"
            );
            if let Some(counts) = &self.state.counts {
                counts.count_write_timeout();
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing within the write timeout",
            )));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.write_limited(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.write_limited(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.write_limited(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.parking {
            // hyper is closing its side of a connection being parked: the
            // socket stays open for the next request.
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        let until = match this.linger_until {
            Some(until) => until,
            None => {
                std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                *this
                    .linger_until
                    .insert(Instant::now().saturating_add(LINGER))
            }
        };
        // A lingering close: what the peer sent before it saw our end (an
        // HTTP/2 request crossing our GOAWAY, the rest of an upload) must
        // not be left unread when the socket closes, or the kernel answers
        // it with a reset — which can reach the peer before it has read our
        // last bytes, and fails its next write. So the shutdown completes
        // when the peer has closed its side too, or after `LINGER`.
        let mut scratch = [0u8; 2048];
        for read in 0.. {
            if read == 16 {
                // A peer that keeps sending: let other tasks run, and the
                // deadline be checked.
                cx.waker().wake_by_ref();
                break;
            }
            let mut discard = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut discard) {
                Poll::Ready(Ok(())) if discard.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        if this.passed(cx, until) {
            tracing::debug!("the peer did not close its side in time: closing");
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}
