//! A child process whose stdout and stderr lines are collected, so that a test or a benchmark waits on a line
//! instead of sleeping, and whose supervised instances (`instance started … pid=P` in its log) never outlive it: on
//! drop each is killed with its whole process group (an instance leads its own, and a script's children are in it),
//! and so is every baton that took over from it in an upgrade (`upgraded: the new baton serves … pid=P`: not the
//! child, so not killed with it).
//!
//! It never kills a process it cannot tell is one of those: a pid is killed on drop only while its command line is
//! still the one read when its line arrived (a pid reused since is left alone), and a group only while that process
//! still leads it.

use std::collections::BTreeSet;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::EVENT_TIMEOUT;

/// The instances a process reported starting, with their command lines then.
type Instances = Arc<Mutex<Vec<(u32, Vec<u8>)>>>;

/// What a log line says was started, to be killed on drop.
enum Started {
    /// A supervised instance: killed with its process group.
    Instance,
    /// The baton an upgrade handed over to: killed alone (it shares the test's group).
    Successor,
}

impl Started {
    fn of(line: &str) -> Option<Started> {
        if line.contains("instance started") {
            Some(Started::Instance)
        } else if line.contains("upgraded: the new baton serves") {
            Some(Started::Successor)
        } else {
            None
        }
    }
}

/// A child process whose stdout and stderr lines are collected, each prefixed `[out] ` or `[err] `.
pub struct Proc {
    /// The process itself (killed if still running when dropped).
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    name: String,
    timeout: Duration,
    lines: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
    instances: Instances,
    /// The batons upgrades handed over to.
    successors: Instances,
    /// Set once every instance is known to be gone: nothing left to kill on drop.
    instances_stopped: bool,
}

/// Why a wait for a line ended without one.
#[derive(Debug)]
pub enum WaitError {
    /// Both output pipes closed (the process and everything that inherited them exited) first.
    Ended {
        /// The program's file name.
        program: String,
        /// What was waited for.
        what: String,
    },
    /// The wait's bound passed first.
    TimedOut {
        /// The program's file name.
        program: String,
        /// What was waited for.
        what: String,
        /// The bound that passed.
        after: Duration,
    },
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Ended { program, what } => {
                write!(f, "{program}'s output ended before {what}")
            }
            WaitError::TimedOut {
                program,
                what,
                after,
            } => write!(
                f,
                "timed out after {} s waiting for {what} from {program}",
                after.as_secs()
            ),
        }
    }
}

impl std::error::Error for WaitError {}

/// Benchmark programs report their errors as text.
impl From<WaitError> for String {
    fn from(e: WaitError) -> String {
        e.to_string()
    }
}

