//! Pool behaviour: selection over available members, limits, exclusions, and
//! passive ejection on tokio's paused clock.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

fn spec(key: &str, weight: u32, max_connections: usize) -> MemberSpec {
    MemberSpec {
        key: key.to_owned(),
        weight,
        max_connections,
    }
}

fn members(weights: &[u32]) -> Vec<(MemberSpec, Arc<MemberHealth>)> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let key = format!("{}:80", char::from(b'a' + u8::try_from(i).unwrap()));
            (spec(&key, w, 0), MemberHealth::new(true))
        })
        .collect()
}

fn pool(policy: Policy, weights: &[u32]) -> Pool {
    Pool::new("test", policy, members(weights), None)
}

/// Picks (and releases at once) `n` times; the keys' first letters.
fn sequence(pool: &Pool, exclude: &[usize], n: usize) -> String {
    (0..n)
        .map(|_| {
            pool.pick(exclude)
                .map_or('-', |p| p.key().chars().next().unwrap())
        })
        .collect()
}

fn counts(pool: &Pool, n: usize) -> Vec<usize> {
    let mut counts = vec![0; pool.members().len()];
    for _ in 0..n {
        counts[pool.pick(&[]).unwrap().index()] += 1;
    }
    counts
}

#[test]
fn round_robin_follows_nginx_sequence() {
    let pool = pool(Policy::WeightedRoundRobin, &[5, 1, 1]);
    assert_eq!(sequence(&pool, &[], 7), "aabacaa");
}

#[test]
fn round_robin_distribution_over_4000_picks() {
    let pool = pool(Policy::WeightedRoundRobin, &[3, 1]);
    let counts = counts(&pool, 4000);
    assert!(counts[0].abs_diff(3000) <= 40, "{counts:?}");
    assert!(counts[1].abs_diff(1000) <= 40, "{counts:?}");
}

#[test]
fn least_requests_distribution_follows_weights_when_idle() {
    fastrand::seed(7);
    let pool = pool(Policy::LeastRequests, &[3, 1]);
    let counts = counts(&pool, 4000);
    assert!(counts[0].abs_diff(3000) <= 120, "{counts:?}");
}

#[test]
fn zero_weight_and_unavailable_members_are_skipped() {
    for policy in [Policy::WeightedRoundRobin, Policy::LeastRequests] {
        let pool = pool(policy, &[1, 0, 1]);
        pool.members()[2].health().set_healthy(false);
        assert_eq!(sequence(&pool, &[], 20), "a".repeat(20), "{policy:?}");
        pool.members()[0].health().set_healthy(false);
        assert!(pool.pick(&[]).is_none(), "{policy:?}");
        assert_eq!(pool.available(Instant::now()), 0);
    }
}

#[test]
fn excluded_members_are_skipped() {
    for policy in [Policy::WeightedRoundRobin, Policy::LeastRequests] {
        let pool = pool(policy, &[1, 1, 1]);
        assert_eq!(sequence(&pool, &[0, 2], 10), "b".repeat(10), "{policy:?}");
        assert!(pool.pick(&[0, 1, 2]).is_none(), "{policy:?}");
    }
}

#[test]
fn max_connections_is_respected_across_snapshots() {
    let health = [MemberHealth::new(true), MemberHealth::new(true)];
    let specs = [spec("a:80", 10, 2), spec("b:80", 1, 0)];
    let build = || {
        let members = specs.iter().cloned().zip(health.iter().cloned()).collect();
        Pool::new("limited", Policy::WeightedRoundRobin, members, None)
    };
    let old = build();
    let held: Vec<Picked> = (0..2).map(|_| old.pick(&[1]).unwrap()).collect();
    assert_eq!(health[0].in_flight(), 2);
    assert!(old.pick(&[1]).is_none(), "a is full");
    // A reload builds a new pool over the same health: the limit still counts
    // the requests started on the old snapshot.
    let new = build();
    assert_eq!(sequence(&new, &[], 5), "bbbbb");
    drop(held);
    assert_eq!(health[0].in_flight(), 0);
    assert_eq!(new.pick(&[1]).unwrap().key(), "a:80");
}

