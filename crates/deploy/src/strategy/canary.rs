//! Canary: the configured steps of traffic on the new set, each held for
//! the step's pause and until the canary served enough requests (woken as
//! its requests end, never polling), then
//! judged (`judge`) on the proxy's own per-member measurements against the
//! stable set over the same step.
//!
//! Reads statistics only; the judgement itself is the pure `judge`.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use handoff::time::SaturatingAdd;
use tokio::time::Instant;

use super::traffic::set_shares;
use crate::judge::{Window, judge};
use crate::progress::{Progress, Reporter, millis};
use crate::{Engine, Failure};

/// Canary: the configured steps of traffic, each judged against the
/// stable set on the proxy's measurements of the step.
pub(super) async fn canary(
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
        let judged_at = Instant::now().saturating_add(gates.pause).min(deadline);
        tokio::time::sleep_until(judged_at).await;
        let served = || sum(&canary_stats).since(&canary_before).requests();
        let enough = || served() >= u64::from(gates.min_requests);
        let counted = tokio::time::timeout_at(deadline, until_any(&canary_stats, &enough)).await;
        if counted.is_err() && !enough() {
            return Err(Failure::CanaryStarved {
                timeout: service.deploy_timeout,
                served: served(),
                needed: gates.min_requests,
                step,
            });
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

/// Resolves once `enough()` holds, checked again each time a request to
/// one of `members` ends (only their requests move it); never without
/// members.
pub(crate) async fn until_any(members: &[proxy::MemberStats], enough: &impl Fn() -> bool) {
    if enough() {
        return;
    }
    let mut any: FuturesUnordered<_> = members.iter().map(|m| m.until(enough)).collect();
    if any.next().await.is_none() {
        std::future::pending::<()>().await;
    }
}

pub(super) fn stats_of(
    engine: &Engine,
    service: &config::Service,
    sets: &[u64],
) -> Vec<proxy::MemberStats> {
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

pub(crate) fn sum(stats: &[proxy::MemberStats]) -> proxy::StatsSnapshot {
    let mut total = proxy::StatsSnapshot::default();
    for s in stats {
        total.merge(&s.snapshot());
    }
    total
}

pub(crate) fn window(s: &proxy::StatsSnapshot) -> Window {
    Window {
        requests: s.requests(),
        failures: s.failures(),
        p99: s.quantile(0.99),
    }
}
