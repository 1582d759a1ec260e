//! The [`Load`] handle: starts the workers, exposes progress, and stops them.
//!
//! Owns the run's lifecycle: running → stopping (no new requests; on [`Load::stop`], at `max_duration`, when the
//! request budget is spent, or when the handle is dropped) → stopped (every worker has exited). It never cancels
//! a request in flight; those end on their own, within the request timeout.

use std::sync::Arc;

use http::HeaderValue;
use tokio::task::JoinHandle;

use crate::config::LoadConfig;
use crate::plan::WorkerKind;
use crate::report::Report;
use crate::stats::{Phase, Shared};
use crate::worker::{self, Settings};

/// A running load. Dropping it stops new requests from starting, like [`Load::stop`] without waiting.
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the workers of `cfg` as tasks on the current tokio runtime and returns at once.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if `cfg` fails [`LoadConfig::validate`] (a configuration built in code is a
    /// programming error; the `baton-load` binary validates before starting).
    pub fn start(cfg: LoadConfig) -> Load {
        if let Err(problem) = cfg.validate() {
            panic!("invalid load configuration: {problem}");
        }
        let shared = Arc::new(Shared::new(cfg.total_workers(), cfg.max_requests));
        let settings = Arc::new(Settings {
            target: cfg.target,
            host: HeaderValue::try_from(cfg.host()).expect("validated"),
            slow_ms: cfg.slow_ms,
            sse_interval_ms: cfg.sse_interval_ms,
            request_timeout: cfg.request_timeout,
            pace: cfg.pace,
        });
        let kinds = [
            (WorkerKind::KeepAlive, cfg.keepalive_workers),
            (WorkerKind::Fresh, cfg.fresh_workers),
            (WorkerKind::Post, cfg.post_workers),
            (WorkerKind::Slow, cfg.slow_workers),
            (WorkerKind::WebSocket, cfg.websocket_workers),
            (WorkerKind::Sse, cfg.sse_workers),
            (WorkerKind::H2, cfg.h2_workers),
        ];
        let workers = kinds
            .into_iter()
            .flat_map(|(kind, count)| (0..count).map(move |index| (kind, index)))
            .map(|(kind, index)| {
                tokio::spawn(worker::run(kind, index, settings.clone(), shared.clone()))
            })
            .collect();

        let deadline = shared.clone();
        let mut stop = shared.stop_signal();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(cfg.max_duration) => deadline.signal_stop(),
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
        Load { shared, workers }
    }

    /// Sets the phase that requests starting from now on are attributed to (for latency).
    pub fn set_phase(&self, phase: Phase) {
        self.shared.set_phase(phase);
    }

    /// The phase new requests are attributed to.
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    /// The counts so far, without stopping anything.
    pub fn snapshot(&self) -> Report {
        self.shared.snapshot()
    }

    /// Whether new requests have stopped starting (stop requested, `max_duration` or `max_requests` reached).
    pub fn is_stopping(&self) -> bool {
        self.shared.stopped()
    }

    /// Resolves once at least `n` more requests have *succeeded* since the call, so a test can wait for traffic
    /// to flow instead of sleeping. Resolves early, returning `false`, if the load stops starting new requests.
    pub async fn wait_for_requests(&self, n: u64) -> bool {
        self.shared.wait_for_ok(n).await
    }

    /// Resolves once no new requests will start: by [`Load::stop`], `max_duration` or `max_requests`.
    pub async fn stopping(&self) {
        let mut stop = self.shared.stop_signal();
        // The sender lives in `shared`, which `self` keeps alive, so this cannot fail.
        let _ = stop.wait_for(|stopped| *stopped).await;
    }

    /// Stops new requests from starting, waits for those in flight (each bounded by the request timeout), and
    /// returns the final report.
    ///
    /// # Panics
    ///
    /// Re-raises the panic of a worker task, which would be a bug in this crate.
    pub async fn stop(mut self) -> Report {
        self.shared.signal_stop();
        for handle in std::mem::take(&mut self.workers) {
            if let Err(error) = handle.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
        self.shared.snapshot()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.signal_stop();
    }
}
