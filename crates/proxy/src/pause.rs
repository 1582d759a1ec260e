//! Pausing a pool: requests routed to it wait at a [`Gate`] until it is
//! resumed, within bounds ([`Hold`]) past which they get a 503.
//!
//! Owns the gate of each pool (kept by the registry across reloads) and the
//! 503s it answers. When the pool is not paused, passing the gate is one
//! atomic load: no lock, no allocation. A waiting request holds no lock
//! across an await; it watches the gate's state and its own deadline. The
//! gate never routes: the service decides what a released request does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::ProxyBody;

/// How many requests a paused pool holds, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The longest a request waits for the resume; past it, it gets a 503.
    pub max_wait: Duration,
    /// Most requests waiting at once; one more gets a 503 at once (0 holds
    /// none: every request is refused while the pool is paused).
    pub max_requests: usize,
}

impl Hold {
    /// `Retry-After` of the 503s: `max_wait` in whole seconds, rounded up,
    /// at least 1 — the pause's own estimate of how long it lasts.
    fn retry_after(self) -> u64 {
        let secs =
            (self.max_wait.as_secs()).saturating_add(u64::from(self.max_wait.subsec_nanos() > 0));
        secs.max(1)
    }
}

/// Why a request could not pass a paused pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_requests` were already held.
    Full,
    /// The request waited `max_wait`.
    TimedOut,
}

/// What the gate says to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The pool is not paused: go on at once.
    Open,
    /// The request was held and the pool is resumed (or gone): go on, with
    /// the snapshot current now rather than the one it started with.
    Released,
    /// Answer 503 with `Retry-After: retry_after` seconds.
    Refused {
        /// Which bound was hit.
        refusal: Refusal,
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
}

/// The pause state of one pool, shared by every snapshot that has the pool.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Mirrors `hold.is_some()` for the lock-free fast path; written only
    /// inside the watch's lock, so the two never disagree for long.
    paused: AtomicBool,
    hold: watch::Sender<Option<Hold>>,
    /// Requests waiting now.
    held: watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            paused: AtomicBool::new(false),
            hold: watch::Sender::new(None),
            held: watch::Sender::new(0),
        }
    }
}

/// Counts one held request until dropped (the request ends or its client
/// goes away).
struct Held<'a>(&'a watch::Sender<usize>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Gate {
    /// Lets a request through, holds it, or refuses it.
    pub(crate) async fn admit(&self) -> Admission {
        if !self.paused.load(Ordering::Acquire) {
            return Admission::Open;
        }
        self.wait().await
    }

    async fn wait(&self) -> Admission {
        let arrived = Instant::now();
        let mut state = self.hold.subscribe();
        // Copied out: no watch lock is held across an await.
        let Some(mut hold) = *state.borrow_and_update() else {
            return Admission::Open;
        };
        let admitted = self.held.send_if_modified(|n| {
            let room = *n < hold.max_requests;
            if room {
                *n += 1;
            }
            room
        });
        if !admitted {
            return Admission::Refused {
                refusal: Refusal::Full,
                retry_after: hold.retry_after(),
            };
        }
        let _held = Held(&self.held);
        loop {
            // A new `Hold` while paused moves the deadline of the requests
            // already waiting too.
            let deadline = arrived.checked_add(hold.max_wait);
            let timeout = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = state.changed() => {
                    // A closed channel means the gate is gone: nothing holds
                    // the request any more.
                    let now = if changed.is_ok() { *state.borrow_and_update() } else { None };
                    match now {
                        Some(bounds) => hold = bounds,
                        None => return Admission::Released,
                    }
                }
                () = timeout => {
                    return Admission::Refused {
                        refusal: Refusal::TimedOut,
                        retry_after: hold.retry_after(),
                    };
                }
            }
        }
    }

    /// Pauses (or replaces the bounds of the current pause).
    pub(crate) fn pause(&self, hold: Hold) {
        self.hold.send_modify(|state| {
            *state = Some(hold);
            self.paused.store(true, Ordering::Release);
        });
    }

    /// Releases every held request; whether the gate was paused.
    pub(crate) fn resume(&self) -> bool {
        self.hold.send_if_modified(|state| {
            self.paused.store(false, Ordering::Release);
            state.take().is_some()
        })
    }

    /// Whether requests are held now.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The number of requests held now.
    pub(crate) fn held_now(&self) -> usize {
        *self.held.borrow()
    }

    /// The number of requests waiting, as it changes.
    #[cfg(test)]
    pub(crate) fn held(&self) -> watch::Receiver<usize> {
        self.held.subscribe()
    }
}

