//! The request body as the proxy reads it from the client, on its way to a
//! member, and the client faults it can reveal: a body over the limit, a
//! malformed one (an invalid chunk size, say), one the client abandoned
//! (it hung up or reset the connection mid-upload), or one too slow (no
//! byte for the listener's `body_read_timeout`).
//!
//! The body's first bytes are read before a member is picked
//! ([`ClientBody::fill`]): a slow client holds no member's connection
//! while it sends them, and its faults there are answered without one.
//!
//! A failed exchange is judged here, where the error arises, not from what
//! the upstream connection reports afterwards: when the client's body fails,
//! the exchange with the member breaks off exactly as it would if the member
//! had hung up, and only this record tells the two apart. `forward` and the
//! response body read it, so that a client fault is never reported as the
//! member's failure (passive ejection, member and pool stats). Owns the
//! classification only; never decides statuses for upstream faults.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use handoff::time::SaturatingAdd;
use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::upstream::BoxError;

/// How the client broke its own request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFault {
    /// The body went over the listener's `max_body` while being sent.
    TooLarge,
    /// The body's framing was invalid (a bad chunk size or chunk end).
    Malformed,
    /// The client hung up, or reset the connection, before its body ended.
    Abandoned,
    /// The client sent nothing for the listener's `body_read_timeout`.
    TimedOut,
}

impl ClientFault {
    /// The status the client is answered with (if it still listens).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ClientFault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientFault::Malformed | ClientFault::Abandoned => StatusCode::BAD_REQUEST,
            ClientFault::TimedOut => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            ClientFault::TooLarge => "request body too large\n",
            ClientFault::Malformed => "malformed request body\n",
            ClientFault::Abandoned => "request body incomplete\n",
            ClientFault::TimedOut => "request body timed out\n",
        }
    }

    fn code(self) -> u8 {
        match self {
            ClientFault::TooLarge => 1,
            ClientFault::Malformed => 2,
            ClientFault::Abandoned => 3,
            ClientFault::TimedOut => 4,
        }
    }

    fn from_code(code: u8) -> Option<ClientFault> {
        match code {
            1 => Some(ClientFault::TooLarge),
            2 => Some(ClientFault::Malformed),
            3 => Some(ClientFault::Abandoned),
            4 => Some(ClientFault::TimedOut),
            _ => None,
        }
    }

    /// The fault a body error reveals. Only the chunked decoder reports
    /// `InvalidInput`/`InvalidData`; anything else that stops a client's body
    /// (an early end, a reset, an HTTP/2 stream reset) is the client leaving.
    fn of(error: &(dyn std::error::Error + 'static)) -> ClientFault {
        let mut source = Some(error);
        while let Some(e) = source {
            if e.is::<BodyTimedOut>() {
                return ClientFault::TimedOut;
            }
            if e.is::<http_body_util::LengthLimitError>() {
                return ClientFault::TooLarge;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                )
            {
                return ClientFault::Malformed;
            }
            source = e.source();
        }
        ClientFault::Abandoned
    }
}

/// The first client fault of one request, once its body failed; shared by
/// the body that records it and whoever judges the exchange. A request
/// without a body has nothing to record ([`FaultRecord::none`], which
/// allocates nothing).
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultRecord(Option<Arc<AtomicU8>>);

impl FaultRecord {
    /// A record for a request with a body.
    pub(crate) fn new() -> FaultRecord {
        FaultRecord(Some(Arc::default()))
    }

    /// The record of a request without a body: never a fault.
    pub(crate) fn none() -> FaultRecord {
        FaultRecord(None)
    }

