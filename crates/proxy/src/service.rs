//! The per-request path: refuse what is ambiguous (`edge`), answer ACME
//! challenges and redirects to HTTPS (plain listeners), route, pass the
//! pool's pause gate, take a member's slot (waiting in the pool's queue
//! while every member is full), check limits, rewrite headers, forward, stream the answer back, tunnel upgrades, count
//! the request in its pool's stats, add HSTS (TLS listeners), log. Reads
//! the current [`Snapshot`] once per request (once more for a request held
//! by a pause, when released, and on each turn of a queued request) and
//! never blocks on the control plane.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use balance::{Attempt, NoPick, Picked, Refusal, Turn};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use tokio::time::Instant;

use crate::access_log::{AccessLog, CLIENT_CLOSED_REQUEST, Entry};
use crate::body::{ProxyBody, UpstreamBody};
use crate::client_body::{ClientBody, ClientFault, FaultRecord};
use crate::edge;
use crate::forward::{Failure, Replay, Upstreams, forward};
use crate::headers::{Client, is_upgrade, set_forwarded, strip_hop_by_hop};
use crate::https::{Endpoint, answer_challenge, challenge_token, redirect};
use crate::pause::Admission;
use crate::snapshot::Snapshot;
use crate::stats::PoolRecord;
use crate::tunnel::{Protocol, Tunnels};
use crate::upstream::ReqBody;

/// State shared by every connection of the proxy.
pub(crate) struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub tunnels: Tunnels,
}

/// The service for one client connection.
#[derive(Clone)]
pub(crate) struct ProxyService {
    pub shared: Arc<Shared>,
    pub endpoint: Arc<Endpoint>,
    /// The client, for TCP connections.
    pub client: Option<Client>,
}

impl tower_service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// Routes the request here, a plain function: the future allocated for
    /// it holds where it goes, not the request and its route as well.
    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let snapshot = self.shared.snapshot.load_full();
        let line = snapshot.access_log.clone().map(|log| {
            Box::new(LogLine {
                log,
                seen: Seen {
                    method: req.method().to_string(),
                    uri: req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned(),
                    version: req.version(),
                    host: host_of(&req).unwrap_or_default().to_owned(),
                    referer: header_str(&req, header::REFERER),
                    user_agent: header_str(&req, header::USER_AGENT),
                },
                peer: self.client.as_ref().map(|c| c.addr),
                started,
                written: false,
            })
        });
        let routed = self.route(&snapshot, req);
        Box::pin(self.clone().handle(started, snapshot, line, routed))
    }
}

/// What the access log needs from the request, taken before it is consumed.
struct Seen {
    method: String,
    uri: String,
    version: Version,
    host: String,
    referer: String,
    user_agent: String,
}

/// A request's access-log line, written once: with the response when there
/// is one, or — when hyper drops the request because its client hung up
/// while waiting — as [`CLIENT_CLOSED_REQUEST`] when dropped.
struct LogLine {
    log: Arc<AccessLog>,
    seen: Seen,
    peer: Option<SocketAddr>,
    started: Instant,
    written: bool,
}

impl LogLine {
    fn write(&mut self, status: u16, bytes: Option<u64>, upstream: &str, request_id: &str) {
        self.written = true;
        let seen = &self.seen;
        self.log.log(&Entry {
            peer: self.peer,
            method: &seen.method,
            uri: &seen.uri,
            version: version_str(seen.version),
            host: &seen.host,
            status,
            bytes,
            referer: &seen.referer,
            user_agent: &seen.user_agent,
            duration: self.started.elapsed(),
            upstream,
            request_id,
        });
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.written {
            self.write(CLIENT_CLOSED_REQUEST, Some(0), "", "");
        }
    }
}

