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
use std::time::Duration;

use balance::{Outcome, Picked};
use bytes::Bytes;
use handoff::time::SaturatingAdd;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

use crate::client_body::{ClientFault, FaultRecord};
use crate::h1::{Conn, Decoder, Outgoing, SendError, Upgraded};
use crate::sse::EventEnd;
use crate::stats::PoolRecord;
use crate::tunnel::GoAway;
use crate::upstream::{BoxError, MemberConns};

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

/// Where the connection goes and what the balancer is told once the
/// upstream body has been read to its end.
pub(crate) struct Lease {
    pub conns: Arc<MemberConns>,
    pub picked: Picked,
    pub outcome: Outcome,
    /// Whether the client's request body failed.
    pub client: FaultRecord,
}

/// An upstream response body on its way to the client, read from the
/// member's connection as the client takes it.
pub struct UpstreamBody {
    /// `None` once the exchange is over.
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    /// The rest of the request body, while the member answers before
    /// having all of it (or echoes it as it comes).
    outgoing: Option<Box<Outgoing>>,
    /// The connection may carry another exchange after this one.
    keep_alive: bool,
    /// How the member broke off the body, told at the next poll: what
    /// arrived before the break goes out to the client first.
    broken: Option<BoxError>,
    lease: Option<Lease>,
    /// Counted in the pool's stats when the body ends (set by the service).
    pool: Option<PoolRecord>,
    /// The pool's `total_timeout`, counted from when the request was sent.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The pool's `body_timeout`: the longest wait for the member's next
    /// bytes, timed by `read_timer` (made at the first wait) while
    /// `read_waiting`.
    body_timeout: Duration,
    read_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    read_waiting: bool,
    /// For an event stream: where it may end when the proxy drains.
    events: Option<Box<EventEnd>>,
}

impl UpstreamBody {
    pub(crate) fn new(
        conn: Box<Conn>,
        decoder: Decoder,
        keep_alive: bool,
        outgoing: Option<Outgoing>,
        lease: Lease,
        deadline: Option<tokio::time::Instant>,
        body_timeout: Duration,
    ) -> UpstreamBody {
        UpstreamBody {
            conn: Some(conn),
            decoder,
            // Boxed only in the rare case it is needed.
            outgoing: outgoing.filter(|o| !o.is_done()).map(Box::new),
            keep_alive,
            broken: None,
            lease: Some(lease),
            pool: None,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            body_timeout,
            read_timer: None,
            read_waiting: false,
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
        self.conn = None;
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
    pub(crate) fn upgrade(mut self) -> Option<Upgraded> {
        if let Some(lease) = self.lease.take() {
            lease.picked.report(lease.outcome);
        }
        self.conn.take().map(|c| c.upgrade())
    }

    /// Waiting for the member's next bytes: whether it has been silent for
    /// `body_timeout`. Never for an event stream (its events may be far
    /// apart) nor while the request's body is still going to the member
    /// (which may be waiting for it).
    fn member_is_silent(&mut self, cx: &mut Context<'_>) -> bool {
        if self.events.is_some() || self.outgoing.is_some() {
            self.read_waiting = false;
            return false;
        }
        if !self.read_waiting {
            self.read_waiting = true;
            let at = tokio::time::Instant::now().saturating_add(self.body_timeout);
            match &mut self.read_timer {
                Some(timer) => timer.as_mut().reset(at),
                None => self.read_timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        self.read_timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }

    fn finish(&mut self, clean: bool) {
        let conn = self.conn.take();
        if let Some(lease) = self.lease.take() {
            let now = tokio::time::Instant::now();
            if clean {
                // Reused only when the request went whole and nothing was
                // received past the response.
                if let Some(conn) = conn
                    && self.keep_alive
                    && self.outgoing.is_none()
                    && conn.is_drained()
                {
                    lease.conns.checkin(conn, now);
                }
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
        if self.decoder.is_done() {
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
        if let Some(e) = this.broken.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        // The rest of the request first, as far as it goes now.
        if let Some(outgoing) = &mut this.outgoing {
            match outgoing.poll_send(conn, cx) {
                Poll::Ready(Ok(())) => this.outgoing = None,
                Poll::Ready(Err(SendError::Client(e))) => {
                    if let Some(lease) = &this.lease {
                        // Recorded by the body unless it did not match
                        // its length.
                        lease.client.set(ClientFault::Malformed);
                    }
                    this.finish(false);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Err(SendError::Io(e))) => {
                    // The member stopped reading: what it sent may still be
                    // read whole, but the connection is done with.
                    tracing::debug!(error = %e, "the member stopped taking the request body");
                    this.outgoing = None;
                    this.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        let polled = this.decoder.poll_frame(conn, cx);
        if polled.is_pending() {
            if let Some(deadline) = &mut this.deadline
                && deadline.as_mut().poll(cx).is_ready()
            {
                this.deadline = None;
                this.finish(false);
                return Poll::Ready(Some(Err("the pool's total_timeout passed".into())));
            }
            if this.member_is_silent(cx) {
                tracing::debug!("the member sent nothing of its response body for body_timeout");
                this.finish(false);
                return Poll::Ready(Some(Err("the pool's body_timeout passed".into())));
            }
            return Poll::Pending;
        }
        this.read_waiting = false;
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
                if this.decoder.is_done() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.finish(false);
                // The server sends what it holds (the head, the last data)
                // when the body has nothing ready; the error comes next.
                this.broken = Some(e.into());
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => {
                this.finish(true);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.broken.is_none() && (self.decoder.is_done() || self.conn.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
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
