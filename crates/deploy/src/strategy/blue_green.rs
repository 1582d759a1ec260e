//! Blue-green: the new set is smoke-checked member by member, then takes
//! 100 % of the traffic in one snapshot; the old set stands by for the
//! rollback window, then is retired (unless a rollback or a new deploy
//! took it first).
//!
//! The smoke checks talk to the new members directly, never through the
//! proxy: no client request reaches an unchecked member.

use std::time::Duration;

use tokio::time::Instant;

use super::traffic::{retire, set_shares};
use crate::progress::{Progress, Reporter};
use crate::sets::Standby;
use crate::{Engine, Failure, supervised};

/// Blue-green's switch: smoke checks on every new member directly, then
/// 100 % of the traffic in one snapshot.
pub(super) async fn switch(
    engine: &Engine,
    service: &config::Service,
    old: &[u64],
    new: u64,
    reporter: &Reporter,
    deadline: Instant,
) -> Result<(), Failure> {
    smoke(engine, service, new, reporter, deadline).await?;
    set_shares(engine, &service.name, old, new, 100).await;
    reporter.send(Progress::Traffic { percent: 100 });
    Ok(())
}

/// The smoke checks of `service.blue_green.smoke` on every member of the
/// set `new`, directly (never through the proxy).
pub(crate) async fn smoke(
    engine: &Engine,
    service: &config::Service,
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
            Some(h) => proxy::active_check(h, path),
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
    Ok(())
}

/// Keeps the old sets of a blue-green deploy for `window`, then retires
/// them unless a rollback or a new deploy took them first.
pub(super) fn stand_by(engine: &Engine, service: &config::Service, old: &[u64], window: Duration) {
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
pub(crate) async fn end_standby(engine: &Engine, service: &str) {
    let Some(standby) = engine.with_runtime(service, |rt| rt.standby.take()) else {
        return;
    };
    let _ = standby.cancel.send(());
    if let Some(svc) = engine.service(service) {
        retire(engine, &svc, standby.set).await;
    }
}
