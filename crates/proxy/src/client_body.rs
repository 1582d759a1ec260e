//! The request body as the proxy reads it from the client, on its way to a
//! member, and the client faults it can reveal: a body over the limit, a
//! malformed one (an invalid chunk size, say), or one the client abandoned
//! (it hung up or reset the connection mid-upload).
//!
//! A failed exchange is judged here, where the error arises, not from what
//! the upstream connection reports afterwards: when the client's body fails,
//! the exchange with the member breaks off exactly as it would if the member
//! had hung up, and only this record tells the two apart. `forward` and the
//! response body read it, so that a client fault is never reported as the
//! //! member's failure (passive ejection, member and pool stats). Owns the
//! classification only; never decides statuses for upstream faults.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};

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
}

impl ClientFault {
    /// The status the client is answered with (if it still listens).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ClientFault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientFault::Malformed | ClientFault::Abandoned => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            ClientFault::TooLarge => "request body too large\n",
            ClientFault::Malformed => "malformed request body\n",
            ClientFault::Abandoned => "request body incomplete\n",
        }
    }

    fn code(self) -> u8 {
        match self {
            ClientFault::TooLarge => 1,
            ClientFault::Malformed => 2,
            ClientFault::Abandoned => 3,
        }
    }

    fn from_code(code: u8) -> Option<ClientFault> {
        match code {
            1 => Some(ClientFault::TooLarge),
            2 => Some(ClientFault::Malformed),
            3 => Some(ClientFault::Abandoned),
            _ => None,
        }
    }

    /// The fault a body error reveals. Only the chunked decoder reports
    /// `InvalidInput`/`InvalidData`; anything else that stops a client's body
    /// (an early end, a reset, an HTTP/2 stream reset) is the client leaving.
    fn of(error: &(dyn std::error::Error + 'static)) -> ClientFault {
        let mut source = Some(error);
        while let Some(e) = source {
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

/// The client's body, recording in a [`FaultRecord`] why it failed.
pub(crate) struct ClientBody<B> {
    inner: B,
    record: FaultRecord,
}

impl<B> ClientBody<B> {
    pub(crate) fn new(inner: B, record: FaultRecord) -> ClientBody<B> {
        ClientBody { inner, record }
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
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
        if let Poll::Ready(Some(Err(e))) = &polled {
            this.record.set(ClientFault::of(e.as_ref()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
        let body = ClientBody::new(limited, record.clone());
        assert!(body.collect().await.is_err());
        assert_eq!(record.get(), Some(ClientFault::TooLarge));
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
