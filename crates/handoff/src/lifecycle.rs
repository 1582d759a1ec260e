//! The observable lifecycle of a server: starting → ready → draining →
//! stopped, published on a watch channel so callers (and tests) wait for a
//! phase instead of sleeping.

use tokio::sync::watch;

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Listeners are being set up.
    Starting,
    /// Accepting and serving.
    Ready,
    /// No longer accepting; finishing what is in flight.
    Draining,
    /// Everything is closed.
    Stopped,
}

/// The publishing side of a server's lifecycle.
#[derive(Debug)]
pub struct Lifecycle {
    tx: watch::Sender<Phase>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            tx: watch::Sender::new(Phase::Starting),
        }
    }
}

impl Lifecycle {
    /// A lifecycle in the `Starting` phase.
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }

    /// Moves to `phase` (phases only move forward).
    pub fn set(&self, phase: Phase) {
        self.tx.send_if_modified(|p| {
            let moved = phase > *p;
            if moved {
                *p = phase;
            }
            moved
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// A receiver that sees every later phase.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }
}
