//! One worker: a loop that sends one request at a time until the run stops.
//!
//! Owns pacing and bounds: the request budget, the stop signal, the per-request timeout, and the back-off after a
//! failure, so that a dead target costs a few dozen failures per second per worker instead of a spinning CPU. It
//! never retries: every attempt is recorded once, as it ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::watch;

use crate::conn::{Connection, Exchange};
use crate::failure::{Failure, FailureKind};
use crate::plan::{Plan, WorkerKind};
use crate::stats::{Outcome, Shared};
use crate::{http2, sse, ws};

/// The pause after a failed request before the worker's next attempt.
pub(crate) const FAILURE_BACKOFF: Duration = Duration::from_millis(20);

/// How many announced ends (a WebSocket closed with 1001, an event stream ended cleanly, an HTTP/2 GOAWAY) one
/// request may meet before it counts as failed: a server that keeps saying goodbye serves nobody.
pub(crate) const MAX_ANNOUNCED_ENDS: u32 = 3;

/// What every worker of a run needs, resolved once from the [`crate::LoadConfig`].
pub(crate) struct Settings {
    pub(crate) target: SocketAddr,
    pub(crate) host: HeaderValue,
    pub(crate) slow_ms: u64,
    pub(crate) sse_interval_ms: u64,
    pub(crate) request_timeout: Duration,
    pub(crate) pace: Option<Duration>,
}

/// One request of a long-lived kind on its way: where it goes and what it met.
pub(crate) struct Attempt<'a> {
    pub(crate) target: SocketAddr,
    pub(crate) host: &'a HeaderValue,
    /// Set to the instance header's value once a response (or an upgrade, or a stream) arrived.
    pub(crate) responded: &'a mut Option<Option<String>>,
    /// Announced ends met so far.
    pub(crate) ends: &'a mut u32,
}

impl Attempt<'_> {
    /// Counts an announced end of `what`; a failure past [`MAX_ANNOUNCED_ENDS`].
    pub(crate) fn announced_end(&mut self, what: &str) -> Result<(), Failure> {
        *self.ends += 1;
        if *self.ends > MAX_ANNOUNCED_ENDS {
            return Err(Failure::new(
                FailureKind::Other,
                format!(
                    "the server ended {} {what}s in a row before answering",
                    self.ends
                ),
            ));
        }
        Ok(())
    }
}

/// The connection a worker keeps between requests, by kind.
enum Slot {
    Http1(Option<Connection>),
    WebSocket(Option<ws::Socket>),
    Sse(Option<sse::Stream>),
    H2(Option<http2::Connection>),
}

impl Slot {
    fn new(kind: WorkerKind) -> Slot {
        match kind {
            WorkerKind::WebSocket => Slot::WebSocket(None),
            WorkerKind::Sse => Slot::Sse(None),
            WorkerKind::H2 => Slot::H2(None),
            WorkerKind::KeepAlive | WorkerKind::Fresh | WorkerKind::Post | WorkerKind::Slow => {
                Slot::Http1(None)
            }
        }
    }

    /// Closes the connection: its state is unknown after an abandoned exchange.
    fn clear(&mut self) {
        match self {
            Slot::Http1(c) => *c = None,
            Slot::WebSocket(c) => *c = None,
            Slot::Sse(c) => *c = None,
            Slot::H2(c) => *c = None,
        }
    }

    /// One request; `responded` and `ends` say what it met, even if it is abandoned.
    async fn run(
        &mut self,
        kind: WorkerKind,
        settings: &Settings,
        plan: &Plan,
        responded: &mut Option<Option<String>>,
        ends: &mut u32,
    ) -> Result<(), Failure> {
        let mut attempt = Attempt {
            target: settings.target,
            host: &settings.host,
            responded,
            ends,
        };
        match self {
            Slot::Http1(slot) => {
                Exchange {
                    slot,
                    responded: attempt.responded,
                    target: settings.target,
                    host: &settings.host,
                    reuse: kind.reuses_connection(),
                }
                .run(plan)
                .await
            }
            Slot::WebSocket(slot) => ws::echo(slot, &mut attempt, plan).await,
            Slot::Sse(slot) => sse::next_tick(slot, &mut attempt, plan).await,
            Slot::H2(slot) => http2::exchange(slot, &mut attempt, plan).await,
        }
    }
}

/// Marks the worker as exited however it ends, panics included, so waiters are never left hanging.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.worker_exited();
    }
}

/// Runs worker number `index` of kind `kind` until the stop signal or the request budget ends it.
pub(crate) async fn run(
    kind: WorkerKind,
    index: usize,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
) {
    let _exit = ExitGuard(shared.clone());
    let mut stop = shared.stop_signal();
    let mut slot = Slot::new(kind);
    let ms = match kind {
        WorkerKind::Sse => settings.sse_interval_ms,
        _ => settings.slow_ms,
    };
    for seq in 0u64.. {
        if shared.stopped() {
            break;
        }
        if !shared.take_ticket() {
            shared.signal_stop();
            break;
        }
        let plan = Plan::new(kind, index, seq, ms);
        let phase = shared.phase();
        let started = Instant::now();
        let mut responded = None;
        let mut ends = 0;
        let exchange = slot.run(kind, &settings, &plan, &mut responded, &mut ends);
        let result = match tokio::time::timeout(settings.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => {
                // The connection's state is unknown after an abandoned exchange; never reuse it.
                slot.clear();
                Err(timed_out(settings.request_timeout, responded.is_some()))
            }
        };
        let pause = pause_after(result.is_err(), settings.pace);
        shared.record(Outcome {
            kind,
            worker: index,
            phase,
            started,
            plan: &plan,
            responded,
            announced_ends: ends,
            result,
        });
        if !pause.is_zero() && interrupted(&mut stop, pause).await {
            break;
        }
    }
}

fn timed_out(limit: Duration, head_arrived: bool) -> Failure {
    let what = if head_arrived {
        "response body not complete"
    } else {
        "no response"
    };
    Failure::new(
        FailureKind::Timeout,
        format!("{what} within {} ms", limit.as_millis()),
    )
}

/// How long to wait before the next request: the pace, and at least [`FAILURE_BACKOFF`] after a failure.
pub(crate) fn pause_after(failed: bool, pace: Option<Duration>) -> Duration {
    let pace = pace.unwrap_or(Duration::ZERO);
    if failed {
        pace.max(FAILURE_BACKOFF)
    } else {
        pace
    }
}

/// Sleeps for `pause`; returns `true` if the run was stopped meanwhile.
async fn interrupted(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => false,
        // An error means the sender is gone, which only happens once the run is over.
        _ = stop.wait_for(|stopped| *stopped) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_successes_follow_the_pace() {
        assert_eq!(pause_after(false, None), Duration::ZERO);
        assert_eq!(pause_after(true, None), FAILURE_BACKOFF);
        assert_eq!(
            pause_after(false, Some(Duration::from_millis(5))),
            Duration::from_millis(5)
        );
        assert_eq!(
            pause_after(true, Some(Duration::from_millis(5))),
            FAILURE_BACKOFF
        );
        assert_eq!(
            pause_after(true, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_early_when_the_run_stops() {
        let (tx, mut rx) = watch::channel(false);
        let started = tokio::time::Instant::now();
        assert!(!interrupted(&mut rx, Duration::from_millis(20)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(20));

        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send_replace(true);
            tx
        });
        let started = tokio::time::Instant::now();
        assert!(interrupted(&mut rx, Duration::from_secs(3600)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(stopper.await.unwrap());
    }
}
