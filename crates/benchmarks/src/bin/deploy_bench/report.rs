//! The run's figures: per-strategy summaries, the Markdown section `bench/deploys.sh` puts in
//! `docs/BENCHMARKS.md`, the JSON of `--json-out`, and the diagnosis printed when a deploy or a request failed.
//! Pure formatting of what `run` collected: it starts nothing and reads no file.

use std::fmt::Write as _;
use std::time::Duration;

use benchmarks::{kinds, latency_table, workers_table};
use testkit::field;

use crate::{Args, RunResult};

/// The value at quantile `q` (nearest rank) of unsorted values.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Per-strategy figures.
struct Summary {
    strategy: String,
    deploys: usize,
    ok: usize,
    duration: Vec<f64>,
    app_ready: Vec<f64>,
    confirm: Vec<f64>,
    /// Waits for requests in flight on the old instances (the app's own request time).
    in_flight: Vec<f64>,
    /// Duration − the app's readiness − the waits for requests in flight − the pauses.
    overhead: Vec<f64>,
    /// Duration − the app's readiness − the pauses (the waits for requests in flight included).
    with_in_flight: Vec<f64>,
    rest: Vec<f64>,
    /// The outcome's duration − the logged one: saving the outcome to the state file.
    saving: Vec<f64>,
    pauses_ms: u64,
    steps: u64,
    requests: u64,
    failures: u64,
    proxy_p99: Vec<f64>,
}

impl RunResult {
    pub(crate) fn clean(&self) -> bool {
        self.report.failures == 0 && self.deploys.iter().all(|d| d.ok) && self.baton_exit.success()
    }

    fn summaries(&self, args: &Args) -> Vec<Summary> {
        args.strategies
            .iter()
            .map(|s| {
                let mut sum = Summary {
                    strategy: s.clone(),
                    deploys: 0,
                    ok: 0,
                    duration: Vec::new(),
                    app_ready: Vec::new(),
                    confirm: Vec::new(),
                    in_flight: Vec::new(),
                    overhead: Vec::new(),
                    with_in_flight: Vec::new(),
                    rest: Vec::new(),
                    saving: Vec::new(),
                    pauses_ms: args.pauses_ms(s),
                    steps: args.sequential_steps(s),
                    requests: 0,
                    failures: 0,
                    proxy_p99: Vec::new(),
                };
                for (d, t) in self.deploys.iter().zip(&self.timings) {
                    if &d.strategy != s {
                        continue;
                    }
                    sum.deploys += 1;
                    sum.requests += d.requests;
                    sum.failures += d.failures;
                    if let Some(p) = d.outcome["traffic"]["p99_ms"].as_f64() {
                        sum.proxy_p99.push(p);
                    }
                    if !d.ok {
                        continue;
                    }
                    sum.ok += 1;
                    let duration = d.duration_ms as f64;
                    let pauses = sum.pauses_ms as f64;
                    sum.duration.push(duration);
                    sum.app_ready.push(t.app_ready_ms);
                    sum.confirm.push(t.baton_ready_ms - t.app_ready_ms);
                    sum.in_flight.push(t.in_flight_ms);
                    sum.overhead.push(duration - t.app_ms - pauses);
                    sum.with_in_flight.push(duration - t.app_ready_ms - pauses);
                    sum.rest.push(duration - t.baton_ms - pauses);
                    if let Some(logged) = t.logged_ms {
                        sum.saving.push((duration - logged).max(0.0));
                    }
                }
                sum
            })
            .collect()
    }

