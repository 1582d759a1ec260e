//! Response bodies the proxy sends: the upstream's body streamed through
//! frame by frame (SSE stays live, nothing is buffered), or a small body of
//! our own (errors). When an upstream body ends cleanly its connection goes
//! back to the member's pool and the member's outcome is reported; until
//! then the request counts as in flight for the balancer. The end of the
//! body is also where the request is counted in its pool's stats. A body
//! broken off because the client's own request body failed (the member may
//! answer before it has read the whole upload) is the client's doing: the
//! member is not blamed and the pool does not count it. An event stream
//! ends early, between two events, when the proxy drains or its member
//! leaves the config (`sse`): a clean
//! end for the client and a success for the member, whose connection, cut
//! mid-body, is not reused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use balance::{Outcome, Picked};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::client_body::FaultRecord;
use crate::sse::EventEnd;
use crate::stats::PoolRecord;
use crate::tunnel::GoAway;
use crate::upstream::{BoxError, MemberConns, Sender};

/// The body of every response the proxy sends.
pub enum ProxyBody {
    /// Streamed from an upstream.
    Upstream(UpstreamBody),
    /// Made here.
    Local(Full<Bytes>),
}

impl ProxyBody {
    pub(crate) fn text(s: &'static str) -> ProxyBody {
        ProxyBody::Local(Full::new(Bytes::from_static(s.as_bytes())))
    }

    pub(crate) fn owned(bytes: Vec<u8>) -> ProxyBody {
        ProxyBody::Local(Full::new(Bytes::from(bytes)))
    }

    pub(crate) fn empty() -> ProxyBody {
        ProxyBody::Local(Full::new(Bytes::new()))
    }
}

/// What to do with the connection and the balancer's pick once the
/// upstream body has been read to its end.
pub(crate) struct Lease {
    pub sender: Sender,
    pub conns: Arc<MemberConns>,
    pub picked: Picked,
    pub outcome: Outcome,
    /// Whether the client's request body failed.
    pub client: FaultRecord,
}

/// An upstream response body on its way to the client.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    /// Counted in the pool's stats when the body ends (set by the service).
    pool: Option<PoolRecord>,
    /// The pool's `total_timeout`, counted from when the request was sent.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// For an event stream: where it may end when the proxy drains.
    events: Option<Box<EventEnd>>,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: Incoming,
        lease: Lease,
        deadline: Option<tokio::time::Instant>,
    ) -> UpstreamBody {
        UpstreamBody {
            inner,
            lease: Some(lease),
            pool: None,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            events: None,
        }
    }

    /// The body is an event stream: on `go_away` it ends at the end of the
    /// last complete event received.
    pub(crate) fn end_events_on(&mut self, go_away: GoAway) {
        self.events = Some(Box::new(EventEnd::new(go_away)));
    }

    /// Turns true when the member that answered leaves the config.
    pub(crate) fn member_leaving(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.lease.as_ref().map(|l| l.conns.leaving())
    }

    /// Ends an event stream between two events, its upstream still
    /// sending: the member answered well, but its connection is left
    /// mid-body and is not reused.
    fn end_between_events(&mut self) {
        if let Some(lease) = self.lease.take() {
            let now = tokio::time::Instant::now();
            lease.picked.report_at(lease.outcome, now);
            if let Some(record) = self.pool.take() {
                record.end(now, false);
            }
        }
    }

    /// Counts the response in its pool's stats when the body ends (cleanly
    /// or broken off); not at all if the client goes away first.
    pub(crate) fn count_in(&mut self, record: PoolRecord) {
        self.pool = Some(record);
    }

    /// The response switched protocols: the connection now belongs to the
    /// tunnel and never returns to the pool.
    pub(crate) fn detach(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.picked.report(lease.outcome);
        }
    }

    fn finish(&mut self, clean: bool) {
        if let Some(lease) = self.lease.take() {
            let now = tokio::time::Instant::now();
            if clean {
                lease.conns.checkin(lease.sender);
                lease.picked.report_at(lease.outcome, now);
            } else if lease.client.get().is_some() {
                // The client's request body failed, which broke the
                // connection: neither the member's failure nor a request
                // the pool saw end.
                lease.picked.report_at(Outcome::Cancelled, now);
                self.pool = None;
            } else {
                // The member broke off mid-body: the connection is not reused.
                lease.picked.report_at(Outcome::ServerError, now);
            }
            if let Some(record) = self.pool.take() {
                record.end(now, !clean);
            }
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body may never be polled at all: it still ended cleanly.
        if self.inner.is_end_stream() {
            self.finish(true);
        }
        if let Some(lease) = self.lease.take() {
            // The client went away before the end: neither the member's
            // fault nor a success; the connection is not reused. Not
            // counted in the pool's stats either.
            lease.picked.report(Outcome::Cancelled);
            self.pool = None;
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(events) = &mut this.events
            && events.poll_away(cx)
            && events.events.between()
        {
            this.end_between_events();
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if let Some(deadline) = &mut this.deadline
                && deadline.as_mut().poll(cx).is_ready()
            {
                this.deadline = None;
                this.finish(false);
                return Poll::Ready(Some(Err("the pool's total_timeout passed".into())));
            }
            return Poll::Pending;
        }
        match ready!(polled) {
            Some(Ok(mut frame)) => {
                if let Some(events) = &mut this.events
                    && let Some(data) = frame.data_mut()
                    && let Some(end) = events.events.feed(data)
                    && events.away()
                    && end < data.len()
                {
                    // Draining: the complete events go, the rest never
                    // will; the next poll ends the body.
                    data.truncate(end);
                    events.events = Default::default();
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.finish(false);
                Poll::Ready(Some(Err(e.into())))
            }
            None => {
                this.finish(true);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Local(b) => b.size_hint(),
        }
    }
}
