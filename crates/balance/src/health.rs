//! The health of one upstream member, shared by every snapshot that contains
//! it.
//!
//! Owns the availability flags (active health, passive ejection), the
//! in-flight count, the request statistics, the counts of what went wrong
//! (connect failures, retries, ejections: `Troubles`), the passive state and the watch
//! channel announcing availability changes, and wakes whoever waits for its
//! requests to end (`until`). Reads on the request path are atomic loads; every
//! change of availability goes through the watch channel's lock so that the
//! atomics and the published value never disagree.
//!
//! It must never pick members, perform I/O or read the clock: every
//! time-dependent call takes `now`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use handoff::time::SaturatingAdd;

use crate::passive::{Outcome, PassiveConfig, PassiveState, PassiveTransition};
use crate::stats::Stats;

/// What the availability watch publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// The active checks (or whoever calls [`MemberHealth::set_healthy`])
    /// consider the member healthy.
    pub healthy: bool,
    /// The member is passively ejected. The end of an ejection is observed
    /// lazily, at the next availability check of the member.
    pub ejected: bool,
}

impl Availability {
    /// Healthy and not ejected.
    pub fn is_available(self) -> bool {
        self.healthy && !self.ejected
    }
}

/// Everything known about a member's health, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// The active health flag.
    pub healthy: bool,
    /// The end of the current passive ejection, if any.
    pub ejected_until: Option<Instant>,
    /// Passive ejections in a row since the last success.
    pub ejections: u32,
    /// Failed requests in a row since the last success or ejection.
    pub passive_streak: u32,
    /// Successful probes in a row (active checks).
    pub active_successes: u32,
    /// Failed probes in a row (active checks).
    pub active_failures: u32,
    /// Requests currently sent to the member, across all snapshots.
    pub in_flight: usize,
}

/// What another process needs to go on judging a member where this one
/// stopped (an upgrade of baton): the active flag and streaks, the passive
/// streak, the ejections in a row and what is left of the current ejection.
/// Durations, not instants: an [`Instant`] means nothing in another process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedHealth {
    /// The active health flag.
    pub healthy: bool,
    /// Successful probes in a row.
    pub active_successes: u32,
    /// Failed probes in a row.
    pub active_failures: u32,
    /// Failed requests in a row (passive).
    pub passive_streak: u32,
    /// Passive ejections in a row since the last success.
    pub ejections: u32,
    /// What is left of the current passive ejection, if any.
    pub ejected_for: Option<std::time::Duration>,
}

/// The health of one member, `Arc`-shared across configuration snapshots.
#[derive(Debug)]
pub struct MemberHealth {
    /// Origin of `ejected_until`, which is stored as nanoseconds after it.
    epoch: Instant,
    healthy: AtomicBool,
    /// End of the current ejection in nanoseconds after `epoch`; 0 = none.
    ejected_until: AtomicU64,
    in_flight: AtomicUsize,
    active_successes: AtomicU32,
    active_failures: AtomicU32,
    /// Streaks carried in from another process, for the active checker to
    /// take at its next probe ([`carry_in`](Self::carry_in)).
    carried_streaks: Mutex<Option<(u32, u32)>>,
    passive: Mutex<PassiveState>,
    /// Mirrors [`PassiveState::is_at_rest`] so that a success (the common
    /// case) needs no lock.
    passive_at_rest: AtomicBool,
    availability: watch::Sender<Availability>,
    stats: Stats,
    /// Wakes [`until`](Self::until) when a request to the member ends.
    ended: Notify,
    /// Tasks in [`until`](Self::until); while there are none, a request
    /// that ends pays one atomic load for it, never a wake-up.
    watchers: AtomicUsize,
    /// Written only when something goes wrong: a success never touches
    /// them.
    connect_failures: AtomicU64,
    retries: AtomicU64,
    ejections: AtomicU64,
}

/// What went wrong with a member since it was added, for a scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Troubles {
    /// Connections to it that could not be opened.
    pub connect_failures: u64,
    /// Attempts on it that failed before anything was answered and were
    /// sent again (to another member, or to it on a fresh connection).
    pub retries: u64,
    /// Times passive health ejected it.
    pub ejections: u64,
}

impl MemberHealth {
    /// A member with no history. New instances behind active checks should
    /// start unhealthy, so that no request reaches them before they pass
    /// `healthy_threshold` probes.
    pub fn new(initially_healthy: bool) -> Arc<MemberHealth> {
        let (availability, _) = watch::channel(Availability {
            healthy: initially_healthy,
            ejected: false,
        });
        Arc::new(MemberHealth {
            epoch: Instant::now(),
            healthy: AtomicBool::new(initially_healthy),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            active_successes: AtomicU32::new(0),
            active_failures: AtomicU32::new(0),
            carried_streaks: Mutex::new(None),
            passive: Mutex::new(PassiveState::new()),
            passive_at_rest: AtomicBool::new(true),
            availability,
            stats: Stats::new(),
            ended: Notify::new(),
            watchers: AtomicUsize::new(0),
            connect_failures: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
        })
    }