impl ProxyService {
    /// The rest of a request [`route`](Self::route)d at `started`, with its
    /// access-log line when there is an access log. Only forwarding to a
    /// member awaits in the usual case: routing and rewriting are plain
    /// functions, and the rare waits (a paused pool, a full one, a new
    /// connection) are boxed, so that the future every request allocates
    /// stays small.
    // Not an `async fn`: its arguments would be stored twice in the
    // future (once as arguments, once as the body's bindings), and every
    // request allocates this future.
    #[allow(clippy::manual_async_fn)]
    fn handle(
        self,
        started: Instant,
        snapshot: Arc<Snapshot>,
        mut line: Option<Box<LogLine>>,
        routed: Routed,
    ) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> {
        async move {
            let (mut response, upstream, request_id) = match routed {
                Routed::Answer(response) => (response, None, None),
                Routed::Pool {
                    route,
                    method,
                    pool,
                    req,
                } => {
                    let routed = self.enter_pool(&snapshot, pool, req, started).await;
                    // Counted at the response's head; a client that went away
                    // is not.
                    if routed.0.extensions().get::<ClientFault>() != Some(&ClientFault::Abandoned) {
                        let latency = Instant::now().saturating_duration_since(started);
                        snapshot.routes[route].record(method, routed.0.status(), latency);
                    }
                    routed
                }
            };
            if self.endpoint.https
                && let Some(hsts) = snapshot
                    .listeners
                    .get(&self.endpoint.name)
                    .and_then(|l| l.hsts.as_ref())
            {
                // Every response, ours and the upstream's (whose own is replaced).
                response
                    .headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            if let Some(line) = &mut line {
                let abandoned =
                    response.extensions().get::<ClientFault>() == Some(&ClientFault::Abandoned);
                let status = if abandoned {
                    CLIENT_CLOSED_REQUEST
                } else {
                    response.status().as_u16()
                };
                line.write(
                    status,
                    response.body().size_hint().exact(),
                    upstream.as_deref().unwrap_or(""),
                    request_id
                        .as_ref()
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                );
            }
            Ok(response)
        }
    }

    /// Where the request goes: an answer of our own, or a route's pool.
    fn route(&self, snapshot: &Snapshot, mut req: Request<Incoming>) -> Routed {
        if let Err(refusal) = edge::admit(&mut req) {
            tracing::debug!(?refusal, "request refused at the edge");
            return Routed::Answer(refusal.response());
        }
        if !self.endpoint.https {
            // The challenge path is never redirected: an ACME server
            // follows no redirect to a certificate that does not exist yet.
            let token = challenge_token(&req);
            if let (Some(token), Some(challenges)) = (token, &self.endpoint.challenges) {
                return Routed::Answer(answer_challenge(challenges, req.method(), token));
            }
            if token.is_none()
                && let Some(port) = snapshot
                    .listeners
                    .get(&self.endpoint.name)
                    .and_then(|l| l.redirect_https)
            {
                return Routed::Answer(redirect(&req, host_of(&req), port));
            }
        }
        let Some(router) = snapshot.routers.get(&self.endpoint.name) else {
            return Routed::Answer(local(StatusCode::NOT_FOUND, "no route\n"));
        };
        let host = host_of(&req);
        let target = match router.lookup(&router::Request {
            host,
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
        }) {
            router::Match::Found { target, .. } => *target,
            router::Match::MethodNotAllowed { allowed } => {
                let mut r = local(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                r.headers_mut()
                    .insert(header::ALLOW, router::allow_header(&allowed));
                return Routed::Answer(r);
            }
            router::Match::NotFound => {
                return Routed::Answer(local(StatusCode::NOT_FOUND, "no route\n"));
            }
        };
        Routed::Pool {
            route: target.route,
            method: crate::route_stats::method_index(req.method()),
            pool: target.pool,
            req,
        }
    }

    /// The pool path: the pause gate, a member's slot, then the request
    /// [`prepare`](Self::prepare)d, forwarded, and its answer
    /// [`finish`](Self::finish)ed. Counts the request in the pool's stats
    /// from `entered`, when it arrived: at once for an answer of our own,
    /// when its body ends for an upstream's.
    // Not an `async fn`: its arguments would be stored twice in the
    // future (once as arguments, once as the body's bindings), and every
    // request allocates this future.
    #[allow(clippy::manual_async_fn)]
    fn enter_pool(
        &self,
        snapshot: &Snapshot,
        pool: usize,
        req: Request<Incoming>,
        entered: Instant,
    ) -> impl Future<Output = (Response<ProxyBody>, Option<Arc<str>>, Option<HeaderValue>)> {
        // The body wrapped here, before the future: a request moved into a
        // new binding inside it would keep its old place in the future too.
        let listener = snapshot.listeners.get(&self.endpoint.name);
        let max_body = listener.map_or(u64::MAX, |l| l.max_body);
        let read_ahead = listener.map_or(0, |l| l.body_buffer);
        let too_large = req.body().size_hint().lower() > max_body;
        let mut req = req.map(|body| {
            (!body.is_end_stream()).then(|| {
                let limited = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX));
                let timeout = listener.map_or(std::time::Duration::MAX, |l| l.body_read_timeout);
                ClientBody::new(limited, FaultRecord::new(), timeout)
            })
        });
        async move {
            let upstreams = &snapshot.pools[pool].0;
            if too_large {
                let response = local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
                return counted(&upstreams.stats, entered, (response, None, None));
            }
            // The body's first bytes before anything of the pool's: a slow
            // or broken upload is answered here, and holds no member.
            if let Some(body) = req.body_mut()
                && let Err(fault) = body.fill(read_ahead).await
            {
                tracing::debug!(pool = %upstreams.name, ?fault, "the client broke its request");
                let response = (client_fault(fault), None, None);
                return counted(&upstreams.stats, entered, response);
            }
            let current;
            let admission = match upstreams.gate.is_paused() {
                true => Box::pin(upstreams.gate.admit()).await,
                false => Admission::Open,
            };
            // When a member is picked: as the request arrived, unless it was
            // held.
            let (snapshot, pool, now) = match admission {
                Admission::Open => (snapshot, pool, entered),
                Admission::Released => {
                    // Held during a pause: the pool may have other members now
                    // (pause, reload, resume is how a deploy swaps them), so the
                    // request goes on with the current snapshot's pool of the
                    // same name — or with its own if that pool is gone.
                    current = self.shared.snapshot.load_full();
                    let now = Instant::now();
                    match current
                        .pools
                        .iter()
                        .position(|(u, _)| u.name == upstreams.name)
                    {
                        Some(index) => (&*current, index, now),
                        None => (snapshot, pool, now),
                    }
                }
                Admission::Refused {
                    refusal,
                    retry_after,
                } => {
                    tracing::debug!(pool = %upstreams.name, ?refusal, "paused pool refused a request");
                    upstreams.stats.record(entered.elapsed(), true);
                    return (refusal.response(retry_after), None, None);
                }
            };
            let current;
            let taken = match Self::slot_now(snapshot, pool, now) {
                Some(picked) => Ok((None, pool, picked)),
                None => Box::pin(self.take_slot(snapshot, pool)).await,
            };
            let (snapshot, pool, picked) = match taken {
                Ok((None, pool, picked)) => (snapshot, pool, picked),
                Ok((Some(newer), pool, picked)) => {
                    current = newer;
                    (&*current, pool, picked)
                }
                Err(text) => {
                    upstreams.stats.record(entered.elapsed(), true);
                    return (local(StatusCode::SERVICE_UNAVAILABLE, text), None, None);
                }
            };
            let stats = &snapshot.pools[pool].0.stats;
            let upstreams = &snapshot.pools[pool].0;
            // Taken apart in a statement of its own: what the future keeps
            // across the forwarding is its parts, not the whole as well.
            let Prepared {
                req,
                replay,
                client,
                after,
            } = self.prepare(snapshot, pool, req);
            let outcome = forward(upstreams, req, replay, picked, &client).await;
            counted(stats, entered, self.finish(upstreams, outcome, after))
        }
    }

