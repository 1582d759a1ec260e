//! The process's own readings for the exposition, from Linux's `/proc`:
//! CPU time, memory, open descriptors and their limit, start time. Read at
//! scrape time; a file that cannot be read leaves its samples out. Never
//! changes anything.

use std::fs;

/// Linux reports CPU times and the start time in clock ticks of
/// `USER_HZ`, which is 100 on every architecture (a fixed userspace ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one scrape shows of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time: Option<f64>,
}

/// The process now.
pub(super) fn read() -> Process {
    let stat = fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
    let boot = fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    Process {
        // utime and stime, fields 14 and 15 of stat(5).
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(u, s)| (u + s) as f64 / TICKS_PER_SECOND),
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: kib("VmSize:"),
        open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
        max_fds: fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(max_open_files),
        // starttime, field 22: ticks after boot.
        start_time: boot
            .zip(field(22))
            .map(|(b, t)| b as f64 + t as f64 / TICKS_PER_SECOND),
    }
}

/// The fields of `/proc/self/stat`, numbered from 1 as in stat(5) (index 0
/// is empty). The command name (field 2) may hold spaces and parentheses:
/// the fields after it start after its last `)`.
fn stat_fields(stat: &str) -> Vec<&str> {
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return Vec::new();
    };
    let pid = head.split_whitespace().next().unwrap_or("");
    let mut out = vec!["", pid, ""];
    out.extend(rest.split_whitespace());
    out
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 200";
        let f = stat_fields(stat);
        assert_eq!(f[1], "4242");
        assert_eq!(f[3], "S");
        assert_eq!((f[14], f[15]), ("250", "50"));
        assert_eq!(f[22], "12345");
    }

    #[test]
    fn the_soft_limit_of_open_files_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_reads_as_running() {
        let p = read();
        assert!(p.cpu_seconds.is_some());
        assert!(p.resident_bytes.is_some_and(|b| b > 0));
        assert!(p.open_fds.is_some_and(|n| n >= 3));
        assert!(p.max_fds.is_some_and(|n| n > 0));
        assert!(p.start_time.is_some_and(|t| t > 1.6e9));
    }
}
