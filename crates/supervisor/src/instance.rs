//! One running instance: a task that owns the process (a child we spawned,
//! or one adopted through its pidfd), reports when it becomes ready or
//! exits, and stops it on request — SIGTERM to the process, then SIGKILL to
//! its whole process group at the drain deadline. It decides nothing; the
//! group tells it what to do. Detached (while another baton takes the
//! instances over), it only reports the exit: even the group's end does not
//! stop it.

#![allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]

use std::process::ExitStatus;
use std::time::Duration;

use std::net::SocketAddr;

use handoff::time::SaturatingAdd;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::adopt::PidFd;
use crate::notify_socket::{Notice, NotifySocket};
use crate::sockets::{InstanceInfo, Probe, ReadyHook, StopHook};

/// How an instance proves it is ready.
#[derive(Debug)]
pub(crate) enum ReadyProbe {
    /// Waits for `READY=1` on this socket.
    Notify(NotifySocket),
    /// Ready at this instant if still running.
    At(Instant),
    /// Ready after enough probes of its address pass in a row.
    Http {
        addr: SocketAddr,
        probe: Probe,
        passes: u32,
        next: Instant,
    },
    /// Never ready (its notify socket failed).
    Never,
}

/// Orders from the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Graceful stop: SIGTERM, SIGKILL at the deadline.
    Stop { drain_timeout: Duration },
    /// SIGKILL now.
    Kill,
    /// Another process takes the instance over: stop nothing, not even when
    /// the group is gone; only report the exit.
    Detach,
    /// Supervised by us again (the takeover failed).
    Attach,
}

/// The process of an instance.
#[derive(Debug)]
pub(crate) enum Process {
    /// Our child: `wait` reaps it and knows how it ended.
    Child(Child),
    /// Started by another baton: its exit is seen, its status is not.
    Adopted(PidFd),
}

impl Process {
    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            Process::Child(c) => c.id(),
            Process::Adopted(p) => Some(p.pid()),
        }
    }

    async fn wait(&mut self) -> Option<ExitStatus> {
        match self {
            Process::Child(c) => c.wait().await.ok(),
            Process::Adopted(p) => {
                p.exited().await;
                None
            }
        }
    }

    fn terminate(&self, pid: u32) {
        match self {
            Process::Child(_) => signal(pid, libc::SIGTERM),
            Process::Adopted(p) => p.signal(rustix::process::Signal::TERM),
        }
    }

    fn kill_group(&self, pid: u32) {
        match self {
            Process::Child(_) => kill_group(pid),
            Process::Adopted(p) => p.kill_group(),
        }
    }
}

/// What an instance reports, tagged with its id by the group's channel.
#[derive(Debug)]
pub(crate) enum Report {
    Ready,
    NotReadyInTime,
    Exited {
        status: Option<ExitStatus>,
        /// SIGKILL was needed (drain deadline or an explicit kill).
        killed: bool,
    },
}

pub(crate) struct InstanceTask {
    pub id: u64,
    pub info: InstanceInfo,
    pub process: Process,
    /// Adopted as ready already.
    pub ready: bool,
    pub probe: ReadyProbe,
    pub ready_timeout: Duration,
    pub after_ready: Option<ReadyHook>,
    pub before_stop: Option<StopHook>,
    pub orders: mpsc::UnboundedReceiver<Order>,
    pub reports: mpsc::UnboundedSender<(u64, Report)>,
}

