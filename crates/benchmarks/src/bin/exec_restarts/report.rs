//! The run's figures: the Markdown section `bench/exec-restarts.sh` puts in `docs/BENCHMARKS.md`, the JSON of
//! `--json`, and the diagnosis printed when a request failed. Pure formatting of what `run` collected: it starts
//! nothing and reads no file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use benchmarks::{kinds, latency_table, line_time, workers_table};
use loadgen::LatencySummary;

use crate::RunResult;

impl RunResult {
    pub(crate) fn markdown(&self) -> String {
        let r = &self.report;
        let l = &r.latency;
        let mut out = String::new();
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| SIGHUP restarts | {} |", self.switches.len());
        let _ = writeln!(
            out,
            "| instances per generation | {} (distinct instances that answered: {} of {}) |",
            self.instances,
            r.instances.len(),
            self.instances as u64 * (self.switches.len() as u64 + 1)
        );
        let _ = writeln!(
            out,
            "| load | {} keep-alive, {} new-connection, {} POST, {} slow ({} ms) workers |",
            self.load.keepalive_workers,
            self.load.fresh_workers,
            self.load.post_workers,
            self.load.slow_workers,
            self.load.slow_ms
        );
        let _ = writeln!(
            out,
            "| requests | {} in {:.1} s ({:.0} req/s) |",
            r.requests,
            r.elapsed.as_secs_f64(),
            r.requests_per_sec
        );
        let _ = writeln!(
            out,
            "| **failures** | **{}**{} |",
            r.failures,
            if r.failures > 0 {
                format!(" ({})", kinds(&r.failures_by_kind))
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "| time spent switching | {:.1} s of {:.1} s |",
            self.switching_secs(),
            r.elapsed.as_secs_f64()
        );
        let (median, p90, max) = self.rollout_stats();
        let _ = writeln!(
            out,
            "| rollout duration (SIGHUP to old generation gone) | median {median} ms, p90 {p90} ms, max {max} ms |"
        );
        let _ = writeln!(out, "| baton exit after SIGTERM | {} |", self.baton_exit);
        let _ = writeln!(out);
        out.push_str(&latency_table(
            [
                ("outside restarts", &l.steady),
                ("during restarts", &l.switching),
            ],
            false,
        ));
        let _ = writeln!(out);
        out.push_str(&workers_table(r));
        out
    }

    pub(crate) fn json(&self) -> String {
        let r = &self.report;
        let (median, p90, max) = self.rollout_stats();
        let summary = |s: &LatencySummary| {
            format!(
                r#"{{"count":{},"p50_us":{},"p99_us":{},"max_us":{}}}"#,
                s.count, s.p50_us, s.p99_us, s.max_us
            )
        };
        let counts = |m: &BTreeMap<String, u64>| {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{v}", json_str(k)))
                .collect();
            format!("{{{}}}", parts.join(","))
        };
        let workers: Vec<String> = r
            .workers
            .iter()
            .map(|(k, w)| {
                format!(
                    r#"{}:{{"requests":{},"ok":{},"failures":{}}}"#,
                    json_str(k),
                    w.requests,
                    w.ok,
                    w.failures
                )
            })
            .collect();
        let samples: Vec<String> = r.failure_samples.iter().map(|s| json_str(s)).collect();
        let rollouts: Vec<String> = self
            .switches
            .iter()
            .map(|s| s.rollout_ms.to_string())
            .collect();
        format!(
            concat!(
                "{{",
                r#""restarts_requested":{},"restarts":{},"instances":{},"steady_ms":{},"#,
                r#""load":{{"keepalive":{},"fresh":{},"post":{},"slow":{},"slow_ms":{}}},"#,
                r#""requests":{},"ok":{},"failures":{},"failures_by_kind":{},"failure_samples":[{}],"#,
                r#""elapsed_secs":{:.3},"requests_per_sec":{:.1},"switching_secs":{:.3},"#,
                r#""latency":{{"steady":{},"switching":{}}},"#,
                r#""rollout_ms":{{"median":{},"p90":{},"max":{},"all":[{}]}},"#,
                r#""instances_seen":{},"instances_expected":{},"workers":{{{}}},"#,
                r#""load_started":{},"baton_exit_code":{}"#,
                "}}"
            ),
            self.args_restarts,
            self.switches.len(),
            self.instances,
            self.steady_ms,
            self.load.keepalive_workers,
            self.load.fresh_workers,
            self.load.post_workers,
            self.load.slow_workers,
            self.load.slow_ms,
            r.requests,
            r.ok,
            r.failures,
            counts(&r.failures_by_kind),
            samples.join(","),
            r.elapsed.as_secs_f64(),
            r.requests_per_sec,
            self.switching_secs(),
            summary(&r.latency.steady),
            summary(&r.latency.switching),
            median,
            p90,
            max,
            rollouts.join(","),
            r.instances.len(),
            self.instances as u64 * (self.switches.len() as u64 + 1),
            workers.join(","),
            json_str(&humantime::format_rfc3339_micros(self.load_started).to_string()),
            self.baton_exit
                .code()
                .map_or_else(|| "null".to_owned(), |c| c.to_string()),
        )
    }

    /// What went wrong, with baton's log around every failure sample.
    pub(crate) fn diagnosis(&self) -> String {
        let mut out = String::new();
        if !self.baton_exit.success() {
            let _ = writeln!(out, "baton did not stop cleanly: {}", self.baton_exit);
        }
        if self.report.failures == 0 {
            return out;
        }
        let _ = writeln!(out, "{}", self.report.failure_description());
        let _ = writeln!(
            out,
            "load started at {} (failure times are relative to it)",
            humantime::format_rfc3339_micros(self.load_started)
        );
        for sample in &self.report.failure_samples {
            let Some(at) = sample
                .strip_prefix('+')
                .and_then(|s| s.split('s').next())
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            else {
                continue;
            };
            let window = self
                .switches
                .iter()
                .find(|s| s.from <= at && at <= s.to + Duration::from_secs(1))
                .map_or_else(
                    || "outside any switch".to_owned(),
                    |s| {
                        format!(
                            "switch to generation {} (+{:.3}s..+{:.3}s)",
                            s.generation,
                            s.from.as_secs_f64(),
                            s.to.as_secs_f64()
                        )
                    },
                );
            let _ = writeln!(out, "\n== {sample}\n   during: {window}");
            let when = self.load_started + at;
            let lo = when - Duration::from_millis(1500);
            let hi = when + Duration::from_millis(500);
            for line in &self.lines {
                if line.contains("slow request started") {
                    continue;
                }
                if let Some(t) = line_time(line)
                    && lo <= t
                    && t <= hi
                {
                    let _ = writeln!(out, "   {line}");
                }
            }
        }
        out
    }

    fn switching_secs(&self) -> f64 {
        self.switches
            .iter()
            .map(|s| (s.to - s.from).as_secs_f64())
            .sum()
    }

    /// Median, 90th percentile and maximum rollout duration in ms.
    fn rollout_stats(&self) -> (u64, u64, u64) {
        let mut all: Vec<u64> = self.switches.iter().map(|s| s.rollout_ms).collect();
        if all.is_empty() {
            return (0, 0, 0);
        }
        all.sort_unstable();
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.9), all[all.len() - 1])
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
