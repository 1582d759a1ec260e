//! The shutdown trigger: a future that resolves on SIGTERM or SIGINT.
//! The handlers are installed when the future is created, so a signal that
//! arrives before anyone awaits it is not lost.

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

/// Installs SIGTERM and SIGINT handlers and returns a future that resolves
/// with the first of them to arrive.
///
/// Must be called within a tokio runtime.
pub fn shutdown_signal() -> io::Result<impl Future<Output = Signal> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        }
    })
}
