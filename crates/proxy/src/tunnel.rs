//! Upgraded connections (WebSocket): after both sides agreed to switch
//! protocols, bytes are copied both ways until either side closes. Tunnels
//! are counted so a stopping proxy waits for them — up to its drain
//! deadline, then closes them.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use handoff::Drain;

/// The live tunnels of the proxy.
#[derive(Debug)]
pub(crate) struct Tunnels {
    drain: Drain,
    close: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            drain: Drain::new(),
            close: watch::Sender::new(false),
        }
    }
}

impl Tunnels {
    /// Joins the client's and the upstream's upgraded connections.
    pub(crate) fn spawn(&self, client: OnUpgrade, upstream: OnUpgrade) {
        let guard = self.drain.guard();
        let mut close = self.close.subscribe();
        tokio::spawn(async move {
            let _guard = guard;
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                }
                _ = close.wait_for(|c| *c) => tracing::debug!("tunnel closed by the drain deadline"),
            }
        });
    }

    /// How many tunnels are open.
    pub(crate) fn active(&self) -> usize {
        self.drain.active()
    }

    /// Waits for the tunnels to end by themselves until `deadline`, then
    /// closes what is left.
    pub(crate) async fn drain(&self, deadline: tokio::time::Instant) {
        if let handoff::DrainOutcome::DeadlineReached { remaining } =
            self.drain.wait(deadline).await
        {
            tracing::warn!(remaining, "closing tunnels at the drain deadline");
            self.close.send_replace(true);
        }
    }
}
