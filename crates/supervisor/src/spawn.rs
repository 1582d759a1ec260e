//! Starting one instance process so that it inherits the listeners the
//! systemd way: descriptors 3.. in order, `LISTEN_FDS`, `LISTEN_FDNAMES`, and
//! `LISTEN_PID` set to the child's *own* pid.
//!
//! The child's pid is only known after `fork`, and between `fork` and `exec`
//! only async-signal-safe calls are allowed (no allocation: another thread of
//! ours may have held the allocator's lock at the fork). So everything is
//! prepared before the fork — argv, the whole environment, a `LISTEN_PID=`
//! slot with room for the digits — and the child only moves descriptors,
//! writes its pid into the slot and calls `execve` itself.

#![allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;

use handoff::{LISTEN_FDS_START, NamedListener};
use tokio::process::Child;

use crate::command::CommandSpec;

/// Variables of the protocol that must never leak from our own environment
/// into an instance.
const PROTOCOL_VARS: [&str; 4] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

const PID_PREFIX: &[u8] = b"LISTEN_PID=";
/// Room for any pid's digits and the terminating NUL.
const PID_DIGITS: usize = 20;

/// Starts `command` with `listeners` at descriptors 3.. and `notify` as its
/// `NOTIFY_SOCKET`. The instance runs in its own process group, so a Ctrl-C
/// at the terminal reaches only baton, which then stops instances in order.
pub(crate) fn spawn(
    command: &CommandSpec,
    listeners: &[NamedListener],
    notify: Option<&Path>,
    extra_env: &[(&str, String)],
) -> io::Result<Child> {
    let mut image = ExecImage::prepare(command, listeners, notify, extra_env)?;
    let mut cmd = tokio::process::Command::new(command.program());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = command.cwd() {
        cmd.current_dir(dir);
    }
    // SAFETY: the closure runs in the forked child before exec. It only calls
    // async-signal-safe functions (fcntl, dup2, getpid, execve) and writes into
    // memory prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || image.exec_in_child());
    }
    cmd.spawn()
}

/// Everything `execve` needs, laid out before the fork.
struct ExecImage {
    program: CString,
    _argv_store: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _env_store: Vec<CString>,
    /// `LISTEN_PID=` followed by room for the digits and NUL; the child fills in.
    pid_slot: Vec<u8>,
    envp: Vec<*const libc::c_char>,
    /// The listeners' descriptors in the parent, in protocol order.
    fds: Vec<RawFd>,
}

// SAFETY: the raw pointers point into the heap buffers of `_argv_store`,
// `_env_store` and `pid_slot`, owned by the same value and never resized after
// `prepare`; moving the value to another thread moves ownership of those
// buffers with it.
unsafe impl Send for ExecImage {}
// SAFETY: shared references never touch the pointers; only the child's copy
// (after fork) writes, through `&mut self`.
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn prepare(
        command: &CommandSpec,
        listeners: &[NamedListener],
        notify: Option<&Path>,
        extra_env: &[(&str, String)],
    ) -> io::Result<ExecImage> {
        let program = cstring(command.program().as_os_str())?;
        let mut argv_store = vec![program.clone()];
        for a in command.args() {
            argv_store.push(cstring(a)?);
        }

        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !PROTOCOL_VARS.iter().any(|p| k == p))
            .collect();
        let mut set = |k: &OsStr, v: &OsStr| {
            vars.retain(|(old, _)| old != k);
            vars.push((k.to_owned(), v.to_owned()));
        };
        for (k, v) in command.extra_env() {
            set(k, v);
        }
        for (k, v) in extra_env {
            set(OsStr::new(k), OsStr::new(v));
        }
        if !listeners.is_empty() {
            set(
                OsStr::new("LISTEN_FDS"),
                OsStr::new(&listeners.len().to_string()),
            );
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            set(OsStr::new("LISTEN_FDNAMES"), OsStr::new(&names.join(":")));
        }
        if let Some(path) = notify {
            set(OsStr::new("NOTIFY_SOCKET"), path.as_os_str());
        }
        let env_store = vars
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| invalid("an environment variable contains NUL"))
            })
            .collect::<io::Result<Vec<_>>>()?;

        let mut pid_slot = PID_PREFIX.to_vec();
        pid_slot.resize(PID_PREFIX.len() + PID_DIGITS + 1, 0);

        let argv = argv_store
            .iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let mut envp: Vec<*const libc::c_char> = env_store.iter().map(|c| c.as_ptr()).collect();
        if !listeners.is_empty() {
            envp.push(pid_slot.as_ptr().cast());
        }
        envp.push(std::ptr::null());

        Ok(ExecImage {
            program,
            _argv_store: argv_store,
            argv,
            _env_store: env_store,
            pid_slot,
            envp,
            fds: listeners.iter().map(|l| l.listener.as_fd_raw()).collect(),
        })
    }

    /// Runs in the child between fork and exec: returns only on failure.
    fn exec_in_child(&mut self) -> io::Result<()> {
        let n = self.fds.len() as RawFd;
        // First copy every listener above the target range, so placing one at
        // 3+i can never overwrite another that still sits there. The copies
        // are close-on-exec and vanish with the exec.
        for fd in self.fds.iter_mut() {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) is async-signal-safe and only
            // creates a new descriptor.
            let high = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, LISTEN_FDS_START + n) };
            if high < 0 {
                return Err(io::Error::last_os_error());
            }
            *fd = high;
        }
        for (i, fd) in self.fds.iter().enumerate() {
            // SAFETY: dup2 is async-signal-safe; the target is cleared of
            // close-on-exec, which is what passing the socket means.
            if unsafe { libc::dup2(*fd, LISTEN_FDS_START + i as RawFd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: getpid is async-signal-safe and cannot fail.
        let pid = unsafe { libc::getpid() };
        write_decimal(&mut self.pid_slot[PID_PREFIX.len()..], pid as u64);
        // SAFETY: every pointer refers to a NUL-terminated buffer owned by
        // `self` (prepared before the fork), and both arrays end with NULL.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

/// Writes `n` in decimal followed by NUL into `out`, without allocating.
fn write_decimal(out: &mut [u8], mut n: u64) {
    let mut digits = [0u8; PID_DIGITS];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = 0;
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| invalid("an argument contains NUL"))
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

trait AsFdRaw {
    fn as_fd_raw(&self) -> RawFd;
}

impl AsFdRaw for handoff::Listener {
    fn as_fd_raw(&self) -> RawFd {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_without_allocation() {
        let mut buf = [0xffu8; 21];
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
        write_decimal(&mut buf, 4194304);
        assert_eq!(&buf[..8], b"4194304\0");
        write_decimal(&mut buf, u64::MAX);
        assert_eq!(&buf[..21], b"18446744073709551615\0");
    }
}
