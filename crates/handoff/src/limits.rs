//! The process's limit on open descriptors, raised as far as it may go.
//!
//! A server holds one descriptor per client connection (and a proxy one more
//! per upstream connection), but most systems start processes with a soft
//! limit of 1,024 and a far higher hard limit: a few hundred clients would
//! then be refused for a reason no one configured. Any process may raise its
//! soft limit up to its hard limit, so a server should (Go's runtime and
//! nginx's `worker_rlimit_nofile` do the same). This module only ever raises
//! the soft limit; it never touches the hard one.

use std::io;

use crate::sys;

/// The kernel's ceiling for the open-descriptor limit when the hard limit is
/// unlimited and `/proc/sys/fs/nr_open` cannot be read (its default).
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// The soft limit on open descriptors before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now: the hard limit, or the kernel's ceiling when the
    /// hard limit is unlimited.
    pub now: u64,
}

/// Raises this process's soft limit on open descriptors to its hard limit.
///
/// Processes started afterwards (the instances of a supervisor) inherit the
/// raised limit. Fails only if the kernel refuses the change, in which case
/// the old limit stays.
pub fn raise_open_files_limit() -> io::Result<OpenFilesLimit> {
    let (soft, hard) = sys::open_files_limit()?;
    // An unlimited hard limit cannot be the soft one: the kernel refuses more
    // than fs.nr_open descriptors.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(NR_OPEN_DEFAULT);
    let target = hard.min(ceiling);
    if target > soft {
        sys::set_open_files_soft_limit(target, hard)?;
    }
    Ok(OpenFilesLimit {
        before: soft,
        now: target.max(soft),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit_and_is_never_lowered() {
        let limit = raise_open_files_limit().unwrap();
        let (soft, hard) = sys::open_files_limit().unwrap();
        assert_eq!(soft, limit.now);
        assert!(limit.now >= limit.before);
        assert!(soft == hard || hard == libc::RLIM_INFINITY, "{soft} {hard}");
        // A second call finds nothing left to raise.
        let again = raise_open_files_limit().unwrap();
        assert_eq!(again.before, again.now);
        assert_eq!(again.now, limit.now);
    }
}