    /// Healthy and not ejected at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.is_ejected(now)
    }

    /// When the current passive ejection ends, if one was published and not
    /// yet observed as ended.
    pub fn ejected_until(&self) -> Option<Instant> {
        let until = self.ejected_until.load(Ordering::Acquire);
        (until != 0).then(|| self.epoch + std::time::Duration::from_nanos(until))
    }

    /// The active health flag.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether the member is passively ejected at `now`. Observing the end
    /// of an ejection publishes it on the availability watch (once).
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        if self.offset(now) < until {
            return true;
        }
        self.availability.send_if_modified(|published| {
            // Inside the watch's lock, so a concurrent new ejection either
            // happened before (the exchange fails) or waits for us.
            let ended = self
                .ejected_until
                .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if ended {
                published.ejected = false;
            }
            ended
        });
        false
    }

    /// Sets the active health flag; returns whether it changed. The active
    /// checker is its only writer when checks are configured; without them,
    /// the control plane may set it.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.availability.send_if_modified(|published| {
            let before = self.healthy.swap(healthy, Ordering::AcqRel);
            published.healthy = healthy;
            before != healthy
        })
    }

    /// A receiver of availability changes: it fires when the member becomes
    /// unavailable (the proxy then closes its pooled idle connections to it)
    /// and when it becomes available again.
    pub fn subscribe(&self) -> watch::Receiver<Availability> {
        self.availability.subscribe()
    }

    /// Requests currently sent to the member, across all snapshots.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests that ended at this member, across snapshots: every
    /// [`Picked::report`](crate::Picked::report) except
    /// [`Outcome::Cancelled`] (and a `Picked` dropped unreported), with the
    /// latency from the pick to the report.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Everything known about the member at `now`.
    pub fn snapshot(&self, now: Instant) -> HealthSnapshot {
        let passive = self.passive.lock().unwrap_or_else(PoisonError::into_inner);
        HealthSnapshot {
            healthy: self.is_healthy(),
            ejected_until: passive.ejected_until(now),
            ejections: passive.ejections(),
            passive_streak: passive.streak(),
            active_successes: self.active_successes.load(Ordering::Relaxed),
            active_failures: self.active_failures.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
        }
    }

    /// The member's health at `now`, for another process to
    /// [`carry_in`](Self::carry_in).
    pub fn carry_out(&self, now: Instant) -> CarriedHealth {
        let s = self.snapshot(now);
        CarriedHealth {
            healthy: s.healthy,
            active_successes: s.active_successes,
            active_failures: s.active_failures,
            passive_streak: s.passive_streak,
            ejections: s.ejections,
            ejected_for: s
                .ejected_until
                .map(|until| until.saturating_duration_since(now)),
        }
    }

    /// Takes over what another process knew of the member at `now`: the
    /// flag (only when `active_checks`: without checks nothing would ever
    /// set it again), the streaks (the active checker resumes from them at
    /// its next probe), the passive streak and backoff, and the rest of the
    /// current ejection, published like one of this process's own.
    pub fn carry_in(&self, carried: &CarriedHealth, now: Instant, active_checks: bool) {
        if active_checks {
            *self
                .carried_streaks
                .lock()
                .unwrap_or_else(PoisonError::into_inner) =
                Some((carried.active_successes, carried.active_failures));
            self.set_active_streaks(carried.active_successes, carried.active_failures);
            self.set_healthy(carried.healthy);
        }
        let until = carried.ejected_for.map(|d| now.saturating_add(d));
        let mut passive = self.passive.lock().unwrap_or_else(PoisonError::into_inner);
        *passive = PassiveState::resumed(carried.passive_streak, carried.ejections, until);
        self.passive_at_rest
            .store(passive.is_at_rest(), Ordering::Release);
        if let Some(until) = until {
            let until = self.offset(until).max(1);
            self.availability.send_modify(|published| {
                self.ejected_until.store(until, Ordering::Release);
                published.ejected = true;
            });
        }
    }

    /// The streaks carried in since the active checker last looked.
    pub(crate) fn take_carried_streaks(&self) -> Option<(u32, u32)> {
        self.carried_streaks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Counts one more request in flight unless `max` are already (0 = no
    /// limit). Atomic, so concurrent picks never exceed the limit.
    pub(crate) fn try_acquire(&self, max: usize) -> bool {
        if max == 0 {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Ends a request counted by [`try_acquire`](Self::try_acquire).
    pub(crate) fn release(&self) {
        // `SeqCst` here and in `until`: either the watcher sees the count
        // drop, or this sees the watcher and wakes it.
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.ended.notify_waiters();
        }
    }

    /// Resolves once `done()` holds: checked now, and again each time a
    /// request to the member ends (its in-flight count and its
    /// [`stats`](Self::stats) already count it then). For waiting on a
    /// member's requests without polling.
    pub async fn until(&self, done: impl Fn() -> bool) {
        struct Watching<'a>(&'a AtomicUsize);
        impl Drop for Watching<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let _watching = Watching(&self.watchers);
        loop {
            // Registered before the check: an end between the two wakes it.
            let ended = self.ended.notified();
            std::sync::atomic::fence(Ordering::SeqCst);
            if done() {
                return;
            }
            ended.await;
        }
    }

    /// Whether the member has room for one more request (0 = no limit).
    pub(crate) fn has_room(&self, max: usize) -> bool {
        max == 0 || self.in_flight() < max
    }

    /// Mirrors the active checker's streaks, for the admin API.
    pub(crate) fn set_active_streaks(&self, successes: u32, failures: u32) {
        self.active_successes.store(successes, Ordering::Relaxed);
        self.active_failures.store(failures, Ordering::Relaxed);
    }

    /// Applies a request outcome to the passive state and publishes an
    /// ejection. A success on a member at rest takes no lock.
    pub(crate) fn record_passive(
        &self,
        outcome: Outcome,
        now: Instant,
        config: &PassiveConfig,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<PassiveTransition> {
        if !outcome.is_failure() && self.passive_at_rest.load(Ordering::Acquire) {
            return None;
        }
        let mut passive = self.passive.lock().unwrap_or_else(PoisonError::into_inner);
        let transition = passive.record(outcome, now, config, may_eject);
        self.passive_at_rest
            .store(passive.is_at_rest(), Ordering::Release);
        if let Some(PassiveTransition::Ejected { until, .. }) = transition {
            self.ejections.fetch_add(1, Ordering::Relaxed);
            let until = self.offset(until).max(1);
            // Always announced, even if an earlier ejection has not been
            // observed as ended: connections may have been opened meanwhile.
            self.availability.send_modify(|published| {
                self.ejected_until.store(until, Ordering::Release);
                published.ejected = true;
            });
        }
        transition
    }

    /// Counts a connection to the member that could not be opened.
    pub fn count_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt on the member that failed and was sent again.
    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// What went wrong with the member so far.
    pub fn troubles(&self) -> Troubles {
        Troubles {
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }

    /// Nanoseconds from `epoch` to `at` (0 for instants before it).
    fn offset(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `until` wakes on the request that makes its condition true, not
    /// before, and stops costing the request path once it returns.
    #[tokio::test]
    async fn until_wakes_when_requests_end() {
        let member = MemberHealth::new(true);
        assert!(member.try_acquire(0) && member.try_acquire(0));
        let waiter = tokio::spawn({
            let member = member.clone();
            async move { member.until(|| member.in_flight() == 0).await }
        });
        // Let it check (2 in flight) and wait.
        tokio::task::yield_now().await;
        assert_eq!(member.watchers.load(Ordering::SeqCst), 1);
        member.release();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        member.release();
        waiter.await.unwrap();
        assert_eq!(member.watchers.load(Ordering::SeqCst), 0);
        // Already true: returns at once.
        member.until(|| true).await;
    }

    /// What one process knew (flag, streaks, backoff, the rest of an
    /// ejection) is what the next one starts from, whatever its clock.
    #[test]
    fn carried_health_goes_on_where_it_stopped() {
        let config = PassiveConfig {
            consecutive_failures: 2,
            ejection_time: std::time::Duration::from_secs(10),
            max_ejection_time: std::time::Duration::from_secs(60),
        };
        let old = MemberHealth::new(true);
        let t0 = Instant::now();
        for _ in 0..2 {
            old.record_passive(Outcome::ServerError, t0, &config, || true);
        }
        old.set_healthy(false);
        old.set_active_streaks(1, 0);
        let later = t0 + std::time::Duration::from_secs(4);
        let carried = old.carry_out(later);
        assert_eq!(
            carried,
            CarriedHealth {
                healthy: false,
                active_successes: 1,
                active_failures: 0,
                passive_streak: 0,
                ejections: 1,
                ejected_for: Some(std::time::Duration::from_secs(6)),
            }
        );

        let new = MemberHealth::new(true);
        let now = Instant::now() + std::time::Duration::from_secs(100);
        new.carry_in(&carried, now, true);
        assert!(!new.is_healthy());
        assert!(new.subscribe().borrow().ejected);
        assert!(new.is_ejected(now + std::time::Duration::from_secs(5)));
        assert!(!new.is_ejected(now + std::time::Duration::from_secs(6)));
        assert_eq!(new.take_carried_streaks(), Some((1, 0)));
        assert_eq!(new.take_carried_streaks(), None);
        // The backoff goes on: the next ejection is the second in a row.
        let after = now + std::time::Duration::from_secs(7);
        let mut next = None;
        for _ in 0..2 {
            next = new.record_passive(Outcome::ServerError, after, &config, || true);
        }
        assert!(
            matches!(next, Some(PassiveTransition::Ejected { ejection: 2, .. })),
            "{next:?}"
        );

        // Without active checks nothing would set the flag again: it stays.
        let unchecked = MemberHealth::new(true);
        unchecked.carry_in(&carried, now, false);
        assert!(unchecked.is_healthy());
        assert_eq!(unchecked.take_carried_streaks(), None);
    }
}
