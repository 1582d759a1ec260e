//! What a deploy reports while it runs, for the CLI's live display and the
//! control API's stream, and what it served, for the summary.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One step of a deploy, in the order they happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// The deploy began.
    Started {
        /// The service.
        service: String,
        /// The version being deployed.
        version: String,
        /// `rolling`, `blue_green` or `canary`.
        strategy: String,
        /// Instances (or targets) the new version will have.
        instances: usize,
    },
    /// A new instance or target passed its readiness check.
    Ready {
        /// Its address.
        address: String,
        /// Ready ones of the new version so far.
        ready: usize,
        /// Out of.
        of: usize,
    },
    /// A smoke check of a new instance passed.
    Smoke {
        /// The instance.
        address: String,
        /// The path requested.
        path: String,
        /// The status it answered.
        status: u16,
    },
    /// The share of traffic on the new version changed.
    Traffic {
        /// Percent of requests now sent to the new version.
        percent: u8,
    },
    /// A canary step was measured and passed its gates.
    Judged {
        /// The step's share of traffic.
        percent: u8,
        /// Requests the canary served in the step.
        canary_requests: u64,
        /// Its failed share.
        canary_error_rate: f64,
        /// Its p99, in milliseconds.
        canary_p99_ms: Option<f64>,
        /// The stable version's p99 over the same step, in milliseconds.
        stable_p99_ms: Option<f64>,
    },
    /// The old version is being drained and stopped.
    Draining {
        /// The version leaving.
        version: String,
    },
    /// A reload changed the number of instances.
    Scaling {
        /// The service.
        service: String,
        /// Instances before.
        from: usize,
        /// Instances wanted.
        to: usize,
    },
    /// The deploy failed and the old version is being put back.
    RollingBack {
        /// Why.
        reason: String,
    },
    /// A node of the cluster moved on with a cluster-wide deploy.
    Node {
        /// The node.
        node: String,
        /// `waiting` (for a slot of the cluster's bounds), `deploying`,
        /// `converged` or `failed`.
        state: String,
        /// The version it runs (or is deploying).
        version: String,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Where a deploy sends its progress: a channel to the client that asked,
/// or nowhere; and, before that, to an optional tap called on the
/// deploy's own task (so that what it records is there before the deploy
/// returns). Every report is also logged.
#[derive(Clone, Default)]
pub struct Reporter {
    tx: Option<mpsc::UnboundedSender<Progress>>,
    tap: Option<Tap>,
}

/// What a [`Reporter`] calls with each report before sending it.
type Tap = Arc<dyn Fn(&Progress) + Send + Sync>;

impl Reporter {
    /// Reports to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<Progress>) -> Reporter {
        Reporter {
            tx: Some(tx),
            tap: None,
        }
    }

    /// Reports nowhere (the log only).
    pub fn none() -> Reporter {
        Reporter::default()
    }

    /// Reports to `self`, each report first given to `tap` (then to the
    /// tap `self` had, if any).
    pub fn tapped(self, tap: impl Fn(&Progress) + Send + Sync + 'static) -> Reporter {
        let tap: Tap = match self.tap {
            None => Arc::new(tap),
            Some(before) => Arc::new(move |p: &Progress| {
                tap(p);
                before(p);
            }),
        };
        Reporter {
            tx: self.tx,
            tap: Some(tap),
        }
    }

    /// Reports `progress` (and logs it).
    pub fn send(&self, progress: Progress) {
        tracing::debug!(?progress, "deploy progress");
        if let Some(tap) = &self.tap {
            tap(&progress);
        }
        if let Some(tx) = &self.tx {
            // A client that went away does not stop the deploy.
            let _ = tx.send(progress);
        }
    }
}

/// The requests the proxy routed to a service during a deploy, as its
/// clients saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Requests that ended.
    pub requests: u64,
    /// Of which failed (5xx, or broken off).
    pub failures: u64,
    /// Their p99 latency, in milliseconds.
    pub p99_ms: Option<f64>,
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
