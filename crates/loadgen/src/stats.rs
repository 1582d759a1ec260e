//! The counters every worker writes into and every [`crate::Report`] is read from.
//!
//! Owns the run-wide shared state: the current [`Phase`], the request budget, the stop signal, and the tallies
//! behind one short-held lock. A request is recorded exactly once, when it has finished (answered, failed or
//! timed out); nothing here ever retries or discards a result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::{Notify, watch};

use crate::failure::Failure;
use crate::plan::{Plan, WorkerKind};
use crate::report::{LatencySummary, PhaseLatency, Report, WorkerTally};

/// How many failure descriptions a report keeps (the first ones).
pub(crate) const MAX_SAMPLES: usize = 20;

/// Which latency histogram a request belongs to, decided by the phase current when it *started*.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Normal operation.
    #[default]
    Steady,
    /// A deploy, reload or restart is in progress.
    Switching,
}

/// One finished request, as a worker hands it over.
pub(crate) struct Outcome<'a> {
    pub(crate) kind: WorkerKind,
    pub(crate) worker: usize,
    pub(crate) phase: Phase,
    pub(crate) started: Instant,
    pub(crate) plan: &'a Plan,
    /// `Some(instance header)` when a response head arrived.
    pub(crate) responded: Option<Option<String>>,
    /// Announced ends (WebSocket close 1001, clean end of an event stream, HTTP/2 GOAWAY) the request met and
    /// went on from.
    pub(crate) announced_ends: u32,
    pub(crate) result: Result<(), Failure>,
}

/// State shared by the [`crate::Load`] handle and its workers.
pub(crate) struct Shared {
    started: Instant,
    phase: AtomicU8,
    issued: AtomicU64,
    max_requests: Option<u64>,
    running: AtomicUsize,
    stop: watch::Sender<bool>,
    progress: Notify,
    ok: AtomicU64,
    tally: Mutex<Tally>,
}

struct Tally {
    requests: u64,
    ok: u64,
    failures: u64,
    by_kind: BTreeMap<String, u64>,
    samples: Vec<String>,
    instances: BTreeMap<String, u64>,
    workers: BTreeMap<String, WorkerTally>,
    steady: Histogram<u64>,
    switching: Histogram<u64>,
    finished: Option<Instant>,
}

