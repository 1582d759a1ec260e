//! The deploy strategies as moves between a service's sets, each with its
//! own way back. Every wait is bounded by the deploy's deadline (the
//! service's `deploy_timeout`) and a deploy that fails undoes itself here,
//! before it returns: nothing is left half-applied for a caller that went
//! away.

use std::time::Duration;

use tokio::time::Instant;

use crate::judge::{Window, judge};
use crate::progress::{Progress, Reporter, Traffic, millis};
use crate::{
    BadRequest, Deploy, DeployError, DeployRequest, Deployed, Engine, Failure, Outcome, SetPhase,
    Standby, Undo, state, supervised,
};

/// What a deploy puts in place.
#[derive(Clone)]
enum Target {
    Version(config::Supervised),
    Targets(Vec<config::UpstreamAddr>),
}

/// Marks the service busy for the life of a deploy or rollback.
struct Busy {
    engine: Engine,
    service: String,
}

impl Busy {
    fn claim(engine: &Engine, service: &str, reporter: &Reporter) -> Result<Busy, DeployError> {
        let claimed = engine.with_runtime(service, |rt| {
            if rt.busy {
                return false;
            }
            rt.busy = true;
            rt.reporter = reporter.clone();
            true
        });
        if !claimed {
            return Err(DeployError::Busy(service.to_owned()));
        }
        Ok(Busy {
            engine: engine.clone(),
            service: service.to_owned(),
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.engine.with_runtime(&self.service, |rt| {
            rt.busy = false;
            rt.reporter = Reporter::none();
        });
    }
}

pub(crate) async fn deploy(
    engine: &Engine,
    req: DeployRequest,
    reporter: Reporter,
) -> Result<Deployed, DeployError> {
    let service = engine
        .service(&req.service)
        .ok_or_else(|| DeployError::UnknownService(req.service.clone()))?;
    let name = service.name.clone();
    let (label, target) = match &service.runner {
        config::Runner::Supervised(spec) => {
            if !req.targets.is_empty() {
                return Err(BadRequest::TargetsForSupervised(name).into());
            }
            let Some(version) = req.version.clone() else {
                return Err(BadRequest::VersionRequired(name).into());
            };
            let mut spec = spec.clone();
            spec.version = version;
            (spec.version.to_string(), Target::Version(spec))
        }
        config::Runner::External(_) => {
            if req.targets.is_empty() {
                return Err(BadRequest::TargetsRequired(name).into());
            }
            let mut targets = req.targets.clone();
            targets.dedup();
            let label = req.version.as_ref().map(ToString::to_string);
            (label.unwrap_or_default(), Target::Targets(targets))
        }
    };
    let strategy = req.strategy.unwrap_or(service.strategy);
    let _busy = Busy::claim(engine, &name, &reporter)?;
    run(
        engine,
        &service,
        strategy,
        label,
        target,
        &reporter,
        Outcome::Deployed,
    )
    .await
}

/// Deploys `target`, recording it; the service is already claimed.
async fn run(
    engine: &Engine,
    service: &config::Service,
    strategy: config::Strategy,
    label: String,
    target: Target,
    reporter: &Reporter,
    success: Outcome,
) -> Result<Deployed, DeployError> {
    let name = service.name.as_str();
    // A new deploy ends the previous one's rollback window.
    end_standby(engine, name).await;
    let record = Deploy {
        version: label.clone(),
        targets: match &target {
            Target::Version(_) => Vec::new(),
            Target::Targets(t) => t.iter().map(|t| t.authority.clone()).collect(),
        },
        started: state::now(),
        outcome: Outcome::InProgress,
    };
    engine.note(name, &record, Outcome::InProgress);
    reporter.send(Progress::Started {
        service: name.to_owned(),
        version: label.clone(),
        strategy: strategy.to_string(),
        instances: match &target {
            Target::Version(spec) => spec.instances as usize,
            Target::Targets(t) => t.len(),
        },
    });
    tracing::info!(service = name, version = %label, %strategy, "deploy started");
    let stats = engine
        .proxy()
        .and_then(|p| p.pool_stats(&service.pool_name()));
    let before = stats.as_ref().map(|s| s.snapshot());
    let started = Instant::now();
    let deadline = started + service.deploy_timeout;

    let outcome = match (&target, strategy) {
        (Target::Version(spec), config::Strategy::Rolling) => {
            rolling(engine, service, spec, reporter, deadline).await
        }
        _ => two_sets(engine, service, strategy, &target, reporter, deadline).await,
    };
    let traffic = match (&stats, &before) {
        (Some(stats), Some(before)) => {
            let window = stats.snapshot().since(before);
            Traffic {
                requests: window.requests(),
                failures: window.failures(),
                p99_ms: window.quantile(0.99).map(millis),
            }
        }
        _ => Traffic::default(),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(service = name, version = %label, duration_ms = started.elapsed().as_millis() as u64, requests = traffic.requests, failures = traffic.failures, "deploy complete");
            engine.note(name, &record, success);
            Ok(Deployed {
                version: label,
                strategy,
                duration: started.elapsed(),
                traffic,
            })
        }
        Err(reason) => {
            tracing::error!(service = name, version = %label, %reason, "deploy failed and was rolled back; the previous version keeps serving");
            engine.note(name, &record, Outcome::Failed(reason.to_string()));
            Err(DeployError::Failed(reason))
        }
    }
}

/// Rolling: the service's one set replaces its instances within
/// `max_surge` / `max_unavailable`. A failure leaves the instances that
/// were ready serving; if some of those are of the new version, the old
/// version is rolled out again over them.
async fn rolling(
    engine: &Engine,
    service: &config::Service,
    spec: &config::Supervised,
    reporter: &Reporter,
    deadline: Instant,
) -> Result<(), Failure> {
    let name = service.name.as_str();
    let Some((set, group, old_version, before)) = engine.with_runtime(name, |rt| {
        rt.sets
            .iter()
            .find(|s| s.share > 0 && s.group.is_some())
            .map(|s| {
                let generations: Vec<u64> = s.ready.iter().map(|(_, g)| *g).collect();
                (
                    s.id,
                    s.group.clone().unwrap(),
                    s.version.clone(),
                    generations,
                )
            })
    }) else {
        return Err(Failure::NoInstances);
    };
    let command = supervisor::CommandSource::PerInstance(supervised::command_fn(spec.clone()));
    let reason = match tokio::time::timeout_at(deadline, group.reload_with(Some(command))).await {
        Ok(Ok(Ok(generation))) => {
            engine.with_set(name, set, |s| s.version = spec.version.to_string());
            tracing::debug!(service = name, generation, "rollout complete");
            reporter.send(Progress::Traffic { percent: 100 });
            return Ok(());
        }
        Ok(Err(_)) => return Err(Failure::SupervisorStopped),
        Ok(Ok(Err(e))) => Failure::Rollout(e),
        Err(_) => Failure::Timeout(service.deploy_timeout),
    };
    let mixed = engine
        .with_set(name, set, |s| {
            s.ready.iter().any(|(_, g)| !before.contains(g))
        })
        .unwrap_or(false);
    let timed_out = Instant::now() >= deadline;
    if mixed || timed_out {
        reporter.send(Progress::RollingBack {
            reason: reason.to_string(),
        });
        let not_undone = |undo| Failure::NotUndone {
            failure: Box::new(reason.clone()),
            undo,
        };
        let mut old = spec.clone();
        match old_version.parse() {
            Ok(v) => old.version = v,
            Err(e) => return Err(not_undone(Undo::Version(e))),
        }
        let command = supervisor::CommandSource::PerInstance(supervised::command_fn(old));
        match group.reload_with(Some(command)).await {
            Ok(Ok(_)) => tracing::info!(service = name, version = %old_version, "rolled back"),
            Ok(Err(source)) => {
                return Err(not_undone(Undo::Rollout {
                    version: old_version,
                    source,
                }));
            }
            Err(_) => return Err(not_undone(Undo::SupervisorStopped)),
        }
    }
    Err(reason)
}

/// Blue-green and canary (and every deploy of an external service): a new
/// set next to the old one, traffic moved to it, the old one retired.
async fn two_sets(
    engine: &Engine,
    service: &config::Service,
    strategy: config::Strategy,
    target: &Target,
    reporter: &Reporter,
    deadline: Instant,
) -> Result<(), Failure> {
    let name = service.name.as_str();
    let old: Vec<u64> = engine.with_runtime(name, |rt| {
        rt.sets
            .iter()
            .filter(|s| s.share > 0)
            .map(|s| s.id)
            .collect()
    });
    let new = match target {
        Target::Version(spec) => {
            let (id, mut phase) = engine
                .start_set(service, spec, 0)
                .map_err(|e| Failure::Start(std::sync::Arc::new(e)))?;
            let ready = tokio::time::timeout_at(deadline, async {
                phase
                    .wait_for(|p| *p != SetPhase::Starting)
                    .await
                    .map(|p| p.clone())
            })
            .await;
            let failure = match ready {
                Ok(Ok(SetPhase::Ready)) => None,
                Ok(Ok(SetPhase::Failed(reason))) => Some(Failure::NewInstances(reason)),
                // `wait_for` returns only when the phase is not `Starting`.
                Ok(Ok(SetPhase::Starting)) | Ok(Err(_)) => Some(Failure::NewSupervisorStopped),
                Err(_) => Some(Failure::Timeout(service.deploy_timeout)),
            };
            if let Some(reason) = failure {
                reporter.send(Progress::RollingBack {
                    reason: reason.to_string(),
                });
                retire(engine, service, id).await;
                return Err(reason);
            }
            id
        }
        Target::Targets(targets) => {
            let version = engine.saved(name).version;
            let id = engine.add_external_set(name, targets, version, 0);
            if let Err(reason) = wait_targets(engine, service, id, targets, deadline).await {
                reporter.send(Progress::RollingBack {
                    reason: reason.to_string(),
                });
                retire(engine, service, id).await;
                return Err(reason);
            }
            id
        }
    };
    if let Target::Targets(_) = target {
        // The label of an external deploy is its version, if given.
        let label = engine.saved(name).version;
        engine.with_set(name, new, |s| s.version = label);
    }
    let moved = match strategy {
        config::Strategy::Canary => canary(engine, service, &old, new, reporter, deadline).await,
        _ => switch(engine, service, &old, new, reporter, deadline).await,
    };
    if let Err(reason) = moved {
        reporter.send(Progress::RollingBack {
            reason: reason.to_string(),
        });
        set_shares(engine, name, &old, new, 0).await;
        reporter.send(Progress::Traffic { percent: 0 });
        retire(engine, service, new).await;
        return Err(reason);
    }
    if let Target::Version(spec) = target {
        engine.with_set(name, new, |s| s.version = spec.version.to_string());
    }
    // Blue-green keeps the old set for its rollback window; the others
    // drain it now.
    let window = service.blue_green.rollback_window;
    if strategy == config::Strategy::BlueGreen && !window.is_zero() && !old.is_empty() {
        stand_by(engine, service, &old, window);
    } else {
        for set in old {
            let version = engine
                .with_set(name, set, |s| s.version.clone())
                .unwrap_or_default();
            reporter.send(Progress::Draining { version });
            retire(engine, service, set).await;
        }
    }
    Ok(())
}

/// Blue-green's switch: smoke checks on every new member directly, then
/// 100 % of the traffic in one snapshot.
async fn switch(
    engine: &Engine,
    service: &config::Service,
    old: &[u64],
    new: u64,
    reporter: &Reporter,
    deadline: Instant,
) -> Result<(), Failure> {
    let name = service.name.as_str();
    let members: Vec<String> = engine
        .with_set(name, new, |s| {
            s.ready.iter().map(|(a, _)| a.authority.clone()).collect()
        })
        .unwrap_or_default();
    for path in &service.blue_green.smoke {
        let check = match &service.health {
            Some(h) => supervised::active_check(h, path),
            None => balance::ActiveCheck {
                path: path.clone(),
                host: None,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                expect: 200..=299,
            },
        };
        for member in &members {
            let host = member.rsplit_once(':').map_or(member.as_str(), |(h, _)| h);
            let handshake = supervised::probe_handshake(service, host);
            let probed = tokio::time::timeout_at(
                deadline,
                balance::probe_over(member, &check, handshake.as_ref()),
            )
            .await;
            match probed {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    reporter.send(Progress::Smoke {
                        address: member.clone(),
                        path: path.clone(),
                        status,
                    });
                }
                Ok(Ok(status)) => {
                    return Err(Failure::SmokeStatus {
                        path: path.clone(),
                        member: member.clone(),
                        status,
                    });
                }
                Ok(Err(source)) => {
                    return Err(Failure::SmokeProbe {
                        path: path.clone(),
                        member: member.clone(),
                        source,
                    });
                }
                Err(_) => return Err(Failure::Timeout(service.deploy_timeout)),
            }
        }
    }
    set_shares(engine, name, old, new, 100).await;
    reporter.send(Progress::Traffic { percent: 100 });
    Ok(())
}

