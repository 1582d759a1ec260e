//! `baton diff` and `baton apply`: a config file compared with the live
//! config of a running `baton serve` (`GET /v1/config`), and applied to it
//! (`POST /v1/apply`, which follows the deploys it starts as `baton deploy`
//! does). The comparison is `config::diff`, the same plan the engine's
//! reload follows. Also the drift line of `baton status`.
//!
//! Nothing here changes anything before the diff was shown; a file with an
//! error is refused here (exit 64) before baton is asked anything.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use config::diff::{Change, Diff, Item, ServiceDiff};
use serde::Serialize;

use crate::EXIT_USAGE;
use crate::cli::{ApplyArgs, DiffArgs};
use crate::client;
use crate::reload::{ApplyOutcome, ApplyRequest, LiveConfig};

/// What `baton diff --json` prints.
#[derive(Debug, Serialize)]
struct DiffReport<'a> {
    /// The file compared.
    file: String,
    /// The live config's revision (what `baton apply --revision` takes).
    revision: &'a str,
    /// Something would change.
    changed: bool,
    /// The deploys applying it would start.
    deploys: Vec<PlannedDeploy>,
    diff: &'a Diff,
}

/// A deploy that applying the file would start.
#[derive(Debug, Clone, Serialize)]
struct PlannedDeploy {
    service: String,
    /// The version it deploys (for an external service, its label).
    version: String,
    strategy: String,
    /// External services: the targets change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    targets: bool,
}

/// The file, the live config and what changes between them.
struct Compared {
    source: String,
    live: LiveConfig,
    diff: Diff,
    deploys: Vec<PlannedDeploy>,
}

/// `baton diff`.
pub fn diff(args: &DiffArgs) -> ExitCode {
    let Some(new) = load(&args.file) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let compared = runtime.block_on(async { compare(&client::Endpoint::of(&args.to)?, new).await });
    match compared {
        Ok(c) => {
            show(&c, &args.file, args.to.json);
            ExitCode::from(u8::from(!c.diff.is_empty()))
        }
        Err(e) => client::fail(e),
    }
}

/// `baton apply`.
pub fn apply(args: &ApplyArgs) -> ExitCode {
    let Some(new) = load(&args.file) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let endpoint = client::Endpoint::of(&args.to)?;
        let c = compare(&endpoint, new).await?;
        if args.dry_run {
            show(&c, &args.file, args.to.json);
            return Ok(u8::from(!c.diff.is_empty()));
        }
        if !args.to.json {
            show(&c, &args.file, false);
        }
        if c.source == c.live.source {
            if args.to.json {
                let outcome = ApplyOutcome {
                    ok: true,
                    revision: c.live.revision.clone(),
                    ..ApplyOutcome::default()
                };
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                println!("nothing to apply: the running config is this file");
            }
            return Ok(0);
        }
        let request = ApplyRequest {
            source: c.source.clone(),
            // The revision the diff above was taken against, unless the
            // caller names the one their review saw.
            revision: Some(args.revision.clone().unwrap_or(c.live.revision.clone())),
            force: args.force,
        };
        let body = serde_json::to_vec(&request)?;
        let response = client::call(&endpoint, "POST", "/v1/apply", Some(body)).await?;
        let outcome: ApplyOutcome = client::follow(response, args.to.json).await?;
        if args.to.json {
            println!("{}", serde_json::to_string(&outcome)?);
        } else {
            summary(&outcome);
        }
        Ok::<u8, anyhow::Error>(outcome.exit)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => client::fail(e),
    }
}

/// The drift line of `baton status`: whether the file on disk is the
/// config running.
pub async fn drift_line(control: &client::Endpoint) -> anyhow::Result<String> {
    let live = live(control).await?;
    let path = live.path.display();
    Ok(match (&live.disk_revision, &live.disk_error) {
        (Some(disk), _) if *disk == live.revision => {
            format!("config {path}: revision {}, as on disk", live.revision)
        }
        (Some(disk), _) => format!(
            "config {path}: DRIFT: the file on disk (revision {disk}) differs from the running config (revision {}); `baton diff {path}` shows how, `baton reload` applies it",
            live.revision
        ),
        (None, error) => format!(
            "config {path}: DRIFT: the file cannot be read ({}); the running config is revision {}",
            error.as_deref().unwrap_or("unknown error"),
            live.revision
        ),
    })
}

