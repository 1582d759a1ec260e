//! Blue-green and canary (and every deploy of an external service): a new
//! set starts next to the old one with no traffic, traffic moves to it
//! (`blue_green::switch` or `canary::canary`), the old one is retired or
//! kept on standby. Every failure takes the traffic back to the old set and
//! retires the new one before returning.

use std::time::Duration;

use handoff::time::SaturatingAdd;
use tokio::time::Instant;

use super::Target;
use super::blue_green::{stand_by, switch};
use super::canary::canary;
use super::traffic::{retire, set_shares};
use crate::progress::{Progress, Reporter};
use crate::sets::SetPhase;
use crate::{Engine, Failure, supervised};

/// Blue-green and canary (and every deploy of an external service): a new
/// set next to the old one, traffic moved to it, the old one retired.
pub(super) async fn two_sets(
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
    let mut recorded = None;
    let new = match target {
        Target::Version(spec) => {
            let (id, mut phase) = engine
                .start_set(service, spec, 0)
                .map_err(|e| Failure::Start(std::sync::Arc::new(e)))?;
            let failure = crate::sets::ready_by(&mut phase, deadline, service.deploy_timeout).await;
            if let Some(reason) = failure {
                reporter.send(Progress::RollingBack {
                    reason: reason.to_string(),
                });
                retire(engine, service, id).await;
                return Err(reason);
            }
            // Its instances are recorded beside the deploy: a baton
            // restarted after a crash finds them (waited for before the
            // deploy returns).
            recorded = Some(engine.record_instances_soon());
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
    if let Some(ticket) = recorded {
        engine.recorded(ticket).await;
    }
    Ok(())
}

/// Probes every new target until it passes the service's health check
/// (`healthy_threshold` successes in a row, `start_interval` apart), or accepts a TCP connection
/// when the service has none; each has `ready_timeout`.
pub(super) async fn wait_targets(
    engine: &Engine,
    service: &config::Service,
    set: u64,
    targets: &[config::UpstreamAddr],
    deadline: Instant,
) -> Result<(), Failure> {
    let until = deadline.min(Instant::now().saturating_add(service.ready_timeout));
    let checks = targets.iter().map(|target| async move {
        let mut successes = 0;
        let mut last = String::from("never checked");
        loop {
            let (ok, wait) = match &service.health {
                Some(h) => {
                    let check = proxy::active_check(h, &h.path);
                    let handshake = supervised::probe_handshake(service, &target.host);
                    match balance::probe_over(&target.authority, &check, handshake.as_ref()).await {
                        Ok(status) if check.expect.contains(&status) => (true, h.start_interval),
                        Ok(status) => {
                            last = format!("GET {} answered {status}", h.path);
                            (false, h.start_interval)
                        }
                        Err(e) => {
                            last = e.to_string();
                            (false, h.start_interval)
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
            if Instant::now().saturating_add(wait) >= until {
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