impl Refusal {
    /// The 503 a refused request gets.
    pub(crate) fn response(self, retry_after: u64) -> Response<ProxyBody> {
        let text = match self {
            Refusal::Full => "paused: too many requests waiting\n",
            Refusal::TimedOut => "paused: waited too long\n",
        };
        let mut r = Response::new(ProxyBody::text(text));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = r.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::advance;

    use super::*;

    fn hold(max_wait_ms: u64, max_requests: usize) -> Hold {
        Hold {
            max_wait: Duration::from_millis(max_wait_ms),
            max_requests,
        }
    }

    /// Starts a request at the gate and waits until it is held.
    async fn held_request(gate: &Arc<Gate>, n: usize) -> tokio::task::JoinHandle<Admission> {
        let task = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await }
        });
        gate.held().wait_for(|&held| held == n).await.unwrap();
        task
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_gate_lets_requests_through() {
        let gate = Gate::default();
        assert!(!gate.is_paused());
        assert_eq!(gate.admit().await, Admission::Open);
        assert!(!gate.resume(), "was not paused");
    }

    #[tokio::test(start_paused = true)]
    async fn resume_releases_every_held_request() {
        let gate = Arc::new(Gate::default());
        gate.pause(hold(60_000, 10));
        assert!(gate.is_paused());
        let first = held_request(&gate, 1).await;
        let second = held_request(&gate, 2).await;
        assert!(gate.resume());
        assert!(!gate.is_paused());
        assert_eq!(first.await.unwrap(), Admission::Released);
        assert_eq!(second.await.unwrap(), Admission::Released);
        assert_eq!(*gate.held().borrow(), 0);
        assert_eq!(gate.admit().await, Admission::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn one_request_over_max_requests_is_refused_at_once() {
        let gate = Arc::new(Gate::default());
        gate.pause(hold(2_500, 1));
        let waiting = held_request(&gate, 1).await;
        let refused = gate.admit().await;
        assert_eq!(
            refused,
            Admission::Refused {
                refusal: Refusal::Full,
                retry_after: 3
            }
        );
        gate.resume();
        assert_eq!(waiting.await.unwrap(), Admission::Released);
        // Zero holds none.
        gate.pause(hold(100, 0));
        assert!(matches!(gate.admit().await, Admission::Refused { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_max_wait_then_is_refused() {
        let gate = Arc::new(Gate::default());
        gate.pause(hold(300, 5));
        let started = Instant::now();
        let waiting = held_request(&gate, 1).await;
        advance(Duration::from_millis(299)).await;
        assert!(!waiting.is_finished());
        let admission = waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(
            admission,
            Admission::Refused {
                refusal: Refusal::TimedOut,
                retry_after: 1
            }
        );
        assert_eq!(*gate.held().borrow(), 0, "its slot is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_hold_replaces_the_bounds_of_waiting_requests() {
        let gate = Arc::new(Gate::default());
        gate.pause(hold(100, 1));
        let started = Instant::now();
        let waiting = held_request(&gate, 1).await;
        gate.pause(hold(1_000, 2));
        let second = held_request(&gate, 2).await;
        let first = waiting.await.unwrap();
        assert!(matches!(first, Admission::Refused { .. }));
        assert_eq!(started.elapsed(), Duration::from_millis(1_000));
        assert!(matches!(second.await.unwrap(), Admission::Refused { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_goes_away_frees_its_slot() {
        let gate = Arc::new(Gate::default());
        gate.pause(hold(60_000, 1));
        let waiting = held_request(&gate, 1).await;
        waiting.abort();
        gate.held().wait_for(|&n| n == 0).await.unwrap();
        let _again = held_request(&gate, 1).await;
    }

    #[test]
    fn refusals_carry_retry_after_and_a_text() {
        let r = Refusal::Full.response(4);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "4");
        assert_eq!(hold(0, 1).retry_after(), 1);
        assert_eq!(hold(1_000, 1).retry_after(), 1);
        assert_eq!(hold(1_001, 1).retry_after(), 2);
        let forever = Hold {
            max_wait: Duration::MAX,
            max_requests: 1,
        };
        assert_eq!(forever.retry_after(), u64::MAX);
    }
}
