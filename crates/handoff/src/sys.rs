//! The few places where the library must talk to the OS below `std`:
//! adopting a numbered descriptor and asking whether the process is still
//! single-threaded, the open-files limit, giving the heap back to the
//! system, and registering the parking lot's epoll descriptor with tokio.
//! Every `unsafe` block of the crate lives here.

#![allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of descriptor `fd` if it is open, and marks it
/// close-on-exec so it does not leak into processes we spawn.
///
/// Returns `Ok(None)` when nothing is open at that number.
pub(crate) fn adopt_fd(fd: RawFd) -> io::Result<Option<OwnedFd>> {
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; it is defined
    // for any integer and fails with EBADF when nothing is open there.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EBADF) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: as above; setting FD_CLOEXEC changes no ownership.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above), and the socket-activation protocol
    // hands descriptors 3.. to this process to own; `inherit::take` makes sure
    // this happens at most once per process, so no other owner exists.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// True when the process has exactly one thread, so that changing the
/// environment cannot race with another thread reading it.
pub(crate) fn single_threaded() -> bool {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1"),
        Err(_) => false,
    }
}

/// Removes the socket-activation variables from the environment.
///
/// Only called when [`single_threaded`] holds.
pub(crate) fn clear_listen_env() {
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        // SAFETY: the caller checked that this process has a single thread,
        // so no other thread can be reading the environment concurrently.
        unsafe { std::env::remove_var(var) };
    }
}

/// The soft and hard limits on this process's open descriptors.
pub(crate) fn open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live local
    // of exactly that type, and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Sets the soft limit on open descriptors, keeping the hard one.
pub(crate) fn set_open_files_soft_limit(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the `rlimit` behind a pointer to a live
    // local of exactly that type.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the heap's free pages back to the system (glibc's `malloc_trim`):
/// glibc returns memory freed in the middle of its heap only then, so what
/// a burst of connections held stays in the process's RSS otherwise.
/// Returns whether anything was given back; does nothing without glibc.
#[cfg(feature = "http")]
pub(crate) fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and touches only the
        // allocator's own state, under its arena locks (thread-safe).
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Registers `fd` with tokio's reactor for readability (the parking lot's
/// epoll set). Must be called on a tokio runtime.
#[cfg(feature = "http")]
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is an open descriptor that it alone closes, and
    // its `as_raw_fd` always returns that descriptor; the `AsyncFd` owns it
    // from here on, so it stays open and the same for the `AsyncFd`'s life.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    registered.map_err(|e| e.into_parts().1)
}