impl Proc {
    /// Starts `cmd` with `RUST_LOG=info`, stdin closed and both outputs collected; panics if it cannot start.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::try_spawn(cmd).expect("spawn process under test")
    }

    /// Like [`Proc::spawn`], returning the error.
    pub fn try_spawn(cmd: &mut Command) -> std::io::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        let name = std::path::Path::new(cmd.as_std().get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other(format!("{name} exited at once")))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let instances: Instances = Arc::default();
        let successors: Instances = Arc::default();
        let (tx, seen) = watch::channel(0usize);
        let tx = Arc::new(tx);
        if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
            let started = [instances.clone(), successors.clone()];
            collect(out, "out", lines.clone(), started.clone(), tx.clone());
            collect(err, "err", lines.clone(), started, tx);
        }
        Ok(Proc {
            child,
            pid,
            name,
            timeout: EVENT_TIMEOUT,
            lines,
            seen,
            instances,
            successors,
            instances_stopped: false,
        })
    }

    /// The bound of every wait of this process (default [`EVENT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Proc {
        self.timeout = timeout;
        self
    }

    /// Spawns a program that prints `listening on ADDR` and returns it with that (first) address.
    pub async fn spawn_listening(cmd: &mut Command) -> (Proc, String) {
        let mut p = Proc::spawn(cmd);
        let line = p.wait_for("listening on ").await;
        let addr = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .trim()
            .to_owned();
        (p, addr)
    }

    /// The addresses of the first `n` `listening on ADDR` lines, in order (for `baton serve`, one per
    /// `[[listener]]`, in file order), once that many were printed.
    pub async fn listening(&mut self, n: usize) -> Vec<String> {
        self.wait_count("listening on ", n).await;
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("[out] listening on "))
            .map(|a| a.trim().to_owned())
            .take(n)
            .collect()
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits for the first line at or after index `from` that matches; returns the index after it and the line.
    pub async fn wait_from(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<(usize, String), WaitError> {
        let find = |lines: Vec<String>| {
            lines
                .into_iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| pred(l))
                .map(|(i, l)| (i + 1, l))
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(found) = find(self.lines()) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    // Both pipes closed: one last look.
                    return find(self.lines()).ok_or_else(|| WaitError::Ended {
                        program: self.name.clone(),
                        what: what.to_owned(),
                    });
                }
                Err(_) => {
                    return Err(WaitError::TimedOut {
                        program: self.name.clone(),
                        what: what.to_owned(),
                        after: self.timeout,
                    });
                }
            }
        }
    }

    /// Waits for the first line (from the start of the output) that matches; panics with the output if none comes.
    pub async fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        match self.wait_from(0, what, pred).await {
            Ok((_, line)) => line,
            Err(WaitError::Ended { .. }) => panic!("process ended before {what}\n{}", self.dump()),
            Err(WaitError::TimedOut { .. }) => {
                panic!("timed out waiting for {what}\n{}", self.dump())
            }
        }
    }

    /// Waits for a line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let n = needle.to_owned();
        self.wait_line(needle, move |l| l.contains(&n)).await
    }

    /// Waits until `n` lines contain `needle`.
    pub async fn wait_count(&mut self, needle: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if self.lines().iter().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("{n} lines with {needle:?} not seen\n{}", self.dump()),
            }
        }
    }

    /// Resolves when both output pipes are closed (the process and anything that inherited them have exited);
    /// unbounded, for callers that bound it themselves.
    pub async fn output_closed(&mut self) {
        while self.seen.changed().await.is_ok() {}
    }

    /// Waits until both output pipes are closed; panics with the output if they are not within the bound.
    pub async fn wait_output_closed(&mut self) {
        let timeout = self.timeout;
        if tokio::time::timeout(timeout, self.output_closed())
            .await
            .is_err()
        {
            panic!("output was not closed\n{}", self.dump());
        }
    }

    /// Waits for the process to exit; panics with the output if it does not within the bound.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(self.timeout, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("process did not exit\n{}", self.dump()),
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        signal(self.pid, sig);
    }

    /// Says that every instance the process started is gone (it was seen to stop them all): none is killed on drop.
    pub fn instances_stopped(&mut self) {
        self.instances_stopped = true;
    }

    /// The last 200 lines of output, for failure messages (without per-request lines, which would drown the
    /// supervisor's story).
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| !l.contains("slow request started"))
            .collect();
        let start = lines.len().saturating_sub(200);
        format!("--- last output lines ---\n{}", lines[start..].join("\n"))
    }

    /// The pids of every instance the process reported starting.
    pub fn instance_pids(&self) -> BTreeSet<u32> {
        self.lines()
            .iter()
            .filter(|l| l.contains("instance started"))
            .filter_map(|l| field(l, "pid")?.parse().ok())
            .collect()
    }

    /// The pids of the instances of one generation.
    pub fn generation_pids(&self, generation: u64) -> BTreeSet<u32> {
        let g = generation.to_string();
        self.lines()
            .iter()
            .filter(|l| l.contains("instance started") && field(l, "generation") == Some(&g))
            .filter_map(|l| field(l, "pid")?.parse().ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Instances run in their own process groups, and a baton that took over in an upgrade is no child of
        // ours: a run that fails must not leave them behind. The batons first, so that none restarts an instance.
        if !self.instances_stopped {
            let same = |pid: u32, cmdline: &[u8]| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == cmdline)
            };
            for (pid, cmdline) in self
                .successors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                if same(*pid, cmdline) {
                    signal(*pid, libc::SIGKILL);
                }
            }
            for (pid, cmdline) in self
                .instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                if !same(*pid, cmdline) {
                    continue;
                }
                if leads_its_group(*pid) {
                    signal_group(*pid, libc::SIGKILL);
                } else {
                    signal(*pid, libc::SIGKILL);
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

fn collect<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    tag: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    [instances, successors]: [Instances; 2],
    seen: Arc<watch::Sender<usize>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(started) = Started::of(&line)
                && let Some(pid) = field(&line, "pid").and_then(|p| p.parse::<u32>().ok())
                && let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            {
                let list = match started {
                    Started::Instance => &instances,
                    Started::Successor => &successors,
                };
                list.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((pid, cmdline));
            }
            let n = {
                let mut l = lines.lock().unwrap_or_else(PoisonError::into_inner);
                l.push(format!("[{tag}] {line}"));
                l.len()
            };
            seen.send_replace(n);
        }
    });
}

/// The value of `key=value` in a log line, without quotes.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    Some(
        rest.split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"'),
    )
}

/// Whether `pid` leads its process group (`/proc/PID/stat`'s `pgrp`, the third field after the command).
fn leads_its_group(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    rest.split_whitespace()
        .nth(2)
        .and_then(|g| g.parse::<u32>().ok())
        == Some(pid)
}

/// Sends `sig` to every process of the group `pgid` (nothing if it is not a valid pid, nor for 0 or 1).
#[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
fn signal_group(pgid: u32, sig: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, sig) };
}

/// Sends `sig` to `pid` (nothing if `pid` is not a valid pid).
#[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}
