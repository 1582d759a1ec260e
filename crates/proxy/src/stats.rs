//! Handles on the request statistics the proxy measures, for the deploy
//! engine (canary judging, deploy summaries).
//!
//! Per member, the balancer's own counts (`balance::Stats`, every attempt
//! sent to the member, judged like passive health). Per pool, what the
//! clients saw: one count per request routed to the pool, whatever the
//! retries, recorded by the service and by the response body when it ends.
//! The handles are cheap to clone and never lock; they must never be
//! written through.

use std::sync::Arc;
use std::time::Duration;

use balance::{MemberHealth, Queue, QueueStats, Stats, StatsSnapshot};
use tokio::time::Instant;

/// The statistics of one pool member: every request the proxy sent to it,
/// across reloads, from the moment it was picked to the end of its
/// response body. A failure is a connect failure, a timeout, a 5xx or a
/// body that broke off; requests never sent, whose client went away, or
/// that the client broke itself (a malformed or abandoned request body)
/// are not counted. The handle stays valid after the member is removed from
/// the config (its counts then stop growing); a member removed and added
/// again starts from zero.
#[derive(Debug, Clone)]
pub struct MemberStats(pub(crate) Arc<MemberHealth>);

impl MemberStats {
    /// The counts now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.0.stats().snapshot()
    }

    /// Resolves once `done()` holds: checked now and each time a request
    /// to the member ends (and is counted).
    pub async fn until(&self, done: impl Fn() -> bool) {
        self.0.until(done).await;
    }
}

/// The statistics of one pool as its clients saw them: one request per
/// client request the routes sent to the pool (retries on other members
/// are inside it), across reloads.
///
/// A failure is a response of 500 or more — the upstream's, or the proxy's
/// own 502/503/504, the 503s of a pause included — or an upstream body that
/// broke off (or passed the pool's `total_timeout`). Latency runs from the
/// request reaching the pool (after routing, before a pause holds it) to
/// the end of the upstream's response body as the proxy read it, or to the
/// proxy's own answer (time spent in the pool's queue included). Requests
/// whose client went away before the end (while waiting, or in the middle
/// of its request body) are not counted; a malformed request body is the
/// proxy's 400, counted but not failed.
#[derive(Debug, Clone)]
pub struct PoolStats {
    pub(crate) stats: Arc<Stats>,
    pub(crate) queue: Arc<Queue>,
}

impl PoolStats {
    /// The counts now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The pool's queue now: requests waiting for a member's connection,
    /// and how many had to wait or were refused (full, timed out).
    pub fn queue(&self) -> QueueStats {
        self.queue.stats()
    }
}

/// A response on its way to a client, to be counted in its pool's stats
/// when it ends.
#[derive(Debug)]
pub(crate) struct PoolRecord {
    pub stats: Arc<Stats>,
    /// When the request reached the pool.
    pub entered: Instant,
    /// The status already makes it a failure.
    pub failed: bool,
}

impl PoolRecord {
    /// Counts the request as ended at `now`; `broken`: its body broke off.
    pub(crate) fn end(self, now: Instant, broken: bool) {
        let latency: Duration = now.saturating_duration_since(self.entered);
        self.stats.record(latency, self.failed || broken);
    }
}
