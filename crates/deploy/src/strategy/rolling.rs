//! Rolling: the service's one set replaces its instances a few at a time,
//! within `max_surge` / `max_unavailable`, by its group's own rollout. Its
//! way back is a rollout of the old version over the new instances that
//! made it.
//!
//! Must never start a second set: the group replaces its instances itself.

use tokio::time::Instant;

use crate::progress::{Progress, Reporter};
use crate::{Engine, Failure, Undo, supervised};

/// Rolling: the service's one set replaces its instances within
/// `max_surge` / `max_unavailable`. A failure leaves the instances that
/// were ready serving; if some of those are of the new version, the old
/// version is rolled out again over them.
pub(super) async fn rolling(
    engine: &Engine,
    service: &config::Service,
    spec: &config::Supervised,
    reporter: &Reporter,
    deadline: Instant,
    limits: Option<supervisor::Limits>,
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
    let command =
        supervisor::CommandSource::PerInstance(supervised::command_fn(engine, spec.clone()));
    let reason =
        match tokio::time::timeout_at(deadline, group.reload_within(Some(command), limits)).await {
            Ok(Ok(Ok(generation))) => {
                engine.with_set(name, set, |s| s.version = spec.version.to_string());
                // The record a restarted baton adopts from says the new version.
                engine.record_instances().await;
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
        let command = supervisor::CommandSource::PerInstance(supervised::command_fn(engine, old));
        match group.reload_within(Some(command), limits).await {
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
    // A node's share of a cluster-wide bound is given back only once the
    // node is whole again: the instances the failed rollout stopped have
    // been replaced and are ready.
    if limits.is_some() {
        let whole = group.scale(spec.instances as usize);
        if tokio::time::timeout(service.deploy_timeout, whole)
            .await
            .is_err()
        {
            tracing::warn!(
                service = name,
                "not back to full strength within the deploy timeout"
            );
        }
    }
    Err(reason)
}
