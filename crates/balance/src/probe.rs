//! The active checker: one tokio task per member that probes it over HTTP/1.1
//! and feeds [`ActiveState`].
//!
//! Owns the I/O of a probe (resolve, a *new* TCP connection, optionally a
//! caller's [`Handshake`] on it such as TLS, `GET` with `Connection: close`,
//! the response head, a bounded read of the body) and the logging of
//! transitions. It knows nothing of TLS itself: the handshake is the
//! caller's. It must never keep a connection between
//! probes (a pooled connection would hide a member that stopped accepting)
//! and never decides on thresholds itself: that is [`ActiveState`]'s job.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use handoff::time::SaturatingAdd;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, lookup_host};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::active::{ActiveCheck, ActiveState, ProbeResult};
use crate::health::MemberHealth;
use crate::peers::Peers;

/// Body bytes read after the status line before the probe hangs up: enough
/// for a health page, bounded so a huge one cannot keep the probe busy.
const MAX_BODY: usize = 64 * 1024;

/// Why a probe got no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The member's host did not resolve.
    #[error("could not resolve {addr}: {message}")]
    Resolve {
        /// The member's `host:port`.
        addr: String,
        /// The resolver's error.
        message: String,
    },
    /// No resolved address accepted the connection.
    #[error("could not connect: {message}")]
    Connect {
        /// The last connection error.
        message: String,
    },
    /// The check's path or host does not make a valid request.
    #[error("could not build the request: {message}")]
    Request {
        /// What is wrong with it.
        message: String,
    },
    /// The handshake on the new connection (e.g. TLS) failed.
    #[error("could not complete the handshake: {message}")]
    Handshake {
        /// The handshake's error.
        message: String,
    },
    /// The connection broke before a response head arrived.
    #[error("could not read a response: {message}")]
    Http {
        /// hyper's error.
        message: String,
    },
    /// No response head within the check's timeout.
    #[error("timed out")]
    TimedOut,
}

/// A stream a probe speaks HTTP/1.1 over, as a [`Handshake`] returns it.
pub trait ProbeIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ProbeIo for T {}

/// What a probe does with its new TCP connection before the request, e.g.
/// a TLS handshake for a member that speaks HTTPS. Its time counts in the
/// check's timeout; its error fails the probe.
pub type Handshake = Arc<
    dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = std::io::Result<Box<dyn ProbeIo>>> + Send>>
        + Send
        + Sync,
>;

/// Probes `addr` (`host:port`, resolved now) once, within `check.timeout`
/// of the member's time (see [`probe_over`]).
pub async fn probe(addr: &str, check: &ActiveCheck) -> ProbeResult {
    probe_over(addr, check, None).await
}

/// [`probe`], with `handshake` (if any) run on the new connection before
/// the request.
///
/// The timeout counts the member's time, not the prober's: when the
/// deadline is seen late (the prober's thread did not run — a starved CPU,
/// a busy runtime — so neither could the probe), the probe gets that
/// lateness again, up to one more `check.timeout` in all. A probe therefore
/// times out only once a deadline passed while the prober was running.
pub async fn probe_over(
    addr: &str,
    check: &ActiveCheck,
    handshake: Option<&Handshake>,
) -> ProbeResult {
    within_own_time(check.timeout, probe_untimed(addr, check, handshake))
        .await
        .unwrap_or(Err(ProbeError::TimedOut))
}

/// How late a deadline may be seen before the prober counts as not having
/// run: above the timer's granularity (1 ms) and a busy runtime's jitter.
const LATE: Duration = Duration::from_millis(5);