    /// The client's fault, if its body failed.
    pub(crate) fn get(&self) -> Option<ClientFault> {
        ClientFault::from_code(self.0.as_ref()?.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, fault: ClientFault) {
        // The first fault stands; the body fails only once anyway.
        if let Some(code) = &self.0 {
            let _ = code.compare_exchange(0, fault.code(), Ordering::Release, Ordering::Relaxed);
        }
    }
}

/// The error of a body whose client sent nothing for `body_read_timeout`.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no byte of the request body within body_read_timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

/// The client's body: recording in a [`FaultRecord`] why it failed,
/// failing when the client sends nothing for `timeout`, and giving first
/// the frames [`fill`](Self::fill) read ahead.
pub(crate) struct ClientBody<B> {
    inner: B,
    record: FaultRecord,
    /// Frames read ahead, given before any more is read: the first (when it
    /// is data) apart, so that a body read ahead in one frame allocates
    /// nothing for it, and a frame's worth of room in every request's future
    /// is a `Bytes`, not a `Frame` (which can hold trailers).
    first: Option<Bytes>,
    read_ahead: VecDeque<Frame<Bytes>>,
    /// The longest wait for the next frame.
    timeout: Duration,
    /// Made at the first wait: a body that never waits has no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait (reset when a frame arrives).
    waiting: bool,
}

impl<B> ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(inner: B, record: FaultRecord, timeout: Duration) -> ClientBody<B> {
        ClientBody {
            inner,
            record,
            first: None,
            read_ahead: VecDeque::new(),
            timeout,
            timer: None,
            waiting: false,
        }
    }

    /// The record of the client's fault, shared.
    pub(crate) fn record(&self) -> FaultRecord {
        self.record.clone()
    }

    /// Reads the body ahead until `limit` bytes of it are held or it ends;
    /// `Err`: the client's fault that stopped it (recorded too).
    pub(crate) async fn fill(&mut self, limit: usize) -> Result<(), ClientFault> {
        let mut held = 0;
        while held < limit && !self.inner.is_end_stream() {
            match std::future::poll_fn(|cx| self.poll_inner(cx)).await {
                None => break,
                Some(Ok(frame)) => {
                    held += frame.data_ref().map_or(0, Bytes::len);
                    if self.first.is_none() && self.read_ahead.is_empty() {
                        match frame.into_data() {
                            Ok(data) => self.first = Some(data),
                            Err(frame) => self.read_ahead.push_back(frame),
                        }
                    } else {
                        self.read_ahead.push_back(frame);
                    }
                }
                Some(Err(_)) => return Err(self.record.get().unwrap_or(ClientFault::Abandoned)),
            }
        }
        Ok(())
    }

