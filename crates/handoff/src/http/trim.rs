//! Giving memory back after a burst of connections: parked and closed
//! connections free their buffers, but glibc's allocator keeps what was
//! freed in the middle of its heap in the process (RSS stays at the peak)
//! until `malloc_trim` is called. Counts released connections and, once a
//! burst of them has ended, trims the heap once, on a blocking thread.
//! Never on the request path, and never more than once per burst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Released connections (parked or closed) that make a burst worth a trim.
const BURST: u64 = 1024;
/// A burst has ended when fewer than `BURST` connections were released
/// within this long.
const QUIET: Duration = Duration::from_secs(1);

/// Connections released, and the trimmer's wake-up.
#[derive(Debug, Default)]
pub(super) struct Trim {
    released: AtomicU64,
    burst: Notify,
}

impl Trim {
    /// A connection was parked or closed: its buffers are free.
    pub(super) fn released(&self) {
        if self.released.fetch_add(1, Ordering::Relaxed) % BURST == BURST - 1 {
            self.burst.notify_one();
        }
    }

    /// Runs `trim` once after each burst of released connections, for as
    /// long as it is polled.
    pub(super) async fn run<F, Fut>(&self, trim: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut trimmed_at = 0;
        loop {
            self.burst.notified().await;
            if self.released.load(Ordering::Relaxed) - trimmed_at < BURST {
                continue; // woken during the burst already trimmed
            }
            loop {
                let before = self.released.load(Ordering::Relaxed);
                tokio::time::sleep(QUIET).await;
                if self.released.load(Ordering::Relaxed) - before < BURST {
                    break;
                }
            }
            trimmed_at = self.released.load(Ordering::Relaxed);
            trim().await;
        }
    }
}

/// Trims the heap on a blocking thread (it walks the allocator's free lists
/// under its locks).
pub(super) async fn trim_heap() {
    match tokio::task::spawn_blocking(crate::sys::trim_heap).await {
        Ok(released) => tracing::debug!(released, "heap trimmed after a burst of connections"),
        Err(e) => tracing::debug!(error = %e, "heap trim failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    async fn count_trims(trim: &Arc<Trim>, trims: &Arc<AtomicUsize>) {
        let trims = trims.clone();
        trim.run(move || {
            trims.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn trims_once_after_each_burst_has_ended() {
        let trim = Arc::new(Trim::default());
        let trims = Arc::new(AtomicUsize::new(0));
        let runner = tokio::spawn({
            let (trim, trims) = (trim.clone(), trims.clone());
            async move { count_trims(&trim, &trims).await }
        });
        // Fewer than a burst: nothing.
        for _ in 0..BURST - 1 {
            trim.released();
        }
        tokio::time::sleep(QUIET * 5).await;
        assert_eq!(trims.load(Ordering::SeqCst), 0);
        // A burst over several seconds: one trim, once it has ended.
        for _ in 0..4 {
            for _ in 0..BURST * 2 {
                trim.released();
            }
            tokio::time::sleep(QUIET / 2).await;
            assert_eq!(trims.load(Ordering::SeqCst), 0);
        }
        tokio::time::sleep(QUIET * 5).await;
        assert_eq!(trims.load(Ordering::SeqCst), 1);
        // Quiet: no more.
        tokio::time::sleep(QUIET * 10).await;
        assert_eq!(trims.load(Ordering::SeqCst), 1);
        // The next burst: one more.
        for _ in 0..BURST {
            trim.released();
        }
        tokio::time::sleep(QUIET * 5).await;
        assert_eq!(trims.load(Ordering::SeqCst), 2);
        runner.abort();
    }
}