    pub(crate) fn markdown(&self, args: &Args) -> String {
        let r = &self.report;
        let interval = args.health_interval_ms as f64;
        let mut out = String::new();
        let ms = |v: f64| format!("{v:.0} ms");
        let summaries = self.summaries(args);

        let _ = writeln!(
            out,
            "| strategy | deploys (ok) | duration: median / max | app's own readiness (median) | waiting for requests in flight: median / max | **overhead: median / max** | median overhead in health intervals | per instance started in sequence | duration − readiness − pauses: median / max | requests during deploys | failed | proxy p99 during a deploy: median / max |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &summaries {
            let med = quantile(&s.overhead, 0.5);
            let _ = writeln!(
                out,
                "| {}{} | {} ({}) | {} / {} | {} | {} / {} | **{} / {}** | {:.2} | {:.2} | {} / {} | {} | {} | {} / {} |",
                s.strategy,
                if s.pauses_ms > 0 {
                    format!(" (pauses {} ms)", s.pauses_ms)
                } else {
                    String::new()
                },
                s.deploys,
                s.ok,
                ms(quantile(&s.duration, 0.5)),
                ms(quantile(&s.duration, 1.0)),
                ms(quantile(&s.app_ready, 0.5)),
                ms(quantile(&s.in_flight, 0.5)),
                ms(quantile(&s.in_flight, 1.0)),
                ms(med),
                ms(quantile(&s.overhead, 1.0)),
                med / interval,
                med / interval / s.steps as f64,
                ms(quantile(&s.with_in_flight, 0.5)),
                ms(quantile(&s.with_in_flight, 1.0)),
                s.requests,
                s.failures,
                ms(quantile(&s.proxy_p99, 0.5)),
                ms(quantile(&s.proxy_p99, 1.0)),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Where the overhead goes (medians): *health-check confirmation* is the union of \\[instance started, baton found it\nready\\] minus the app's own readiness; *the rest* is the duration minus the union of those intervals and the waits\nfor requests in flight, minus the pauses: smoke checks, traffic switches, stopping the old instances, the gaps\nbetween the steps of a rolling deploy, and saving the outcome — the state file written and synced before the deploy\nreturns, which is also given apart (the outcome's duration minus the `duration_ms` baton logs just before it saves)."
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| strategy | health-check confirmation | the rest | of which saving the outcome: median / max |\n|---|---:|---:|---:|"
        );
        for s in &summaries {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} / {} |",
                s.strategy,
                ms(quantile(&s.confirm, 0.5)),
                ms(quantile(&s.rest, 0.5)),
                ms(quantile(&s.saving, 0.5)),
                ms(quantile(&s.saving, 1.0)),
            );
        }
        let _ = writeln!(out);

        let switching_s: f64 = self.deploys.iter().map(|d| d.cli_ms as f64 / 1000.0).sum();
        let _ = writeln!(out, "| whole run | |\n|---|---|");
        let _ = writeln!(
            out,
            "| load | {} keep-alive, {} new-connection, {} POST, {} slow ({} ms) workers, each pausing {} after every request |",
            self.load.keepalive_workers,
            self.load.fresh_workers,
            self.load.post_workers,
            self.load.slow_workers,
            self.load.slow_ms,
            self.load
                .pace
                .map_or_else(|| "never".to_owned(), |p| format!("{} ms", p.as_millis()))
        );
        let _ = writeln!(
            out,
            "| requests | {} in {:.1} s ({:.0} req/s), {:.1} s of it during deploys |",
            r.requests,
            r.elapsed.as_secs_f64(),
            r.requests_per_sec,
            switching_s
        );
        let by_kind = if r.failures_by_kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds(&r.failures_by_kind))
        };
        let _ = writeln!(out, "| **failures** | **{}**{by_kind} |", r.failures);
        let _ = writeln!(
            out,
            "| deploys | {} of {} ended deployed |",
            self.deploys.iter().filter(|d| d.ok).count(),
            self.deploys.len()
        );
        let _ = writeln!(
            out,
            "| CPU of the load, baton and the instances | {:.0} % of one core on average (the whole machine: {:.0} %) |",
            self.own_percent(),
            self.machine_percent()
        );
        let _ = writeln!(out, "| baton exit after SIGTERM | {} |", self.baton_exit);
        let _ = writeln!(out);
        out.push_str(&latency_table(
            [
                ("steady (between deploys)", &r.latency.steady),
                ("during deploys", &r.latency.switching),
            ],
            true,
        ));
        let _ = writeln!(out);
        out.push_str(&workers_table(r));
        let _ = writeln!(out);

        let _ = writeln!(out, "<details><summary>Every deploy, in order</summary>\n");
        let _ = writeln!(
            out,
            "| # | strategy | version | outcome | duration | app's readiness | baton's readiness | waiting for requests in flight | overhead | duration − readiness − pauses | requests | failed | proxy p99 |\n|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (i, (d, t)) in self.deploys.iter().zip(&self.timings).enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {} |",
                i + 1,
                d.strategy,
                d.version,
                if d.ok { "deployed" } else { "**failed**" },
                d.duration_ms,
                t.app_ready_ms,
                t.baton_ready_ms,
                t.in_flight_ms,
                d.duration_ms as f64 - t.app_ms - args.pauses_ms(&d.strategy) as f64,
                d.duration_ms as f64 - t.app_ready_ms - args.pauses_ms(&d.strategy) as f64,
                d.requests,
                d.failures,
                d.outcome["traffic"]["p99_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.2} ms")),
            );
        }
        let _ = writeln!(out, "\n</details>\n");

        let notes = self.notes(args, &summaries);
        if !notes.is_empty() {
            let _ = writeln!(out, "### Noticed in this run\n");
            for n in notes {
                let _ = writeln!(out, "- {n}");
            }
            let _ = writeln!(out);
        }
        out
    }

    fn notes(&self, args: &Args, summaries: &[Summary]) -> Vec<String> {
        let mut notes = Vec::new();
        let r = &self.report;
        let interval = args.health_interval_ms as f64;
        if r.failures > 0 {
            notes.push(format!(
                "**{} of {} requests failed** ({}); this is a bug, not noise: the samples and baton's log around them are in the run's stderr.",
                r.failures,
                r.requests,
                kinds(&r.failures_by_kind)
            ));
        }
        for d in self.deploys.iter().filter(|d| !d.ok) {
            notes.push(format!(
                "**The deploy of {} ({}) failed** (exit {:?}): {}",
                d.version,
                d.strategy,
                d.exit,
                d.outcome["error"].as_str().unwrap_or("no outcome")
            ));
        }
        if !self.baton_exit.success() {
            notes.push(format!(
                "**baton did not stop cleanly**: {}",
                self.baton_exit
            ));
        }
        for s in summaries {
            let med = quantile(&s.overhead, 0.5);
            let max = quantile(&s.overhead, 1.0);
            if med.is_nan() {
                continue;
            }
            if max <= interval {
                notes.push(format!(
                    "{}: the overhead is within one health interval ({} ms) in every deploy (max {max:.0} ms).",
                    s.strategy, args.health_interval_ms
                ));
            } else if med <= interval {
                notes.push(format!(
                    "{}: the median overhead ({med:.0} ms) is within one health interval ({} ms), the max ({max:.0} ms) is not.",
                    s.strategy, args.health_interval_ms
                ));
            } else {
                notes.push(format!(
                    "**{}: the overhead is above the target of one health interval** (median {med:.0} ms, {:.2} intervals; {:.2} per instance started in sequence). Health-check confirmation accounts for a median {:.0} ms of it and the rest for {:.0} ms.",
                    s.strategy,
                    med / interval,
                    med / interval / s.steps as f64,
                    quantile(&s.confirm, 0.5),
                    quantile(&s.rest, 0.5)
                ));
            }
        }
        for s in summaries {
            let with = quantile(&s.with_in_flight, 1.0);
            if with > interval {
                notes.push(format!(
                    "{}: counting the waits for requests in flight as overhead, the max would be {with:.0} ms (median {:.0} ms); the longest such wait was {:.0} ms. Those requests were routed to an old instance before it left the pool, and baton stops no instance before its requests have ended: that wait is the app's own request time (the load's slow requests take {} ms).",
                    s.strategy,
                    quantile(&s.with_in_flight, 0.5),
                    quantile(&s.in_flight, 1.0),
                    self.load.slow_ms
                ));
            }
        }
        if args.healthy_threshold > 1 {
            let start_interval = args.start_interval_ms();
            notes.push(format!(
                "With `healthy_threshold = {}` a new instance is confirmed ready by {} passing checks in a row, `start_interval` ({start_interval} ms, a tenth of `interval` by default) apart: {} ms after its first passing check, for every instance that becomes ready in sequence (one at a time in a rolling deploy with `max_surge = 1`). The first check runs as the instance starts; on the inherited socket it waits for the app to accept.",
                args.healthy_threshold,
                args.healthy_threshold,
                u64::from(args.healthy_threshold - 1) * start_interval
            ));
        }
        let incomplete: usize = self.timings.iter().map(|t| t.incomplete).sum();
        let short = self
            .deploys
            .iter()
            .zip(&self.timings)
            .filter(|(d, t)| d.ok && t.instances < args.instances as usize)
            .count();
        if incomplete > 0 || short > 0 {
            notes.push(format!(
                "In {short} deploys fewer than {} new instances were found in baton's log, and {incomplete} new instances had a start or readiness line missing: their readiness time is not counted.",
                args.instances
            ));
        }
        let other = self.machine_percent() - self.own_percent();
        if other > 20.0 {
            notes.push(format!(
                "Other work on the machine used {other:.0} % of one core on average during the run: durations and latencies are not those of an idle machine."
            ));
        }
        notes
    }

    fn own_percent(&self) -> f64 {
        ticks_percent(self.own_ticks, self.measured)
    }

    fn machine_percent(&self) -> f64 {
        ticks_percent(self.machine_ticks, self.measured)
    }

    pub(crate) fn json(&self, args: &Args) -> serde_json::Value {
        let summaries: Vec<serde_json::Value> = self
            .summaries(args)
            .iter()
            .map(|s| {
                serde_json::json!({
                    "strategy": s.strategy,
                    "deploys": s.deploys,
                    "ok": s.ok,
                    "pauses_ms": s.pauses_ms,
                    "duration_ms": {"median": quantile(&s.duration, 0.5), "max": quantile(&s.duration, 1.0)},
                    "app_ready_ms": {"median": quantile(&s.app_ready, 0.5), "max": quantile(&s.app_ready, 1.0)},
                    "in_flight_ms": {"median": quantile(&s.in_flight, 0.5), "max": quantile(&s.in_flight, 1.0)},
                    "overhead_ms": {"median": quantile(&s.overhead, 0.5), "max": quantile(&s.overhead, 1.0)},
                    "overhead_with_in_flight_ms": {"median": quantile(&s.with_in_flight, 0.5), "max": quantile(&s.with_in_flight, 1.0)},
                    "confirmation_ms": {"median": quantile(&s.confirm, 0.5)},
                    "rest_ms": {"median": quantile(&s.rest, 0.5)},
                    "saving_ms": {"median": quantile(&s.saving, 0.5), "max": quantile(&s.saving, 1.0)},
                    "requests": s.requests,
                    "failures": s.failures,
                })
            })
            .collect();
        let deploys: Vec<serde_json::Value> = self
            .deploys
            .iter()
            .zip(&self.timings)
            .map(|(d, t)| {
                serde_json::json!({
                    "strategy": d.strategy,
                    "version": d.version,
                    "ok": d.ok,
                    "exit": d.exit,
                    "duration_ms": d.duration_ms,
                    "cli_ms": d.cli_ms,
                    "app_ready_ms": t.app_ready_ms,
                    "baton_ready_ms": t.baton_ready_ms,
                    "in_flight_ms": t.in_flight_ms,
                    "new_instances": t.instances,
                    "requests": d.requests,
                    "failures": d.failures,
                    "outcome": d.outcome,
                })
            })
            .collect();
        serde_json::json!({
            "config": {
                "instances": args.instances,
                "health_interval_ms": args.health_interval_ms,
                "healthy_threshold": args.healthy_threshold,
                "canary_steps": args.canary_steps,
                "canary_pause_ms": args.canary_pause_ms,
                "canary_min_requests": args.canary_min_requests,
                "steady_ms": args.steady_ms,
                "pace_ms": args.pace_ms,
            },
            "strategies": summaries,
            "deploys": deploys,
            "report": self.report,
            "cpu": {"own_percent": self.own_percent(), "machine_percent": self.machine_percent()},
            "baton_exit_code": self.baton_exit.code(),
        })
    }

    /// What went wrong, with baton's log around every failure sample and every failed deploy.
    pub(crate) fn diagnosis(&self) -> String {
        let mut out = String::new();
        if !self.baton_exit.success() {
            let _ = writeln!(out, "baton did not stop cleanly: {}", self.baton_exit);
        }
        for d in self.deploys.iter().filter(|d| !d.ok) {
            let _ = writeln!(
                out,
                "\n== deploy of {} ({}) failed, exit {:?}: {}",
                d.version, d.strategy, d.exit, d.outcome
            );
            let v = d.version.as_str();
            for line in self
                .lines
                .iter()
                .skip_while(|l| !(l.contains("deploy started") && field(l, "version") == Some(v)))
                .take(200)
            {
                let _ = writeln!(out, "   {line}");
                if (line.contains("deploy complete") || line.contains("deploy failed"))
                    && field(line, "version") == Some(v)
                {
                    break;
                }
            }
        }
        if self.report.failures > 0 {
            let _ = writeln!(out, "\n{}", self.report.failure_description());
            let _ = writeln!(
                out,
                "(failure times are relative to the start of the load; baton's whole log is in baton.log)"
            );
        }
        out
    }
}

#[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
fn ticks_percent(ticks: u64, over: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz / over.as_secs_f64().max(0.001) * 100.0
}