#[test]
fn picked_counts_in_flight_until_dropped_or_reported() {
    let pool = pool(Policy::LeastRequests, &[1]);
    let health = pool.members()[0].health().clone();
    let first = pool.pick(&[]).unwrap();
    let second = pool.pick(&[]).unwrap();
    assert_eq!(health.in_flight(), 2);
    first.report(Outcome::Success);
    assert_eq!(health.in_flight(), 1);
    drop(second);
    assert_eq!(health.in_flight(), 0);
}

#[test]
fn least_requests_prefers_the_less_loaded_member() {
    // With two members both are always drawn, so the choice is determined.
    let two = pool(Policy::LeastRequests, &[1, 1]);
    let _load: Vec<Picked> = (0..3).map(|_| two.pick(&[1]).unwrap()).collect();
    assert_eq!(sequence(&two, &[], 100), "b".repeat(100));

    // With three, the most loaded one loses against either other member.
    let three = pool(Policy::LeastRequests, &[1, 1, 1]);
    let _a: Vec<Picked> = (0..5).map(|_| three.pick(&[1, 2]).unwrap()).collect();
    let _c: Vec<Picked> = (0..2).map(|_| three.pick(&[0, 1]).unwrap()).collect();
    let picked = sequence(&three, &[], 300);
    assert!(!picked.contains('a'), "{picked}");
    assert!(picked.contains('b'), "{picked}");
}

fn passive(threshold: u32) -> Option<PassiveConfig> {
    Some(PassiveConfig {
        consecutive_failures: threshold,
        ejection_time: Duration::from_secs(10),
        max_ejection_time: Duration::from_secs(30),
    })
}

/// Sends `n` failed requests to member `a` of a two-member pool.
fn fail_a(pool: &Pool, n: usize) {
    for _ in 0..n {
        let picked = pool.pick(&[1]).expect("a is available");
        assert_eq!(picked.index(), 0);
        picked.report(Outcome::ServerError);
    }
}

#[tokio::test(start_paused = true)]
async fn passive_ejection_backs_off_doubling_up_to_the_cap() {
    let pool = Pool::new(
        "p",
        Policy::WeightedRoundRobin,
        members(&[1, 1]),
        passive(3),
    );
    let mut watch = pool.members()[0].health().subscribe();
    for expected_secs in [10, 20, 30, 30] {
        fail_a(&pool, 3);
        assert!(watch.has_changed().unwrap(), "ejection is announced");
        assert!(!watch.borrow_and_update().is_available());
        assert_eq!(sequence(&pool, &[], 6), "bbbbbb");
        advance(Duration::from_secs(expected_secs) - Duration::from_millis(1)).await;
        assert!(pool.pick(&[1]).is_none(), "still ejected");
        advance(Duration::from_millis(1)).await;
        assert_eq!(sequence(&pool, &[1], 1), "a", "back after {expected_secs}s");
        assert!(watch.borrow_and_update().is_available());
    }
    // A success resets the backoff; the streak restarts from zero.
    pool.pick(&[1]).unwrap().report(Outcome::Success);
    fail_a(&pool, 2);
    pool.pick(&[1]).unwrap().report(Outcome::Cancelled);
    fail_a(&pool, 1);
    assert!(pool.pick(&[1]).is_none());
    advance(Duration::from_secs(10)).await;
    assert!(pool.pick(&[1]).is_some());
}

#[tokio::test(start_paused = true)]
async fn success_between_failures_prevents_ejection() {
    let pool = Pool::new("p", Policy::LeastRequests, members(&[1, 1]), passive(2));
    for _ in 0..10 {
        fail_a(&pool, 1);
        pool.pick(&[1]).unwrap().report(Outcome::Success);
    }
    assert_eq!(pool.available(Instant::now()), 2);
}