    /// A member of pool `pool` with room for the request at `now`, when
    /// nobody waits in its queue: what [`take_slot`](Self::take_slot) does
    /// first, without its future.
    fn slot_now(snapshot: &Snapshot, pool: usize, now: Instant) -> Option<Picked> {
        let balance = &snapshot.pools[pool].0.balance;
        if !balance.queue().nobody_waiting() {
            return None;
        }
        balance.try_pick_at(&[], now).ok()
    }

    /// A member of pool `pool` with room for the request, waiting in the
    /// pool's queue while every available member is full. A request that
    /// waited goes on with the snapshot current when it got its member
    /// (`Some`): members may have come and gone meanwhile. `Err`: the text
    /// of the 503 (nothing available, queue full, waited too long).
    async fn take_slot(
        &self,
        snapshot: &Snapshot,
        pool: usize,
    ) -> Result<(Option<Arc<Snapshot>>, usize, Picked), &'static str> {
        let upstreams = &snapshot.pools[pool].0;
        let queue = upstreams.balance.queue().clone();
        let taken = queue
            .wait(|turn| {
                let current = match turn {
                    Turn::First => None,
                    Turn::Woken => Some(self.shared.snapshot.load_full()),
                };
                let found = current.as_ref().and_then(|c| {
                    let index = c.pools.iter().position(|(u, _)| u.name == upstreams.name)?;
                    Some((c, index))
                });
                let balance = match found {
                    Some((c, index)) => &c.pools[index].0.balance,
                    None => &upstreams.balance,
                };
                match balance.try_pick(&[]) {
                    Ok(picked) => match found {
                        Some((c, index)) => Attempt::Done(Ok((Some(c.clone()), index, picked))),
                        None => Attempt::Done(Ok((None, pool, picked))),
                    },
                    Err(NoPick::Full) => Attempt::full_until(balance.next_return(Instant::now())),
                    Err(NoPick::Unavailable) => Attempt::Done(Err("no healthy upstream\n")),
                }
            })
            .await;
        match taken {
            Ok(done) => done,
            Err(Refusal::Full) => Err("upstream queue full\n"),
            Err(Refusal::TimedOut) => Err("timed out waiting for a free upstream connection\n"),
        }
    }

    /// The request as it goes to pool `pool` of `snapshot`: limits
    /// checked, hop-by-hop headers dropped, forwarding headers and the
    /// request id set, the body wrapped; `Err`: the client's answer
    /// instead (its body is over the limit).
    fn prepare(
        &self,
        snapshot: &Snapshot,
        pool: usize,
        mut req: Request<Option<ClientRequestBody>>,
    ) -> Prepared {
        let (upstreams, settings) = &snapshot.pools[pool];

        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let protocol = match upgrade {
            true => Protocol::of(req.headers()),
            false => Protocol::Other,
        };
        // `Host` for the upstream when the client sent none (HTTP/2 and
        // absolute-form targets name it in the URI).
        let client_host = match req.headers().contains_key(header::HOST) {
            true => None,
            false => host_of(&req).and_then(|h| HeaderValue::from_str(h).ok()),
        };
        let (mut parts, body) = req.into_parts();
        parts.uri = origin_form(std::mem::take(&mut parts.uri));
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers, upgrade);
        let scheme = if self.endpoint.https { "https" } else { "http" };
        let request_id = set_forwarded(
            headers,
            self.client.as_ref(),
            scheme,
            &snapshot.trust,
            &snapshot.request_id,
        );
        match &settings.upstream_host {
            config::UpstreamHost::Preserve => {
                if let Some(h) = client_host
                    && !headers.contains_key(header::HOST)
                {
                    headers.insert(header::HOST, h);
                }
            }
            // Each attempt sets the authority of its own member (`forward`).
            config::UpstreamHost::Member => {}
            config::UpstreamHost::Literal(s) => {
                if let Ok(v) = HeaderValue::from_str(s) {
                    headers.insert(header::HOST, v);
                }
            }
        }
        let body_empty = body.is_none();
        let (body, client) = match body {
            // No body, no client fault: nothing to record.
            None => (crate::empty_body(), FaultRecord::none()),
            Some(body) => {
                let client = body.record();
                // One box for both layers.
                (body.boxed_unsync(), client)
            }
        };
        // A request is only ever sent again to a member not tried yet
        // (`forward`): with one member there is nobody to send it to.
        let replay = (upstreams.conns.len() > 1)
            .then(|| Replay::of(&parts.method, body_empty, upstreams.retry_non_idempotent))
            .flatten();
        let upstream_req = Request::from_parts(parts, body);

        Prepared {
            req: upstream_req,
            replay,
            client,
            after: AfterForward {
                request_id,
                client_upgrade,
                protocol,
            },
        }
    }

    /// What came back from the pool, as the client's response.
    fn finish(
        &self,
        upstreams: &Upstreams,
        outcome: Result<(Response<UpstreamBody>, Arc<str>), Failure>,
        after: AfterForward,
    ) -> (Response<ProxyBody>, Option<Arc<str>>, Option<HeaderValue>) {
        let AfterForward {
            request_id,
            client_upgrade,
            protocol,
        } = after;
        match outcome {
            Ok((response, member)) => {
                let (mut parts, body) = response.into_parts();
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    let leaving = body.member_leaving();
                    if let (Some(client), Some(upstream)) = (client_upgrade, body.upgrade()) {
                        self.shared
                            .tunnels
                            .spawn(client, upstream, protocol, leaving);
                    }
                    strip_hop_by_hop(&mut parts.headers, true);
                    return (
                        Response::from_parts(parts, ProxyBody::empty()),
                        Some(member),
                        Some(request_id),
                    );
                }
                // `h1` left the member's hop-by-hop headers out.
                let mut body = body;
                if crate::sse::is_event_stream(&parts.headers) {
                    let go_away = self.shared.tunnels.go_away_signal(body.member_leaving());
                    body.end_events_on(go_away);
                }
                (
                    Response::from_parts(parts, ProxyBody::Upstream(body)),
                    Some(member),
                    Some(request_id),
                )
            }
            Err(Failure::Client(fault)) => {
                tracing::debug!(pool = %upstreams.name, ?fault, "the client broke its request");
                (client_fault(fault), None, Some(request_id))
            }
            Err(failure) => {
                if !matches!(failure, Failure::NoMember) {
                    tracing::warn!(pool = %upstreams.name, %failure, "upstream request failed");
                }
                let text = match failure {
                    Failure::NoMember => "no healthy upstream\n",
                    Failure::Unreachable(_) | Failure::Broken(_) => "bad gateway\n",
                    Failure::Timeout => "upstream timed out\n",
                    Failure::Client(fault) => fault.text(),
                };
                (local(failure.status(), text), None, Some(request_id))
            }
        }
    }
}

