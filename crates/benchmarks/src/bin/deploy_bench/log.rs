//! What `baton serve`'s log and /proc say about a run: each deploy's readiness intervals (from the supervisor's
//! `instance started` to the app's own `hello: ready` and to baton's `instance ready`), the waits for requests still
//! in flight on the old instances once they were out of the pool (`instance left the pool … in_flight=N
//! drain_ms=D`), and the CPU time of this program, baton and its instances against the whole machine's. Reads only;
//! never signals a process.

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
    let mut in_flight = Vec::new();
    for line in window {
        if line.contains("deploy::supervised: instance left the pool") {
            if let Some(wait) = in_flight_wait(line) {
                in_flight.push(wait);
            }
            continue;
        }
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
    let logged_ms = window
        .iter()
        .rev()
        .find(|l| is_deploy_line(l, "deploy complete"))
        .and_then(|l| field(l, "duration_ms")?.parse().ok());
    Timing {
        logged_ms,
        instances: app.len(),
        app_ready_ms: union_ms(app.clone()),
        baton_ready_ms: union_ms(confirmed.clone()),
        in_flight_ms: union_ms(in_flight.clone()),
        app_ms: union_ms([app, in_flight.clone()].concat()),
        baton_ms: union_ms([confirmed, in_flight].concat()),
        incomplete,
    }
}

/// From an old instance's `instance left the pool` line: \[out of the pool, its last request ended\] when requests
/// were still in flight to it once it was out of the published pool (routed before it left: the app's own request
/// time, which baton must wait for before it stops the instance).
fn in_flight_wait(line: &str) -> Option<(SystemTime, SystemTime)> {
    let left = line_time(line)?;
    let requests: u64 = field(line, "in_flight")?.parse().ok()?;
    let drain_ms: f64 = field(line, "drain_ms")?.parse().ok()?;
    if requests == 0 || !drain_ms.is_finite() || drain_ms <= 0.0 {
        return None;
    }
    let from = left.checked_sub(Duration::from_secs_f64(drain_ms / 1000.0))?;
    Some((from, left))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, rest: &str) -> String {
        format!("[err] 2026-12-03T09:35:{time}Z  INFO {rest}")
    }

    /// A blue-green deploy whose last old instance waited 140 ms for a slow request routed to it before the switch:
    /// that wait is counted with the app's time, the other old instances' (nothing in flight) are not.
    #[test]
    fn waits_for_requests_in_flight_count_as_the_apps_time() {
        let lines = [
            line(
                "44.500000",
                r#"deploy::strategy: deploy started service="web" version=v9 strategy=blue_green"#,
            ),
            line(
                "44.510000",
                "supervisor::group: instance started instance=1 generation=1 pid=512",
            ),
            line("44.520000", "hello: ready version=v9 pid=512"),
            line(
                "44.530000",
                "supervisor::group: instance ready instance=1 generation=1 pid=512",
            ),
            line(
                "44.580000",
                r#"deploy::supervised: instance left the pool service="web" instance=6 addr=127.0.0.1:44165 in_flight=0 drain_ms=0.012 drained=true"#,
            ),
            line(
                "44.720000",
                r#"deploy::supervised: instance left the pool service="web" instance=5 addr=127.0.0.1:45611 in_flight=1 drain_ms=140 drained=true"#,
            ),
            line(
                "44.725000",
                r#"deploy::strategy: deploy complete service="web" version=v9 duration_ms=225 requests=151 failures=0"#,
            ),
        ];
        let t = timing(&lines, "v9");
        assert_eq!(t.instances, 1);
        assert!((t.app_ready_ms - 10.0).abs() < 1e-6, "{}", t.app_ready_ms);
        assert!(
            (t.baton_ready_ms - 20.0).abs() < 1e-6,
            "{}",
            t.baton_ready_ms
        );
        assert!((t.in_flight_ms - 140.0).abs() < 1e-6, "{}", t.in_flight_ms);
        assert!((t.app_ms - 150.0).abs() < 1e-6, "{}", t.app_ms);
        assert!((t.baton_ms - 160.0).abs() < 1e-6, "{}", t.baton_ms);
    }

    #[test]
    fn overlapping_waits_count_once() {
        let lines = [
            line(
                "10.000000",
                r#"deploy::strategy: deploy started service="web" version=v2 strategy=canary"#,
            ),
            line(
                "10.300000",
                r#"deploy::supervised: instance left the pool service="web" instance=1 addr=a in_flight=2 drain_ms=100 drained=true"#,
            ),
            line(
                "10.350000",
                r#"deploy::supervised: instance left the pool service="web" instance=2 addr=b in_flight=1 drain_ms=100 drained=true"#,
            ),
            line(
                "10.400000",
                r#"deploy::strategy: deploy complete service="web" version=v2 duration_ms=400"#,
            ),
        ];
        let t = timing(&lines, "v2");
        assert!((t.in_flight_ms - 150.0).abs() < 1e-6, "{}", t.in_flight_ms);
    }
}