/// Canary: the configured steps of traffic, each judged against the
/// stable set on the proxy's measurements of the step.
async fn canary(
    engine: &Engine,
    service: &config::Service,
    old: &[u64],
    new: u64,
    reporter: &Reporter,
    deadline: Instant,
) -> Result<(), Failure> {
    let name = service.name.as_str();
    let gates = &service.canary;
    for &step in &gates.steps {
        set_shares(engine, name, old, new, step).await;
        reporter.send(Progress::Traffic { percent: step });
        if step >= 100 {
            break;
        }
        let canary_stats = stats_of(engine, service, &[new]);
        let stable_stats = stats_of(engine, service, old);
        let canary_before = sum(&canary_stats);
        let stable_before = sum(&stable_stats);
        let judged_at = (Instant::now() + gates.pause).min(deadline);
        tokio::time::sleep_until(judged_at).await;
        loop {
            let served = sum(&canary_stats).since(&canary_before).requests();
            if served >= u64::from(gates.min_requests) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Failure::CanaryStarved {
                    timeout: service.deploy_timeout,
                    served,
                    needed: gates.min_requests,
                    step,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let canary_window = sum(&canary_stats).since(&canary_before);
        let stable_window = sum(&stable_stats).since(&stable_before);
        let canary = window(&canary_window);
        let stable = window(&stable_window);
        judge(&canary, &stable, gates)?;
        reporter.send(Progress::Judged {
            percent: step,
            canary_requests: canary.requests,
            canary_error_rate: canary.error_rate(),
            canary_p99_ms: canary.p99.map(millis),
            stable_p99_ms: stable.p99.map(millis),
        });
    }
    Ok(())
}

fn stats_of(engine: &Engine, service: &config::Service, sets: &[u64]) -> Vec<proxy::MemberStats> {
    let Some(proxy) = engine.proxy() else {
        return Vec::new();
    };
    let pool = service.pool_name();
    let members: Vec<String> = engine.with_runtime(&service.name, |rt| {
        rt.sets
            .iter()
            .filter(|s| sets.contains(&s.id))
            .flat_map(|s| s.ready.iter().map(|(a, _)| a.authority.clone()))
            .collect()
    });
    members
        .iter()
        .filter_map(|m| proxy.member_stats(&pool, m))
        .collect()
}

fn sum(stats: &[proxy::MemberStats]) -> proxy::StatsSnapshot {
    let mut total = proxy::StatsSnapshot::default();
    for s in stats {
        total.merge(&s.snapshot());
    }
    total
}

fn window(s: &proxy::StatsSnapshot) -> Window {
    Window {
        requests: s.requests(),
        failures: s.failures(),
        p99: s.quantile(0.99),
    }
}

/// Gives `new` `percent` of the traffic and the `old` sets the rest, in
/// one published snapshot.
///
/// A set that had no traffic had no members in the proxy either: its
/// members, which passed their readiness checks (or, on standby, stayed up),
/// are marked verified so that they take traffic from the first snapshot
/// instead of waiting for the proxy's own checks with nothing else routed.
async fn set_shares(engine: &Engine, service: &str, old: &[u64], new: u64, percent: u8) {
    let joining: Vec<String> = engine.with_runtime(service, |rt| {
        let mut joining = Vec::new();
        for set in rt.sets.iter_mut() {
            let share = if set.id == new {
                percent
            } else if old.contains(&set.id) {
                100 - percent
            } else {
                continue;
            };
            if set.share == 0 && share > 0 {
                joining.extend(set.ready.iter().map(|(a, _)| a.authority.clone()));
            }
            set.share = share;
        }
        joining
    });
    if let Some(proxy) = engine.proxy() {
        let pool = format!("service:{service}");
        for member in &joining {
            proxy.verified(&pool, member);
        }
    }
    engine.publish_logged(service).await;
}

/// Probes every new target until it passes the service's health check
/// (`healthy_threshold` successes in a row), or accepts a TCP connection
/// when the service has none; each has `ready_timeout`.
async fn wait_targets(
    engine: &Engine,
    service: &config::Service,
    set: u64,
    targets: &[config::UpstreamAddr],
    deadline: Instant,
) -> Result<(), Failure> {
    let until = deadline.min(Instant::now() + service.ready_timeout);
    let checks = targets.iter().map(|target| async move {
        let mut successes = 0;
        let mut last = String::from("never checked");
        loop {
            let (ok, wait) = match &service.health {
                Some(h) => {
                    let check = supervised::active_check(h, &h.path);
                    let handshake = supervised::probe_handshake(service, &target.host);
                    match balance::probe_over(&target.authority, &check, handshake.as_ref()).await {
                        Ok(status) if check.expect.contains(&status) => (true, h.interval),
                        Ok(status) => {
                            last = format!("GET {} answered {status}", h.path);
                            (false, h.interval)
                        }
                        Err(e) => {
                            last = e.to_string();
                            (false, h.interval)
                        }
                    }
                }
                None => match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(target.authority.as_str()),
                )
                .await
                {
                    Ok(Ok(_)) => (true, Duration::ZERO),
                    Ok(Err(e)) => {
                        last = e.to_string();
                        (false, Duration::from_millis(200))
                    }
                    Err(_) => {
                        last = "connect timed out".into();
                        (false, Duration::from_millis(200))
                    }
                },
            };
            successes = if ok { successes + 1 } else { 0 };
            let needed = service.health.as_ref().map_or(1, |h| h.healthy_threshold);
            if successes >= needed {
                engine.add_member(&service.name, set, target.clone(), 0);
                return Ok(());
            }
            if Instant::now() + wait >= until {
                return Err(Failure::TargetUnhealthy {
                    target: target.authority.clone(),
                    ready_timeout: service.ready_timeout,
                    last,
                });
            }
            tokio::time::sleep(wait).await;
        }
    });
    let results = futures_util::future::join_all(checks).await;
    results.into_iter().collect::<Result<Vec<()>, Failure>>()?;
    engine.with_set(&service.name, set, |s| {
        s.phase.send_replace(SetPhase::Ready)
    });
    Ok(())
}

/// Takes a set out of the traffic, lets its requests finish and stops its
/// instances (or forgets its targets), then removes it.
async fn retire(engine: &Engine, service: &config::Service, set: u64) {
    let name = service.name.as_str();
    let Some((group, members)) = engine.with_set(name, set, |s| {
        s.share = 0;
        (
            s.group.clone(),
            s.ready.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(),
        )
    }) else {
        return;
    };
    engine.publish_logged(name).await;
    match group {
        Some(group) => {
            if let Err(e) = group.shutdown().await {
                tracing::warn!(service = name, error = %e, "supervisor already stopped");
            }
        }
        None => {
            // Targets also in a set that keeps traffic are not waited for.
            let routed: Vec<config::UpstreamAddr> = engine.with_runtime(name, |rt| {
                rt.sets
                    .iter()
                    .filter(|s| s.id != set && s.share > 0)
                    .flat_map(|s| s.ready.iter().map(|(a, _)| a.clone()))
                    .collect()
            });
            let waits = members.iter().filter(|m| !routed.contains(m)).map(|m| {
                crate::wait_idle(engine.in_flight(name, &m.authority), service.drain_timeout)
            });
            futures_util::future::join_all(waits).await;
            for m in members.iter().filter(|m| !routed.contains(m)) {
                engine.forget(name, &m.authority);
            }
        }
    }
    engine.with_runtime(name, |rt| rt.sets.retain(|s| s.id != set));
    engine.publish_logged(name).await;
}

/// Keeps the old sets of a blue-green deploy for `window`, then retires
/// them unless a rollback or a new deploy took them first.
fn stand_by(engine: &Engine, service: &config::Service, old: &[u64], window: Duration) {
    for &set in old {
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        engine.with_runtime(&service.name, |rt| {
            rt.standby = Some(Standby { set, cancel });
        });
        let engine = engine.clone();
        let service = service.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(window) => {}
                _ = cancelled => return,
            }
            let mine = engine.with_runtime(&service.name, |rt| {
                if rt.standby.as_ref().is_some_and(|s| s.set == set) {
                    rt.standby = None;
                    true
                } else {
                    false
                }
            });
            if mine {
                tracing::info!(service = %service.name, "rollback window over; stopping the old version");
                retire(&engine, &service, set).await;
            }
        });
    }
}

