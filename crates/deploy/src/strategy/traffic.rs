//! Moving traffic between a service's sets: shares set in one published
//! snapshot, and a set retired (out of the traffic, its requests finished,
//! its instances stopped or targets forgotten, then removed).
//!
//! A member leaves the published pool before anything stops it.

use crate::Engine;

/// Gives `new` `percent` of the traffic and the `old` sets the rest, in
/// one published snapshot.
///
/// A set that had no traffic had no members in the proxy either: its
/// members, which passed their readiness checks (or, on standby, stayed up),
/// are marked verified so that they take traffic from the first snapshot
/// instead of waiting for the proxy's own checks with nothing else routed.
pub(crate) async fn set_shares(engine: &Engine, service: &str, old: &[u64], new: u64, percent: u8) {
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

/// Takes a set out of the traffic, lets its requests finish and stops its
/// instances (or forgets its targets), then removes it.
pub(crate) async fn retire(engine: &Engine, service: &config::Service, set: u64) {
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
                crate::publish::wait_idle(
                    engine.in_flight(name, &m.authority),
                    service.drain_timeout,
                )
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