/// A pool's answer (`member`, `request_id`: see [`ProxyService::finish`])
/// counted in the pool's `stats` from `entered`: at once for an answer of
/// our own, when its body ends for an upstream's; not at all when its
/// client went away, a request that did not end, for the pool as for its
/// members.
fn counted(
    stats: &Arc<balance::Stats>,
    entered: Instant,
    (mut response, member, request_id): (
        Response<ProxyBody>,
        Option<Arc<str>>,
        Option<HeaderValue>,
    ),
) -> (Response<ProxyBody>, Option<Arc<str>>, Option<HeaderValue>) {
    if response.extensions().get::<ClientFault>() == Some(&ClientFault::Abandoned) {
        return (response, member, request_id);
    }
    let failed = response.status().is_server_error();
    match response.body_mut() {
        ProxyBody::Upstream(body) => body.count_in(PoolRecord {
            stats: stats.clone(),
            entered,
            failed,
        }),
        ProxyBody::Local(_) => stats.record(entered.elapsed(), failed),
    }
    (response, member, request_id)
}

/// Where [`ProxyService::route`] sends a request.
enum Routed {
    /// Answered here (refused, redirected, no route, an ACME challenge).
    Answer(Response<ProxyBody>),
    /// To route `route`'s pool `pool`; `method` is the request's index in
    /// the route's stats.
    Pool {
        route: usize,
        method: usize,
        pool: usize,
        req: Request<Incoming>,
    },
}

/// A request ready to forward, and what its answer needs afterwards.
struct Prepared {
    req: Request<ReqBody>,
    replay: Option<Replay>,
    /// Whether the client's body failed.
    client: FaultRecord,
    after: AfterForward,
}

/// What [`ProxyService::finish`] needs of the request.
struct AfterForward {
    request_id: HeaderValue,
    /// The client's side of an upgrade it asked for.
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    protocol: Protocol,
}

/// The answer to a client that broke its own request, not an upstream
/// failure: sent if it still listens, and the connection closed, since its
/// request was not read to a clean end.
fn client_fault(fault: ClientFault) -> Response<ProxyBody> {
    let mut r = local(fault.status(), fault.text());
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r.extensions_mut().insert(fault);
    r
}

/// The client's request body as the proxy reads it.
type ClientRequestBody = ClientBody<Limited<Incoming>>;

fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::text(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The request's host: the URI authority (HTTP/2, absolute-form) or `Host`.
fn host_of<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `/path?query` only: upstreams get origin-form requests. A target
/// already in origin form (every HTTP/1 request but the absolute form) is
/// kept as it is, without parsing it again.
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() && uri.path_and_query().is_some() {
        return uri;
    }
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    pq.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}
