//! Sending one request to a pool, with retries that never hurt:
//!
//! - a request that was never sent — the connect failed, or a pooled
//!   connection turned out dead before the request was written — is tried
//!   on another member, whatever its method;
//! - an idempotent request without a body is sent again if the connection
//!   broke before any response began, each time to a member not tried yet
//!   (within the attempt bound): a host that dies takes all its members at
//!   once, and the second may be the one picked next;
//! - a request whose body was sent is never replayed (unless the pool says
//!   `retry_non_idempotent`, and then only without a body);
//! - with `retry_server_errors`, an idempotent request without a body that
//!   got a 5xx is sent to a member not tried yet, while one is available
//!   (within the attempt bound); each 5xx still counts as its member's
//!   failure.
//!
//! An exchange broken by the client (its body malformed, over the limit or
//! abandoned, as [`FaultRecord`] tells) is the client's fault: reported to
//! the member as neutral, never as its failure, and never retried.
//!
//! Owns the attempt loop and the mapping of failures to 502/503/504; never
//! chooses members itself (`balance` does).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use balance::{MemberHealth, Outcome, Picked, Pool, Stats};
use handoff::time::SaturatingAdd;
use http::{Method, Request, Response, StatusCode};

use crate::body::{Lease, UpstreamBody};
use crate::client_body::{ClientFault, FaultRecord};
use crate::h1::{self, Conn, ExchangeError, Head, Outgoing, SendError};
use crate::pause::Gate;
use crate::upstream::{MemberConns, ReqBody};

/// A pool as the data plane uses it: the balancer, each member's
/// connections (same order as `Pool::members`), the pool's settings, and its
/// stats and pause gate (both shared across snapshots).
pub(crate) struct Upstreams {
    pub name: String,
    pub balance: Pool,
    pub conns: Vec<Arc<MemberConns>>,
    /// The pool's stats as clients see them (kept by the registry).
    pub stats: Arc<Stats>,
    /// Where requests wait while the pool is paused (kept by the registry).
    pub gate: Arc<Gate>,
    pub header_timeout: Duration,
    /// The longest wait for the next bytes of a response body.
    pub body_timeout: Duration,
    /// The whole exchange, headers and body; `None`: unbounded (streams).
    pub total_timeout: Option<Duration>,
    pub retry_non_idempotent: bool,
    /// Resend a replayable idempotent request that got a 5xx to another
    /// member, instead of returning the 5xx.
    pub retry_server_errors: bool,
    /// `upstream_host = "member"`: each attempt's `Host` is the authority
    /// of the member it goes to.
    pub host_from_member: bool,
}

/// Why no response came from the pool.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No member is available.
    NoMember,
    /// Members could not be reached.
    Unreachable(String),
    /// The member took longer than the header timeout.
    Timeout,
    /// The exchange broke and could not be retried safely.
    Broken(String),
    /// The client broke the exchange: its body was malformed, over the
    /// limit, or abandoned.
    Client(ClientFault),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoMember => f.write_str("no member available"),
            Failure::Unreachable(e) => write!(f, "no member reachable: {e}"),
            Failure::Timeout => f.write_str("no response headers within the header timeout"),
            Failure::Broken(e) => write!(f, "exchange broke and could not be retried: {e}"),
            Failure::Client(ClientFault::TooLarge) => f.write_str("request body over the limit"),
            Failure::Client(ClientFault::Malformed) => f.write_str("malformed request body"),
            Failure::Client(ClientFault::Abandoned) => {
                f.write_str("the client went away during its request body")
            }
            Failure::Client(ClientFault::TimedOut) => {
                f.write_str("the client sent nothing of its request body in time")
            }
        }
    }
}

impl Failure {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::NoMember => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Unreachable(_) | Failure::Broken(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::Client(fault) => fault.status(),
        }
    }
}

/// That a request may be sent again: it has no body, and its method is
/// idempotent or the pool allows replaying anything. What is sent again is
/// the request's own head, which [`forward`] keeps until an answer's head
/// comes (its connection only encodes it): a replay copies nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replay {
    /// The method is idempotent (not merely allowed by
    /// `retry_non_idempotent`): only then is a 5xx retried.
    idempotent: bool,
}