impl Shared {
    pub(crate) fn new(workers: usize, max_requests: Option<u64>) -> Shared {
        // 1 µs .. 1 h at 3 significant digits; longer values saturate instead of being lost.
        let histogram =
            || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid static bounds");
        let now = Instant::now();
        Shared {
            started: now,
            phase: AtomicU8::new(0),
            issued: AtomicU64::new(0),
            max_requests,
            running: AtomicUsize::new(workers),
            stop: watch::Sender::new(workers == 0),
            progress: Notify::new(),
            ok: AtomicU64::new(0),
            tally: Mutex::new(Tally {
                requests: 0,
                ok: 0,
                failures: 0,
                by_kind: BTreeMap::new(),
                samples: Vec::new(),
                instances: BTreeMap::new(),
                workers: BTreeMap::new(),
                steady: histogram(),
                switching: histogram(),
                finished: (workers == 0).then_some(now),
            }),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Steady,
            _ => Phase::Switching,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Claims the right to start one more request; `false` once the request budget is spent.
    pub(crate) fn take_ticket(&self) -> bool {
        match self.max_requests {
            None => true,
            Some(max) => self.issued.fetch_add(1, Ordering::Relaxed) < max,
        }
    }

    /// Whether new requests must no longer start.
    pub(crate) fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Stops new requests from starting (in-flight ones finish) and wakes everyone waiting on progress.
    pub(crate) fn signal_stop(&self) {
        self.stop.send_replace(true);
        self.progress.notify_waiters();
    }

    /// A receiver that sees the stop signal, for interruptible pauses.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Called once by every worker as it exits; the last one freezes the report's elapsed time.
    pub(crate) fn worker_exited(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.lock().finished = Some(Instant::now());
            self.signal_stop();
        }
    }

    /// Resolves once `ok` has grown by `n`, or new requests have stopped. Returns whether `n` was reached.
    pub(crate) async fn wait_for_ok(&self, n: u64) -> bool {
        let target = self.ok.load(Ordering::Acquire).saturating_add(n);
        loop {
            let notified = self.progress.notified();
            let mut notified = std::pin::pin!(notified);
            // Register before checking, so a notification between the check and the await is not lost.
            notified.as_mut().enable();
            if self.ok.load(Ordering::Acquire) >= target {
                return true;
            }
            if self.stopped() {
                return false;
            }
            notified.await;
        }
    }

    /// Counts one finished request.
    pub(crate) fn record(&self, outcome: Outcome<'_>) {
        let latency = outcome.started.elapsed();
        let at = outcome.started.saturating_duration_since(self.started) + latency;
        let succeeded = outcome.result.is_ok();
        {
            let mut guard = self.lock();
            let tally = &mut *guard;
            tally.requests += 1;
            if let Some(instance) = outcome.responded {
                let name = instance.unwrap_or_else(|| "(none)".to_owned());
                *tally.instances.entry(name).or_default() += 1;
            }
            let worker = tally
                .workers
                .entry(outcome.kind.name().to_owned())
                .or_default();
            worker.requests += 1;
            worker.announced_ends += u64::from(outcome.announced_ends);
            match outcome.result {
                Ok(()) => {
                    worker.ok += 1;
                    tally.ok += 1;
                    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    match outcome.phase {
                        _ if !outcome.kind.measures_latency() => {}
                        Phase::Steady => tally.steady.saturating_record(micros),
                        Phase::Switching => tally.switching.saturating_record(micros),
                    }
                }
                Err(failure) => {
                    worker.failures += 1;
                    tally.failures += 1;
                    *tally.by_kind.entry(failure.kind.key()).or_default() += 1;
                    if tally.samples.len() < MAX_SAMPLES {
                        tally.samples.push(format!(
                            "+{:.3}s {}#{} {}: {}: {} (after {} ms)",
                            at.as_secs_f64(),
                            outcome.kind.name(),
                            outcome.worker,
                            outcome.plan.label(),
                            failure.kind,
                            failure.detail,
                            latency.as_millis(),
                        ));
                    }
                }
            }
        }
        if succeeded {
            self.ok.fetch_add(1, Ordering::Release);
            self.progress.notify_waiters();
        }
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> Report {
        let tally = self.lock();
        let elapsed = tally
            .finished
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started);
        let secs = elapsed.as_secs_f64();
        Report {
            requests: tally.requests,
            ok: tally.ok,
            failures: tally.failures,
            failures_by_kind: tally.by_kind.clone(),
            failure_samples: tally.samples.clone(),
            instances: tally.instances.clone(),
            workers: tally.workers.clone(),
            latency: PhaseLatency {
                steady: LatencySummary::of(&tally.steady),
                switching: LatencySummary::of(&tally.switching),
            },
            elapsed,
            requests_per_sec: if secs > 0.0 {
                tally.requests as f64 / secs
            } else {
                0.0
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tally> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that matters more than
        // losing the whole report would.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    fn outcome(result: Result<(), Failure>, phase: Phase) -> Outcome<'static> {
        static PLAN: std::sync::LazyLock<Plan> =
            std::sync::LazyLock::new(|| Plan::new(WorkerKind::Post, 1, 0, 0));
        Outcome {
            kind: WorkerKind::Post,
            worker: 1,
            phase,
            started: Instant::now(),
            plan: &PLAN,
            responded: Some(Some("v1".into())),
            announced_ends: 0,
            result,
        }
    }

    #[test]
    fn records_each_request_once_in_the_right_place() {
        let shared = Shared::new(1, None);
        shared.record(outcome(Ok(()), Phase::Steady));
        shared.record(outcome(Ok(()), Phase::Switching));
        shared.record(outcome(
            Err(Failure::new(FailureKind::Status(503), "status 503")),
            Phase::Switching,
        ));
        let mut timeout = outcome(
            Err(Failure::new(FailureKind::Timeout, "slow")),
            Phase::Steady,
        );
        timeout.responded = None;
        shared.record(timeout);

        let report = shared.snapshot();
        assert_eq!((report.requests, report.ok, report.failures), (4, 2, 2));
        assert_eq!(report.failures_by_kind["status_503"], 1);
        assert_eq!(report.failures_by_kind["timeout"], 1);
        assert_eq!(report.instances["v1"], 3);
        assert_eq!(
            report.workers["post"],
            WorkerTally {
                requests: 4,
                ok: 2,
                failures: 2,
                announced_ends: 0,
            }
        );
        assert_eq!(
            (report.latency.steady.count, report.latency.switching.count),
            (1, 1)
        );
        assert!(
            report.failure_samples[0].contains("post#1 POST /echo (1 B): status_503: status 503")
        );
    }

    #[test]
    fn keeps_only_the_first_samples() {
        let shared = Shared::new(1, None);
        for i in 0..MAX_SAMPLES + 5 {
            shared.record(outcome(
                Err(Failure::new(FailureKind::Reset, format!("n{i}"))),
                Phase::Steady,
            ));
        }
        let report = shared.snapshot();
        assert_eq!(report.failure_samples.len(), MAX_SAMPLES);
        assert!(report.failure_samples[0].contains("n0 "));
        assert_eq!(report.failures, MAX_SAMPLES as u64 + 5);
    }

    #[test]
    fn the_request_budget_is_exact() {
        let shared = Shared::new(1, Some(3));
        let granted = (0..10).filter(|_| shared.take_ticket()).count();
        assert_eq!(granted, 3);
        assert!(Shared::new(1, None).take_ticket());
    }

    #[test]
    fn the_last_worker_to_exit_stops_the_run() {
        let shared = Shared::new(2, None);
        shared.worker_exited();
        assert!(!shared.stopped());
        shared.worker_exited();
        assert!(shared.stopped());
    }
}
