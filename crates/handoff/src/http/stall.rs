//! The write limit for HTTP/2 streams. On an HTTP/1 connection a client
//! that stops reading stops the socket, and the write limit on the socket
//! (`guard`) ends it. An HTTP/2 client can stop one stream alone, by never
//! opening its flow-control window: the socket keeps moving, hyper waits
//! for window before it asks the response body for more, and nothing
//! would ever end the stream (nor free what feeds its body, a member's
//! connection in `baton serve`).
//!
//! So each HTTP/2 stream's task is spawned [`Watched`]: the response body
//! ([`Progress::frame_taken`], from `conn::Tracked`) records when it last
//! handed hyper a frame, and the head when it was produced; while the
//! stream waits for its client after that (the body not asked again), the
//! task ends the stream once `write_timeout` has passed: it is dropped,
//! and h2 resets it (`CANCEL`). A body waiting for its own data (an event
//! stream between events) is not the client's doing and is never timed.
//!
//! The stream's [`Progress`] travels from the service's `call` to the
//! executor in a thread-local: hyper calls the service and spawns the
//! stream's task right after, on the same thread, with nothing in between.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::conn::ConnCounts;

thread_local! {
    /// The progress of the stream whose service was just called.
    static NEXT: Cell<Option<Arc<Progress>>> = const { Cell::new(None) };
}

/// When a stream last gave its client something to take.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Nanoseconds since [`epoch`] (plus one, so that 0 is "nothing"): the
    /// moment the head or the last frame was handed to hyper; 0 while the
    /// body waits for its own data.
    handed_at: AtomicU64,
    /// Its listener's counts, where a stream ended by the limit is counted.
    counts: Option<Arc<ConnCounts>>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn stamp() -> u64 {
    let since = Instant::now().saturating_duration_since(epoch());
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

impl Progress {
    /// A new stream's progress, for the task hyper spawns next on this
    /// thread.
    pub(crate) fn for_next_stream(counts: Option<Arc<ConnCounts>>) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            handed_at: AtomicU64::new(0),
            counts,
        });
        NEXT.with(|next| next.set(Some(progress.clone())));
        progress
    }

    /// The response's head is ready: the client is to take it.
    pub(crate) fn head_ready(&self) {
        self.handed_at.store(stamp(), Ordering::Relaxed);
    }

    /// The body answered hyper: a frame handed over (the client is to take
    /// it), or a wait for its own data (not the client's to end).
    pub(crate) fn frame_taken(&self, handed: bool) {
        let at = if handed { stamp() } else { 0 };
        self.handed_at.store(at, Ordering::Relaxed);
    }

    /// Since when the stream has waited for its client, if it does.
    fn waiting_since(&self) -> Option<Instant> {
        match self.handed_at.load(Ordering::Relaxed) {
            0 => None,
            n => Some(epoch() + Duration::from_nanos(n - 1)),
        }
    }
}

/// hyper's executor for HTTP/2 streams: spawns each on tokio, watched when
/// there is a write limit.
#[derive(Debug, Clone)]
pub(crate) struct StreamExec {
    pub(crate) write_timeout: Option<Duration>,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let progress = NEXT.with(Cell::take);
        match (progress, self.write_timeout) {
            (Some(progress), Some(limit)) => {
                tokio::spawn(Watched {
                    fut,
                    progress,
                    limit,
                    timer: None,
                });
            }
            _ => {
                tokio::spawn(fut);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream's task that ends once its client has taken nothing for
    /// `limit`.
    struct Watched<F> {
        #[pin]
        fut: F,
        progress: Arc<Progress>,
        limit: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.fut.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            let Some(since) = this.progress.waiting_since() else {
                return Poll::Pending;
            };
            let deadline = since + *this.limit;
            if Instant::now() >= deadline {
                tracing::debug!(
                    "HTTP/2 client took nothing of its response for the write timeout: ending the stream"
                );
                if let Some(counts) = &this.progress.counts {
                    counts.count_write_timeout();
                }
                return Poll::Ready(());
            }
            let timer = match this.timer {
                Some(timer) => {
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    timer
                }
                None => this
                    .timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired: the stream may have moved meanwhile; look again.
        }
    }
}