impl Replay {
    /// `Some` when the request may be sent twice: no body, and an
    /// idempotent method (or the pool allows replaying anything).
    pub(crate) fn of(method: &Method, body_empty: bool, any_method: bool) -> Option<Replay> {
        let idempotent = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        (body_empty && (idempotent || any_method)).then_some(Replay { idempotent })
    }
}

/// Sends `req` to `first`, a member of `pool` the caller picked (waiting in
/// the pool's queue if need be), and to others if it must be retried; the
/// response body streams back and returns the connection to the pool when
/// done. `client` records whether `req`'s body failed on the client's side.
// Not an `async fn`: its arguments would be stored twice in the
// future (once as arguments, once as the body's bindings), and every
// request allocates this future.
#[allow(clippy::manual_async_fn)]
pub(crate) fn forward(
    pool: &Upstreams,
    mut req: Request<ReqBody>,
    replay: Option<Replay>,
    first: Picked,
    client: &FaultRecord,
) -> impl Future<Output = Result<(Response<UpstreamBody>, Arc<str>), Failure>> {
    async move {
        let members = pool.conns.len();
        // Every member once for never-sent failures, plus a fresh connection.
        let max_attempts = members.min(4) + 1;
        // Allocates only on a retry.
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<Failure> = None;
        // The member of the next attempt when already chosen: the caller's
        // pick; the member a 5xx is resent to, picked before the 5xx was
        // dropped, so that a 5xx is only ever replaced by another member's
        // answer; the same member when a request was not sent, so that its
        // slot is not given up to a queued request.
        let mut next: Option<Picked> = Some(first);
        // The member whose failed attempt the next one sends again, counted in
        // its retries once that attempt is made (the failure path only).
        let mut retried: Option<Arc<MemberHealth>> = None;
        let mut attempts = 0;
        while attempts < max_attempts {
            attempts += 1;
            let Some(picked) = next.take().or_else(|| pool.balance.pick(&tried)) else {
                break;
            };
            if let Some(member) = retried.take() {
                member.count_retry();
            }
            let index = picked.index();
            let conns = pool.conns[index].clone();
            // When the request goes out, from which its deadlines count: one
            // reading of the clock for a pooled connection, another after a
            // new one is connected.
            let now = tokio::time::Instant::now();
            let (mut conn, pooled, started) = match conns.checkout(now) {
                Some(c) => (c, true, now),
                // Boxed: the connect future (a TLS handshake included) is large,
                // and most requests find a pooled connection instead.
                None => match Box::pin(conns.connect()).await {
                    Ok(c) => (c, false, tokio::time::Instant::now()),
                    Err(e) => {
                        tracing::debug!(pool = %pool.name, error = %e, "connect failed, trying another member");
                        let member = picked.member().health();
                        member.count_connect_failure();
                        retried = Some(member.clone());
                        picked.report(Outcome::ConnectFailure);
                        tried.push(index);
                        last = Some(Failure::Unreachable(e.to_string()));
                        continue;
                    }
                },
            };
            if pool.host_from_member
                && let Ok(host) = http::HeaderValue::from_str(conns.key())
            {
                req.headers_mut().insert(http::header::HOST, host);
            }
            let (mut parts, body) = req.into_parts();
            let mut outgoing = Outgoing::start(&mut conn, &parts, body);
            // The response's header map: the request's own, its entries'
            // room used again, when the request will not be sent again (it
            // is taken only with a whole response head, so a request not
            // sent keeps it); a new one otherwise.
            let mut spare = replay.is_none().then_some(&mut parts.headers);
            let deadline = pool.total_timeout.map(|t| started.saturating_add(t));
            let header_deadline = started.saturating_add(pool.header_timeout);
            let header_deadline = deadline.map_or(header_deadline, |d| d.min(header_deadline));
            // `Err`: no response head before the deadline.
            let exchanged = std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = exchange(
                    &mut conn,
                    &mut outgoing,
                    &parts.method,
                    spare.as_deref_mut(),
                    cx,
                ) {
                    return Poll::Ready(Ok(done));
                }
                conn.poll_deadline(header_deadline, cx).map(Err)
            });
            match exchanged.await {
                Ok(Ok(head)) => {
                    let status = head.response.status;
                    if status.is_server_error()
                        && pool.retry_server_errors
                        && attempts < max_attempts
                        && replay.is_some_and(|r| r.idempotent)
                    {
                        tried.push(index);
                        if let Some(other) = pool.balance.pick(&tried) {
                            tracing::debug!(
                                pool = %pool.name,
                                member = %conns.key(),
                                status = status.as_u16(),
                                "server error, sending the request to another member"
                            );
                            // Still the member's failure (passive ejection, its
                            // stats). Its body is not read, so its connection is
                            // not reused: dropping it closes it.
                            retried = Some(picked.member().health().clone());
                            picked.report(Outcome::ServerError);
                            drop(conn);
                            req = Request::from_parts(parts, crate::empty_body());
                            next = Some(other);
                            continue;
                        }
                    }
                    let outcome = if status.is_server_error() {
                        Outcome::ServerError
                    } else {
                        Outcome::Success
                    };
                    let key = conns.shared_key();
                    let lease = Lease {
                        conns,
                        picked,
                        outcome,
                        client: client.clone(),
                    };
                    let body = UpstreamBody::new(
                        conn,
                        head.decoder,
                        head.keep_alive,
                        Some(outgoing),
                        lease,
                        deadline,
                        pool.body_timeout,
                    );
                    return Ok((Response::from_parts(head.response, body), key));
                }
                Ok(Err(ExchangeError::NotSent(e))) => {
                    // The connection died before any of our request was
                    // written: nothing reached the member; try again
                    // elsewhere.
                    tracing::debug!(pool = %pool.name, error = %e, "request not sent, retrying");
                    retried = Some(picked.member().health().clone());
                    next = Some(picked);
                    req = Request::from_parts(parts, outgoing.into_body());
                    last = Some(Failure::Unreachable(e.to_string()));
                    if pooled {
                        // A pooled connection the member had closed: it
                        // costs no attempt. It is dropped, so this happens
                        // at most once per pooled connection.
                        attempts -= 1;
                    }
                    continue;
                }
                Ok(Err(error)) => {
                    if let ExchangeError::Client(_) = error {
                        // The body is the client's: its own error says why
                        // (recorded by it), or it did not match its length.
                        client.set(ClientFault::Malformed);
                    }
                    if let Some(fault) = client.get() {
                        // The client's body failed, which broke the
                        // exchange: says nothing about the member.
                        tracing::debug!(pool = %pool.name, ?fault, %error, "the client broke its request");
                        picked.report(Outcome::Cancelled);
                        return Err(Failure::Client(fault));
                    }
                    if replay.is_some() {
                        retried = Some(picked.member().health().clone());
                    }
                    picked.report(Outcome::ConnectFailure);
                    tried.push(index);
                    match replay {
                        Some(_) if attempts < max_attempts => {
                            tracing::debug!(pool = %pool.name, %error, "exchange broke, sending the request to another member");
                            req = Request::from_parts(parts, crate::empty_body());
                            last = Some(Failure::Broken(error.to_string()));
                        }
                        _ => return Err(Failure::Broken(error.to_string())),
                    }
                }
                Err(()) => {
                    picked.report(Outcome::Timeout);
                    return Err(Failure::Timeout);
                }
            }
        }
        Err(last.unwrap_or(Failure::NoMember))
    }
}

/// One exchange up to the response head: the request is sent while the
/// head is awaited (a member may answer before the whole body arrived).
fn exchange(
    conn: &mut Box<Conn>,
    outgoing: &mut Outgoing,
    method: &Method,
    spare: Option<&mut http::HeaderMap>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<Head, ExchangeError>> {
    let mut send_failed = None;
    match outgoing.poll_send(conn, cx) {
        Poll::Ready(Ok(())) | Poll::Pending => {}
        Poll::Ready(Err(SendError::Client(e))) => {
            return Poll::Ready(Err(ExchangeError::Client(e)));
        }
        Poll::Ready(Err(SendError::Io(e))) => {
            if outgoing.untouched() {
                return Poll::Ready(Err(ExchangeError::NotSent(e)));
            }
            // The member may have answered before it stopped reading:
            // its answer is still read.
            send_failed = Some(e);
        }
    }
    match h1::poll_head(conn, cx, method, spare) {
        Poll::Ready(Ok(head)) => Poll::Ready(Ok(head)),
        Poll::Ready(Err(e)) => Poll::Ready(Err(ExchangeError::Upstream(send_failed.unwrap_or(e)))),
        Poll::Pending => Poll::Pending,
    }
}