/// Loads and checks the file as `baton check` does (certificates
/// included), printing every error; `None` when it has any.
fn load(file: &Path) -> Option<(String, config::Config)> {
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: error: could not read the file: {e}", file.display());
            return None;
        }
    };
    match config::parse(&source, &file.display().to_string()) {
        Ok(cfg) => {
            tls::install_default_provider();
            if let Err(errors) = crate::serve::https(&cfg, &tls::AcmeCerts::default()) {
                for e in &errors {
                    eprintln!("{}: error: {e}", file.display());
                }
                return None;
            }
            Some((source, cfg))
        }
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

async fn live(control: &client::Endpoint) -> anyhow::Result<LiveConfig> {
    let response = client::call(control, "GET", "/v1/config", None).await?;
    client::parse(&client::body(response).await?)
}

async fn compare(
    control: &client::Endpoint,
    (source, new): (String, config::Config),
) -> anyhow::Result<Compared> {
    let live = live(control).await?;
    let running = config::parse(&live.source, &live.path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the running config does not parse here (is this `baton` the same version as the server's?)")?;
    let diff = config::diff(&running, &new);
    let status = client::fetch_status(control).await.unwrap_or_default();
    let serving = |name: &str| {
        status
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.version.clone())
            .unwrap_or_default()
    };
    let deploys = diff
        .services
        .iter()
        .filter_map(|s| {
            let deploy = s.plan.as_ref()?.deploy.as_ref()?;
            let service = new.services.get(&s.name)?;
            let strategy = match service.strategy {
                config::Strategy::Rolling if deploy.new_set => config::Strategy::BlueGreen,
                other => other,
            };
            Some(PlannedDeploy {
                service: s.name.clone(),
                version: deploy
                    .version
                    .as_ref()
                    .map_or_else(|| serving(&s.name), ToString::to_string),
                strategy: strategy.to_string(),
                targets: deploy.targets,
            })
        })
        .collect();
    Ok(Compared {
        source,
        live,
        diff,
        deploys,
    })
}

fn show(c: &Compared, file: &Path, json: bool) {
    if json {
        let report = DiffReport {
            file: file.display().to_string(),
            revision: &c.live.revision,
            changed: !c.diff.is_empty(),
            deploys: c.deploys.clone(),
            diff: &c.diff,
        };
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return;
    }
    print!("{}", render(c, file));
}

/// The diff in words.
fn render(c: &Compared, file: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let d = &c.diff;
    let _ = writeln!(
        out,
        "{} against the running config (revision {}):",
        file.display(),
        c.live.revision
    );
    if d.is_empty() {
        let _ = writeln!(out, "  no changes");
        return out;
    }
    if !d.services.is_empty() {
        let _ = writeln!(out, "services:");
        for s in &d.services {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                sign(s.change),
                s.name,
                service_plan(c, s)
            );
            fields(&mut out, &s.fields);
        }
    }
    for (title, items, note) in [
        ("routes", &d.routes, ""),
        ("pools", &d.pools, ""),
        (
            "listeners",
            &d.listeners,
            " (listener changes take effect at the next restart)",
        ),
        ("certificates", &d.certificates, ""),
        ("settings", &d.settings, ""),
    ] {
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}{note}:");
        for item in items {
            items_line(&mut out, item);
        }
    }
    let changes = d.services.len()
        + d.routes.len()
        + d.pools.len()
        + d.listeners.len()
        + d.certificates.len()
        + d.settings.len();
    let deploys = c.deploys.len();
    let _ = writeln!(
        out,
        "{changes} change{}, {deploys} deploy{}; `baton apply {} --revision {}` applies it",
        if changes == 1 { "" } else { "s" },
        if deploys == 1 { "" } else { "s" },
        file.display(),
        c.live.revision
    );
    out
}

fn service_plan(c: &Compared, s: &ServiceDiff) -> String {
    match s.change {
        Change::Added => "added: started, routed once ready".to_owned(),
        Change::Removed => "removed: taken out of the routes, then drained and stopped".to_owned(),
        Change::Changed => {
            let Some(plan) = &s.plan else {
                return "changed".to_owned();
            };
            let mut parts = Vec::new();
            if let Some(d) = c.deploys.iter().find(|d| d.service == s.name) {
                if d.targets {
                    parts.push(format!("deploy of the new targets ({})", d.strategy));
                } else {
                    parts.push(format!("deploy of {} ({})", d.version, d.strategy));
                }
            }
            if let Some((from, to)) = plan.scale {
                parts.push(format!("scale {from} → {to} instances"));
            }
            if parts.is_empty() {
                parts.push("applied in place (no instance touched)".to_owned());
            }
            format!("changed: {}", parts.join(", then "))
        }
    }
}

fn sign(c: Change) -> char {
    match c {
        Change::Added => '+',
        Change::Removed => '-',
        Change::Changed => '~',
    }
}

fn items_line(out: &mut String, item: &Item) {
    use std::fmt::Write;
    let _ = writeln!(out, "  {} {}", sign(item.change), item.name);
    fields(out, &item.fields);
}

fn fields(out: &mut String, fields: &[config::diff::Field]) {
    use std::fmt::Write;
    for f in fields {
        let _ = writeln!(out, "      {}: {} → {}", f.name, f.old, f.new);
    }
}

fn summary(o: &ApplyOutcome) {
    for s in &o.services {
        match &s.error {
            None => println!("  {}: {} ✓", s.name, s.change),
            Some(e) => println!("  {}: {} ✗ {e}", s.name, s.change),
        }
    }
    if o.ok {
        println!("applied: the running config is revision {}", o.revision);
    } else {
        for e in &o.errors {
            eprintln!("baton: {e}");
        }
        if o.services.is_empty() {
            eprintln!(
                "baton: nothing was applied; the running config is still revision {}",
                o.revision
            );
        } else {
            eprintln!(
                "baton: applied as revision {}, but not every change completed (see above; the failed ones were rolled back)",
                o.revision
            );
        }
    }
}