    /// The next frame from the client, its fault recorded, or the timeout's.
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into);
        match &polled {
            Poll::Ready(Some(Err(e))) => self.record.set(ClientFault::of(e.as_ref())),
            Poll::Ready(_) => self.waiting = false,
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let deadline = Instant::now().saturating_add(self.timeout);
                    match &mut self.timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                if let Some(timer) = &mut self.timer
                    && timer.as_mut().poll(cx).is_ready()
                {
                    self.record.set(ClientFault::TimedOut);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
            }
        }
        polled
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(frame) = self.read_ahead.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        self.poll_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.read_ahead.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, Bytes::len) as u64;
        let held: u64 = first
            + self
                .read_ahead
                .iter()
                .filter_map(|f| f.data_ref())
                .map(|d| d.len() as u64)
                .sum::<u64>();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_over_its_limit_is_recorded_as_too_large() {
        use http_body_util::{BodyExt, Full, Limited};
        let record = FaultRecord::new();
        let limited = Limited::new(Full::new(Bytes::from_static(b"hello")), 2);
        let body = ClientBody::new(limited, record.clone(), Duration::from_secs(5));
        assert!(body.collect().await.is_err());
        assert_eq!(record.get(), Some(ClientFault::TooLarge));
    }

    type Sender = http_body_util::channel::Sender<Bytes, BoxError>;

    fn channel_body() -> (
        Sender,
        ClientBody<http_body_util::channel::Channel<Bytes, BoxError>>,
    ) {
        let (tx, rx) = http_body_util::channel::Channel::new(8);
        (
            tx,
            ClientBody::new(rx, FaultRecord::new(), Duration::from_secs(5)),
        )
    }

    #[tokio::test]
    async fn read_ahead_stops_at_the_limit_and_every_frame_follows_in_order() {
        use http_body_util::BodyExt;
        let (mut tx, mut body) = channel_body();
        for chunk in ["0123456789", "abcdefghij", "ABCDEFGHIJ"] {
            tx.send_data(Bytes::from_static(chunk.as_bytes()))
                .await
                .unwrap();
        }
        body.fill(15).await.unwrap();
        // Two frames read ahead (20 bytes held), the third still queued.
        assert!(body.first.is_some());
        assert_eq!(body.read_ahead.len(), 1);
        assert_eq!(body.size_hint().lower(), 20);
        tx.send_data(Bytes::from_static(b"!")).await.unwrap();
        drop(tx);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"0123456789abcdefghijABCDEFGHIJ!");
    }

    #[tokio::test]
    async fn a_body_that_ends_within_the_limit_is_read_whole() {
        let (mut tx, mut body) = channel_body();
        tx.send_data(Bytes::from_static(b"small")).await.unwrap();
        drop(tx);
        body.fill(1024).await.unwrap();
        assert!(body.first.is_some() && body.read_ahead.is_empty());
        assert_eq!(body.record.get(), None);
    }

    /// The timeout is the longest wait for the next frame, not for the
    /// whole body: each frame restarts it.
    #[tokio::test(start_paused = true)]
    async fn a_client_silent_for_the_timeout_is_timed_out_and_each_frame_restarts_it() {
        use http_body_util::BodyExt;
        let (mut tx, mut body) = channel_body();
        let sending = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send_data(Bytes::from_static(b"x")).await.unwrap();
            }
            // Then silence, the sender kept open.
            std::future::pending::<()>().await;
        });
        let started = tokio::time::Instant::now();
        body.fill(3).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(12));
        for _ in 0..3 {
            assert!(body.frame().await.unwrap().unwrap().is_data());
        }
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(17));
        assert_eq!(body.record.get(), Some(ClientFault::TimedOut));
        assert_eq!(ClientFault::TimedOut.status(), StatusCode::REQUEST_TIMEOUT);
        sending.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_fault_while_reading_ahead_is_the_clients() {
        let (tx, mut body) = channel_body();
        drop(tx);
        // A channel closed without end: the client went away.
        let (tx2, rx2) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
        tx2.abort("connection reset".into());
        let mut broken = ClientBody::new(rx2, FaultRecord::new(), Duration::from_secs(5));
        assert_eq!(broken.fill(10).await, Err(ClientFault::Abandoned));
        body.fill(10).await.unwrap();
        let (_tx3, rx3) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
        let mut silent = ClientBody::new(rx3, FaultRecord::new(), Duration::from_secs(5));
        assert_eq!(silent.fill(10).await, Err(ClientFault::TimedOut));
    }

    #[test]
    fn body_errors_are_classified_through_their_sources() {
        let chunk = std::io::Error::new(std::io::ErrorKind::InvalidInput, "Invalid chunk size");
        let wrapped: BoxError = Box::new(Wrapped(chunk));
        assert_eq!(ClientFault::of(wrapped.as_ref()), ClientFault::Malformed);
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "early eof");
        let wrapped: BoxError = Box::new(Wrapped(eof));
        assert_eq!(ClientFault::of(wrapped.as_ref()), ClientFault::Abandoned);
        let other: BoxError = "connection error".into();
        assert_eq!(ClientFault::of(other.as_ref()), ClientFault::Abandoned);
    }

    #[test]
    fn the_first_fault_stands() {
        let record = FaultRecord::new();
        assert_eq!(record.get(), None);
        record.set(ClientFault::Malformed);
        record.set(ClientFault::Abandoned);
        assert_eq!(record.get(), Some(ClientFault::Malformed));
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error reading a body from connection")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
