//! The shutdown trigger: SIGTERM or SIGINT. The handlers are installed when
//! [`ShutdownSignals`] is created, so a signal that arrives before anyone
//! awaits it is not lost, and the same handlers see a second signal (which
//! the HTTP server takes as "stop draining, close now").

use std::future::Future;
use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// Which signal asked us to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: the process manager asks for a graceful stop.
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
}

/// Installed SIGTERM and SIGINT handlers.
#[derive(Debug)]
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Must be called within a tokio runtime.
    pub fn install() -> io::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT (including one that arrived
    /// since the handlers were installed).
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        }
    }
}

/// Installs SIGTERM and SIGINT handlers and returns a future that resolves
/// with the first of them to arrive.
///
/// Must be called within a tokio runtime.
pub fn shutdown_signal() -> io::Result<impl Future<Output = Signal> + Send + 'static> {
    let mut signals = ShutdownSignals::install()?;
    Ok(async move { signals.recv().await })
}
