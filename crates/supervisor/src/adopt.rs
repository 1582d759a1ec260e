//! Instances this process did not start: those of the baton it replaced (an
//! upgrade), or of one that died (a crash). They are not our children, so
//! `waitpid` cannot see them; a pidfd can. It refers to one process for good
//! (a pid can be reused the moment a process is reaped, a pidfd cannot), it
//! becomes readable when that process exits, and signals sent through it
//! reach that process or nobody.
//!
//! A pid read from a record may already name another process, so the pidfd
//! is opened first and the process's start time (`/proc/PID/stat`, field 22,
//! in clock ticks since boot) is compared with the recorded one after: if
//! they match, the pidfd is the recorded process and stays so.
//!
//! Who reaps an adopted instance: its parent (the old baton, while it runs)
//! or, once that parent is gone, the nearest subreaper or init. Its exit
//! status is therefore unknown here: it counts as a failure for the restart
//! policy.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;

/// What the supervisor knows of a running instance: enough for another
/// process to take it over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Adopted {
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat`), which tells it from a later
    /// process with the same pid.
    pub start_time: u64,
    /// Its own address (per-instance sockets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// It had reported ready.
    pub ready: bool,
}

/// Why an instance could not be adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// No process has that pid any more.
    #[error("pid {0} is gone")]
    Gone(u32),
    /// The pid belongs to a process started since.
    #[error("pid {pid} is another process now (started at {found}, not {recorded})")]
    Reused {
        /// The pid.
        pid: u32,
        /// The recorded start time.
        recorded: u64,
        /// The start time found.
        found: u64,
    },
    /// The OS refused.
    #[error("could not watch pid {pid}: {source}")]
    Io {
        /// The pid.
        pid: u32,
        /// The cause.
        source: io::Error,
    },
}

/// A process watched through its pidfd.
#[derive(Debug)]
pub(crate) struct PidFd {
    fd: AsyncFd<OwnedFd>,
    pid: u32,
}

impl PidFd {
    /// Opens the process `pid` if it is still the one started at
    /// `start_time`. Must be called within a tokio runtime.
    pub(crate) fn open(pid: u32, start_time: u64) -> Result<PidFd, AdoptError> {
        let fd = open_verified(pid, start_time)?;
        // Deprecated because an arbitrary `AsRawFd` may close or swap its
        // descriptor while registered; an `OwnedFd` owned by the `AsyncFd`
        // cannot, which is the condition the unsafe replacement states. So
        // no `unsafe` block is needed here.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
            .map_err(|source| AdoptError::Io { pid, source })?;
        Ok(PidFd { fd, pid })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves once the process has exited.
    pub(crate) async fn exited(&self) {
        // A pidfd polls readable when its process has exited, and stays so.
        if let Err(e) = self.fd.readable().await {
            tracing::warn!(pid = self.pid, error = %e, "could not poll a pidfd; the instance counts as exited");
        }
    }

    /// Sends `signal` to the process (nothing if it has exited).
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = rustix::process::pidfd_send_signal(&self.fd, signal);
    }

    /// SIGKILL to the process and, while it is alive, to its process group
    /// (it leads one: instances are spawned with their own group).
    pub(crate) fn kill_group(&self) {
        let alive = rustix::process::pidfd_send_signal(&self.fd, Signal::KILL).is_ok();
        if alive && let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
    }
}

/// Stops a recorded instance, if it is still that process: SIGTERM, then,
/// if it has not exited within `grace`, SIGKILL to it and its process
/// group. Resolves once it has exited; returns whether SIGKILL was needed.
/// Must be called within a tokio runtime.
pub async fn stop(adopted: &Adopted, grace: std::time::Duration) -> Result<bool, AdoptError> {
    let process = PidFd::open(adopted.pid, adopted.start_time)?;
    process.signal(Signal::TERM);
    if tokio::time::timeout(grace, process.exited()).await.is_ok() {
        return Ok(false);
    }
    tracing::warn!(
        pid = adopted.pid,
        grace_ms = grace.as_millis(),
        "a handed-over instance outlived its grace after SIGTERM: SIGKILL"
    );
    process.kill_group();
    process.exited().await;
    Ok(true)
}

/// A pidfd of process `pid` if it is still the one started at
/// `start_time`.
fn open_verified(pid: u32, start_time: u64) -> Result<OwnedFd, AdoptError> {
    let gone = || AdoptError::Gone(pid);
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(gone)?;
    let fd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Err(gone()),
        Err(e) => {
            return Err(AdoptError::Io {
                pid,
                source: e.into(),
            });
        }
    };
    // Read after the pidfd exists: a match means the pidfd holds the
    // recorded process (had the pid been reused in between, the start time
    // would be the newer process's).
    let found = start_time_of(pid).map_err(|_| gone())?;
    if found != start_time {
        return Err(AdoptError::Reused {
            pid,
            recorded: start_time,
            found,
        });
    }
    Ok(fd)
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`).
pub fn start_time_of(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat"))
}

/// Field 22 of a `stat` line. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses: fields are counted after
/// the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (the state).
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("12 (x) S 1"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
        let mine = start_time_of(std::process::id()).unwrap();
        assert!(mine > 0);
    }

    #[tokio::test]
    async fn a_pidfd_sees_the_exit_of_a_process_and_refuses_a_reused_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_time_of(pid).unwrap();
        assert!(matches!(
            PidFd::open(pid, started + 1),
            Err(AdoptError::Reused { .. })
        ));
        let fd = PidFd::open(pid, started).unwrap();
        fd.signal(Signal::TERM);
        fd.exited().await;
        child.wait().unwrap();
        assert!(matches!(
            PidFd::open(pid, started),
            Err(AdoptError::Gone(_)) | Err(AdoptError::Reused { .. })
        ));
    }

    fn recorded(child: &std::process::Child) -> Adopted {
        Adopted {
            pid: child.id(),
            start_time: start_time_of(child.id()).unwrap(),
            addr: None,
            ready: true,
        }
    }

    #[tokio::test]
    async fn stop_is_sigterm_then_sigkill_to_the_group_after_the_grace() {
        use std::os::unix::process::CommandExt;
        // Leaves on SIGTERM: stopped without SIGKILL, however long the grace.
        let mut polite = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let killed = stop(&recorded(&polite), std::time::Duration::from_secs(3600)).await;
        assert!(!killed.unwrap());
        assert!(polite.wait().unwrap().code().is_none());

        // Ignores SIGTERM, and so does the child it started in its group:
        // both are killed once the grace is over.
        let mut stubborn = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & echo $!; wait"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(stubborn.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let grandchild_started = start_time_of(grandchild).unwrap();
        let killed = stop(&recorded(&stubborn), std::time::Duration::from_millis(100)).await;
        assert!(killed.unwrap());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(stubborn.wait().unwrap().signal(), Some(libc::SIGKILL));
        // The grandchild got SIGKILL too: gone, or a zombie until init reaps it.
        if let Ok(fd) = PidFd::open(grandchild, grandchild_started) {
            tokio::time::timeout(std::time::Duration::from_secs(10), fd.exited())
                .await
                .expect("the grandchild outlived SIGKILL to its group");
        }

        // A record whose process is gone: an error, no signal sent.
        assert!(matches!(
            stop(&recorded_gone(), std::time::Duration::ZERO).await,
            Err(AdoptError::Gone(_)) | Err(AdoptError::Reused { .. })
        ));
    }

    fn recorded_gone() -> Adopted {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let record = Adopted {
            pid: child.id(),
            start_time: 1,
            addr: None,
            ready: true,
        };
        child.wait().unwrap();
        record
    }
}
