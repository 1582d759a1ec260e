//! The drain tracker: counts what is in flight (connections, requests,
//! streams) and completes as soon as the count reaches zero, or when a
//! deadline passes. It never sleeps out a fixed grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Counts in-flight work. Cheap to clone; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
}

/// Marks one unit of in-flight work; dropping it ends the work.
#[derive(Debug)]
#[must_use = "the work counts as in flight only while the guard lives"]
pub struct DrainGuard {
    inner: Arc<Inner>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Everything in flight finished.
    Drained,
    /// The deadline passed with this much still in flight.
    DeadlineReached {
        /// Units of work still in flight.
        remaining: usize,
    },
}

impl Drain {
    /// A tracker with nothing in flight.
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Counts one more unit of in-flight work until the guard is dropped.
    pub fn guard(&self) -> DrainGuard {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        DrainGuard {
            inner: self.inner.clone(),
        }
    }

    /// How much is in flight now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight, or until `deadline`.
    pub async fn wait(&self, deadline: Instant) -> DrainOutcome {
        loop {
            // Register interest before reading the count, so a guard dropped
            // between the read and the await still wakes us.
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let remaining = self.active();
            if remaining == 0 {
                return DrainOutcome::Drained;
            }
            tokio::select! {
                _ = &mut idle => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let remaining = self.active();
                    return if remaining == 0 {
                        DrainOutcome::Drained
                    } else {
                        DrainOutcome::DeadlineReached { remaining }
                    };
                }
            }
        }
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn completes_as_soon_as_the_last_guard_drops() {
        let drain = Drain::new();
        let a = drain.guard();
        let b = drain.guard();
        let start = Instant::now();
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.wait(start + Duration::from_secs(300)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.await.unwrap(), DrainOutcome::Drained);
        // Two seconds of work, not the 300 s deadline.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn reports_what_remains_at_the_deadline() {
        let drain = Drain::new();
        let _stuck = drain.guard();
        let start = Instant::now();
        let out = drain.wait(start + Duration::from_secs(5)).await;
        assert_eq!(out, DrainOutcome::DeadlineReached { remaining: 1 });
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_in_flight_returns_at_once() {
        let start = Instant::now();
        let out = Drain::new().wait(start + Duration::from_secs(5)).await;
        assert_eq!(out, DrainOutcome::Drained);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
