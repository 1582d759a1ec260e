//! What `baton serve`'s log and /proc say about a run: each deploy's readiness intervals (from the supervisor's
//! `instance started` to the app's own `hello: ready` and to baton's `instance ready`), and the CPU time of this
//! program, baton and its instances against the whole machine's. Reads only; never signals a process.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use benchmarks::line_time;
use testkit::field;

use crate::Timing;

/// The new version's instances of one deploy, from the lines between its `deploy started` and its end.
pub(crate) fn timing(lines: &[String], version: &str) -> Timing {
    let is_deploy_line =
        |l: &str, what: &str| l.contains(what) && field(l, "version") == Some(version);
    let Some(from) = lines
        .iter()
        .position(|l| is_deploy_line(l, "deploy started"))
    else {
        return Timing::default();
    };
    let to = lines[from..]
        .iter()
        .position(|l| is_deploy_line(l, "deploy complete") || is_deploy_line(l, "deploy failed"))
        .map_or(lines.len(), |i| from + i + 1);
    let window = &lines[from..to];
    let mut started: HashMap<&str, SystemTime> = HashMap::new();
    let mut baton_ready: HashMap<&str, SystemTime> = HashMap::new();
    let mut app_ready: Vec<(&str, SystemTime)> = Vec::new();
    for line in window {
        let (Some(t), Some(pid)) = (line_time(line), field(line, "pid")) else {
            continue;
        };
        if line.contains("supervisor::group: instance started") {
            started.insert(pid, t);
        } else if line.contains("supervisor::group: instance ready") {
            baton_ready.insert(pid, t);
        } else if line.contains("hello: ready") && field(line, "version") == Some(version) {
            app_ready.push((pid, t));
        }
    }
    let mut app = Vec::new();
    let mut confirmed = Vec::new();
    let mut incomplete = 0;
    for (pid, ready) in &app_ready {
        let (Some(start), Some(confirmed_at)) = (started.get(pid), baton_ready.get(pid)) else {
            incomplete += 1;
            continue;
        };
        // The supervisor logs `instance started` once spawn returned; the app may already have logged by then.
        app.push((*start, (*ready).max(*start)));
        confirmed.push((*start, (*confirmed_at).max(*start)));
    }
    Timing {
        instances: app.len(),
        app_ready_ms: union_ms(app),
        baton_ready_ms: union_ms(confirmed),
        incomplete,
    }
}

/// Total length of the union of intervals, in milliseconds.
pub(crate) fn union_ms(mut intervals: Vec<(SystemTime, SystemTime)>) -> f64 {
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(SystemTime, SystemTime)> = None;
    for (a, b) in intervals {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb.duration_since(ca).unwrap_or_default();
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = current {
        total += b.duration_since(a).unwrap_or_default();
    }
    total.as_secs_f64() * 1000.0
}

/// utime + stime + cutime + cstime of a process, in clock ticks.
pub(crate) fn proc_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    // After the command: state is field 3, utime field 14; `rest` starts at field 3.
    rest.split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// This process (with `baton deploy`, reaped), `baton serve` (with its reaped instances) and its live instances.
pub(crate) fn own_ticks(baton: u32, lines: &[String]) -> u64 {
    let mut pids: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("instance started"))
        .filter_map(|l| field(l, "pid").map(str::to_owned))
        .collect();
    pids.sort();
    pids.dedup();
    let live: u64 = pids
        .iter()
        .filter(|p| is_instance(p))
        .map(|p| proc_ticks(p))
        .sum();
    proc_ticks("self") + proc_ticks(&baton.to_string()) + live
}

/// Busy clock ticks of the whole machine (user, nice, system, irq, softirq, steal), from /proc/stat.
pub(crate) fn machine_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum()
}

pub(crate) fn is_instance(pid: &str) -> bool {
    const MARK: &[u8] = b"demo-app\0--listen";
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(MARK.len()).any(|w| w == MARK))
}