#[tokio::test(start_paused = true)]
async fn the_last_available_member_is_never_ejected() {
    let pool = Pool::new(
        "p",
        Policy::WeightedRoundRobin,
        members(&[1, 1]),
        passive(2),
    );
    pool.members()[1].health().set_healthy(false);
    fail_a(&pool, 5);
    assert_eq!(sequence(&pool, &[], 3), "aaa", "a is all there is");
    // Once b is back, a's kept streak ejects it at the next failure.
    pool.members()[1].health().set_healthy(true);
    fail_a(&pool, 1);
    assert_eq!(sequence(&pool, &[], 3), "bbb");
    // With a ejected, b turning unhealthy leaves nothing: a fast None (503).
    pool.members()[1].health().set_healthy(false);
    assert!(pool.pick(&[]).is_none());
}

#[tokio::test(start_paused = true)]
async fn health_survives_a_reload() {
    let members = members(&[1, 1]);
    let old = Pool::new("p", Policy::WeightedRoundRobin, members.clone(), passive(1));
    let held = old.pick(&[1]).unwrap();
    fail_a(&old, 1);
    let new = Pool::new("p", Policy::LeastRequests, members, passive(1));
    assert_eq!(new.members()[0].health().in_flight(), 1);
    assert!(new.pick(&[1]).is_none(), "a is still ejected");
    let snapshot = new.members()[0].health().snapshot(Instant::now());
    assert_eq!(snapshot.ejections, 1);
    assert!(snapshot.ejected_until.is_some());
    drop(held);
}

#[test]
fn without_passive_config_failures_change_nothing() {
    let pool = pool(Policy::WeightedRoundRobin, &[1, 1]);
    fail_a(&pool, 50);
    assert_eq!(pool.available(Instant::now()), 2);
}

#[test]
fn pools_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Pool>();
    check::<Picked>();
    check::<Arc<MemberHealth>>();
}

#[tokio::test(start_paused = true)]
async fn stats_count_every_report_but_cancelled_without_passive_config() {
    let pool = pool(Policy::WeightedRoundRobin, &[1, 1]);
    let a = pool.members()[0].health().clone();
    for outcome in [
        Outcome::Success,
        Outcome::ServerError,
        Outcome::ConnectFailure,
        Outcome::Timeout,
        Outcome::Cancelled,
    ] {
        let picked = pool.pick(&[1]).unwrap();
        advance(Duration::from_millis(10)).await;
        picked.report(outcome);
    }
    // Dropped without a report: cancelled, not counted either.
    drop(pool.pick(&[1]).unwrap());
    let stats = a.stats().snapshot();
    assert_eq!((stats.requests(), stats.failures()), (4, 3));
    let p100 = stats.quantile(1.0).unwrap();
    assert!(
        p100 > Duration::from_millis(10) && p100 <= Duration::from_micros(12_500),
        "latency runs from the pick to the report: {p100:?}"
    );
    let b = pool.members()[1].health().stats().snapshot();
    assert_eq!(b.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn stats_use_injected_instants_and_survive_a_reload() {
    let members = members(&[1]);
    let old = Pool::new("p", Policy::WeightedRoundRobin, members.clone(), passive(5));
    let start = Instant::now();
    let picked = old.pick_at(&[], start).unwrap();
    let new = Pool::new("p", Policy::LeastRequests, members, None);
    picked.report_at(Outcome::Success, start + Duration::from_secs(2));
    new.pick(&[]).unwrap().report(Outcome::Timeout);
    let stats = new.members()[0].health().stats().snapshot();
    assert_eq!((stats.requests(), stats.failures()), (2, 1));
    let slowest = stats.quantile(1.0).unwrap();
    assert!(
        slowest > Duration::from_secs(2) && slowest <= Duration::from_millis(2500),
        "{slowest:?}"
    );
}