/// `work`'s output if it completes within `timeout`, not counting the time
/// the caller's thread was kept from running, as seen by how late each
/// deadline fires; bounded by `2 × timeout` plus the last lateness.
async fn within_own_time<F: Future>(timeout: Duration, work: F) -> Option<F::Output> {
    let mut deadline = Instant::now().saturating_add(timeout);
    let mut granted = Duration::ZERO;
    tokio::pin!(work);
    loop {
        tokio::select! {
            // The work first: what completed while the prober was kept from
            // running counts as in time.
            biased;
            output = &mut work => return Some(output),
            () = tokio::time::sleep_until(deadline) => {}
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(deadline);
        let left = timeout.saturating_sub(granted);
        if late < LATE || left.is_zero() {
            return None;
        }
        let extra = late.min(left);
        granted += extra;
        deadline = now.saturating_add(extra);
    }
}

async fn probe_untimed(
    addr: &str,
    check: &ActiveCheck,
    handshake: Option<&Handshake>,
) -> ProbeResult {
    let resolved = lookup_host(addr).await.map_err(|e| ProbeError::Resolve {
        addr: addr.to_owned(),
        message: e.to_string(),
    })?;
    let mut last_error = "no address".to_owned();
    let mut stream = None;
    for candidate in resolved {
        match TcpStream::connect(candidate).await {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    let stream = stream.ok_or(ProbeError::Connect {
        message: last_error,
    })?;
    // Latency of a tiny request matters more than batching here.
    let _ = stream.set_nodelay(true);
    match handshake {
        None => exchange(stream, addr, check).await,
        Some(handshake) => {
            let stream = handshake(stream).await.map_err(|e| ProbeError::Handshake {
                message: e.to_string(),
            })?;
            exchange(stream, addr, check).await
        }
    }
}

/// The HTTP part of a probe, on a connected stream.
async fn exchange<IO: ProbeIo>(stream: IO, addr: &str, check: &ActiveCheck) -> ProbeResult {
    let request = http::Request::get(check.path.as_str())
        .header(HOST, check.host.as_deref().unwrap_or(addr))
        .header(CONNECTION, "close")
        .header(USER_AGENT, "baton-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Request {
            message: e.to_string(),
        })?;
    let http_error = |e: hyper::Error| ProbeError::Http {
        message: e.to_string(),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status().as_u16();
        // Read (a bounded part of) the body so the member sees a clean close
        // rather than a reset; its content does not matter.
        let mut body = response.into_body();
        let mut read = 0;
        while read < MAX_BODY {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
        Ok(status)
    };
    // The connection is driven here rather than in a spawned task, so that a
    // timeout (which drops this future) also drops the socket.
    tokio::pin!(connection, exchange);
    let mut connection_done = false;
    loop {
        tokio::select! {
            result = &mut exchange => return result,
            result = &mut connection, if !connection_done => {
                connection_done = true;
                result.map_err(http_error)?;
            }
        }
    }
}

/// Stops the active checker when dropped.
#[derive(Debug)]
pub struct ActiveHandle {
    task: JoinHandle<()>,
}

impl ActiveHandle {
    /// Stops the checker (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for ActiveHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts probing `member` (`host:port`, resolved at each probe) every
/// `check.interval`, the first probe at once, and sets `health`'s flag after
/// `check.healthy_threshold` passes or `check.unhealthy_threshold` failures in
/// a row. Run one checker per member: it is the writer of the flag. Must be
/// called within a tokio runtime.
pub fn spawn_active(
    member: impl Into<String>,
    health: Arc<MemberHealth>,
    check: ActiveCheck,
) -> ActiveHandle {
    spawn_active_over(member, health, check, None, None)
}

/// [`spawn_active`], each probe running `handshake` (if any) on its new
/// connection before the request (see [`probe_over`]), for a member of the
/// pool `peers` links to (if any).
///
/// In a pool, a failure streak made of timeouts only never takes out the
/// last member of the pool that is available with a weight above 0: a
/// prober starved of CPU sees every member time out at once although they
/// all work, and taking them all out would turn slow answers into certain
/// 503s. A member that refuses connections or answers a failing status
/// leaves even when it is the last one. A member kept in keeps its streak,
/// and leaves at its next timeout once another member is available.
pub fn spawn_active_over(
    member: impl Into<String>,
    health: Arc<MemberHealth>,
    check: ActiveCheck,
    handshake: Option<Handshake>,
    peers: Option<Arc<Peers>>,
) -> ActiveHandle {
    let member = member.into();
    ActiveHandle {
        task: tokio::spawn(run(member, health, check, handshake, peers)),
    }
}

async fn run(
    member: String,
    health: Arc<MemberHealth>,
    check: ActiveCheck,
    handshake: Option<Handshake>,
    peers: Option<Arc<Peers>>,
) {
    let mut state = ActiveState::new(health.is_healthy(), &check);
    let mut ticks = tokio::time::interval(check.interval.max(Duration::from_millis(1)));
    // A slow probe delays the next one instead of causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = probe_over(&member, &check, handshake.as_ref()).await;
        if let Err(error) = &result {
            tracing::debug!(member = %member, %error, "health probe failed");
        }
        state.sync(health.is_healthy());
        if let Some((successes, failures)) = health.take_carried_streaks() {
            state.resume(successes, failures);
        }
        let transition = state.record(&result);
        // Streaks first, so that whoever wakes on the watch reads them fresh.
        health.set_active_streaks(state.successes(), state.failures());
        let Some(transition) = transition else {
            continue;
        };
        let applied = match (&peers, transition.to) {
            (Some(peers), false) => peers.take_out(&health, state.timeouts_only()),
            (_, to) => {
                health.set_healthy(to);
                true
            }
        };
        let (from, to) = (label(transition.from), label(transition.to));
        let reason = &transition.reason;
        if !applied {
            state.withhold();
            // Logged once per streak: the first time it reaches the threshold.
            if state.failures() == check.unhealthy_threshold.max(1) {
                tracing::warn!(%member, %reason, "member kept in: probes timed out, but it is the last available member of its pool");
            }
        } else if transition.to {
            tracing::info!(%member, from, to, %reason, "member health changed");
        } else {
            tracing::warn!(%member, from, to, %reason, "member health changed");
        }
    }
}

fn label(healthy: bool) -> &'static str {
    if healthy { "healthy" } else { "unhealthy" }
}