/// Retires the standby set now, if there is one.
async fn end_standby(engine: &Engine, service: &str) {
    let Some(standby) = engine.with_runtime(service, |rt| rt.standby.take()) else {
        return;
    };
    let _ = standby.cancel.send(());
    if let Some(svc) = engine.service(service) {
        retire(engine, &svc, standby.set).await;
    }
}

pub(crate) async fn rollback(
    engine: &Engine,
    name: &str,
    reporter: Reporter,
) -> Result<Deployed, DeployError> {
    let service = engine
        .service(name)
        .ok_or_else(|| DeployError::UnknownService(name.to_owned()))?;
    let _busy = Busy::claim(engine, name, &reporter)?;
    let started = Instant::now();
    // Within a blue-green rollback window: switch back at once.
    if let Some(standby) = engine.with_runtime(name, |rt| rt.standby.take()) {
        let _ = standby.cancel.send(());
        let current: Vec<u64> = engine.with_runtime(name, |rt| {
            rt.sets
                .iter()
                .filter(|s| s.share > 0)
                .map(|s| s.id)
                .collect()
        });
        let version = engine
            .with_set(name, standby.set, |s| s.version.clone())
            .unwrap_or_default();
        let targets = engine
            .with_set(name, standby.set, |s| {
                s.targets.iter().map(|t| t.authority.clone()).collect()
            })
            .unwrap_or_default();
        let record = Deploy {
            version: version.clone(),
            targets,
            started: state::now(),
            outcome: Outcome::InProgress,
        };
        reporter.send(Progress::Started {
            service: name.to_owned(),
            version: version.clone(),
            strategy: "switch back".into(),
            instances: engine
                .with_set(name, standby.set, |s| s.ready.len())
                .unwrap_or(0),
        });
        set_shares(engine, name, &current, standby.set, 100).await;
        reporter.send(Progress::Traffic { percent: 100 });
        engine.note(name, &record, Outcome::RolledBack);
        for set in current {
            reporter.send(Progress::Draining {
                version: engine
                    .with_set(name, set, |s| s.version.clone())
                    .unwrap_or_default(),
            });
            retire(engine, &service, set).await;
        }
        return Ok(Deployed {
            version,
            strategy: config::Strategy::BlueGreen,
            duration: started.elapsed(),
            traffic: Traffic::default(),
        });
    }
    let saved = engine.saved(name);
    let Some(previous) = saved.previous().cloned() else {
        return Err(DeployError::NothingToRollBack(name.to_owned()));
    };
    let strategy = match service.strategy {
        config::Strategy::Canary => config::Strategy::BlueGreen,
        s => s,
    };
    let target = match &service.runner {
        config::Runner::Supervised(spec) => {
            let mut spec = spec.clone();
            spec.version = previous.version.parse().map_err(|source| {
                DeployError::Failed(Failure::SavedVersion {
                    version: previous.version.clone(),
                    source,
                })
            })?;
            Target::Version(spec)
        }
        config::Runner::External(_) => Target::Targets(
            previous
                .targets
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| DeployError::Failed(Failure::SavedTargets(e)))?,
        ),
    };
    run(
        engine,
        &service,
        strategy,
        previous.version,
        target,
        &reporter,
        Outcome::RolledBack,
    )
    .await
}