impl InstanceTask {
    pub(crate) async fn run(mut self) {
        let pid = self.process.id();
        let ready_deadline = Instant::now().saturating_add(self.ready_timeout);
        let mut ready = self.ready;
        if ready {
            // Adopted as ready: through the ready hook (into a pool, say)
            // before the group counts it, as a new instance is.
            if let Some(hook) = &self.after_ready {
                hook(self.info).await;
            }
            self.report(Report::Ready);
        }
        let mut timed_out = false;
        let mut detached = false;
        let mut orders_open = true;
        let order = loop {
            tokio::select! {
                status = self.process.wait() => {
                    self.report(Report::Exited { status, killed: false });
                    return;
                }
                r = self.probe.wait(), if !ready => {
                    match r {
                        Ok(()) => {
                            ready = true;
                            if let Some(hook) = &self.after_ready {
                                hook(self.info).await;
                            }
                            self.report(Report::Ready);
                        }
                        Err(e) => {
                            tracing::warn!(instance = self.id, error = %e, "notify socket failed");
                            self.probe = ReadyProbe::Never;
                        }
                    }
                }
                _ = tokio::time::sleep_until(ready_deadline), if !ready && !timed_out && !detached => {
                    timed_out = true;
                    self.report(Report::NotReadyInTime);
                }
                order = self.orders.recv(), if orders_open => match order {
                    Some(Order::Detach) => detached = true,
                    Some(Order::Attach) => detached = false,
                    Some(order) => break order,
                    // Another baton owns it now: only its exit matters.
                    None if detached => orders_open = false,
                    // The group is gone: nobody owns this instance any more.
                    None => break Order::Kill,
                },
            }
        };
        if let (true, Some(hook), Order::Stop { drain_timeout }) = (ready, &self.before_stop, order)
        {
            // Stop routing to it before it is told to stop: an instance that
            // gets SIGTERM while requests still go to it refuses them.
            if tokio::time::timeout(drain_timeout, hook(self.info))
                .await
                .is_err()
            {
                tracing::warn!(
                    instance = self.id,
                    "stop hook did not finish within the drain timeout"
                );
            }
        }
        let killed = self.stop(pid, order).await;
        let status = self.process.wait().await;
        self.report(Report::Exited { status, killed });
    }

    /// Stops the process; returns whether SIGKILL was needed.
    async fn stop(&mut self, pid: Option<u32>, mut order: Order) -> bool {
        let Some(pid) = pid else { return false };
        loop {
            match order {
                // Not sent once stopping; nothing to stop if they were.
                Order::Detach | Order::Attach => return false,
                Order::Kill => {
                    self.process.kill_group(pid);
                    return true;
                }
                Order::Stop { drain_timeout } => {
                    self.process.terminate(pid);
                    let deadline = Instant::now().saturating_add(drain_timeout);
                    tokio::select! {
                        _ = self.process.wait() => return false,
                        _ = tokio::time::sleep_until(deadline) => {
                            tracing::warn!(instance = self.id, pid, "drain deadline reached, sending SIGKILL");
                            order = Order::Kill;
                        }
                        next = self.orders.recv() => {
                            order = next.unwrap_or(Order::Kill);
                            if let Order::Stop { .. } | Order::Detach | Order::Attach = order {
                                // Already stopping; a second stop changes nothing.
                                order = Order::Stop { drain_timeout: deadline.saturating_duration_since(Instant::now()) };
                            }
                        }
                    }
                }
            }
        }
    }

    fn report(&self, report: Report) {
        let _ = self.reports.send((self.id, report));
    }
}

impl ReadyProbe {
    async fn wait(&mut self) -> std::io::Result<()> {
        match self {
            ReadyProbe::At(at) => {
                tokio::time::sleep_until(*at).await;
                Ok(())
            }
            ReadyProbe::Never => std::future::pending().await,
            ReadyProbe::Http {
                addr,
                probe,
                passes,
                next,
            } => loop {
                tokio::time::sleep_until(*next).await;
                let ok = (probe.check)(*addr).await;
                *next = Instant::now().saturating_add(probe.interval);
                *passes = if ok { *passes + 1 } else { 0 };
                if *passes >= probe.successes.max(1) {
                    return Ok(());
                }
            },
            ReadyProbe::Notify(sock) => loop {
                for notice in sock.recv().await? {
                    match notice {
                        Notice::Ready => return Ok(()),
                        Notice::Status(s) => tracing::debug!(status = %s, "instance status"),
                        Notice::Stopping => {}
                    }
                }
            },
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our own
    // child that has not been reaped yet (we reap it only through `wait`), so
    // the number cannot have been reused by another process.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn kill_group(pid: u32) {
    // The instance leads its own process group (spawned with process_group(0)),
    // so this also reaches anything it started.
    // SAFETY: as in `signal`; a negative pid addresses the process group.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}
