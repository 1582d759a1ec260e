//! Active checks over real sockets. Transitions are awaited on the member's
//! availability watch, never slept for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use balance::{
    ActiveCheck, Handshake, MemberHealth, MemberSpec, Peers, Policy, Pool, ProbeError, ProbeIo,
    probe, probe_over, spawn_active, spawn_active_over,
};
use tokio::net::TcpListener;

use crate::support::{Mode, Silent, Upstream, within};

fn check(healthy_threshold: u32, unhealthy_threshold: u32) -> ActiveCheck {
    ActiveCheck {
        path: "/healthz?deep=1".into(),
        host: None,
        interval: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        healthy_threshold,
        unhealthy_threshold,
        expect: 200..=299,
    }
}

async fn wait_healthy(health: &Arc<MemberHealth>, healthy: bool) {
    let mut watch = health.subscribe();
    within(watch.wait_for(|a| a.healthy == healthy))
        .await
        .unwrap();
}

#[tokio::test]
async fn thresholds_gate_both_transitions_and_the_watch_fires() {
    let upstream = Upstream::start(Mode::Healthy).await;
    let health = MemberHealth::new(false);
    let mut watch = health.subscribe();
    let _checker = spawn_active(upstream.addr.to_string(), health.clone(), check(3, 2));

    within(watch.changed()).await.unwrap();
    assert!(watch.borrow_and_update().is_available());
    assert!(
        upstream.served() >= 3,
        "healthy after {} probe(s), threshold 3",
        upstream.served()
    );

    upstream.set_mode(Mode::Failing);
    within(watch.changed()).await.unwrap();
    assert!(!watch.borrow_and_update().healthy);
    let failed = upstream.seen().iter().filter(|s| s.status == 503).count();
    assert!(
        failed >= 2,
        "unhealthy after {failed} failed probe(s), threshold 2"
    );
    assert!(!health.is_available(tokio::time::Instant::now()));
    assert_eq!(
        health
            .snapshot(tokio::time::Instant::now())
            .active_successes,
        0
    );

    upstream.set_mode(Mode::Healthy);
    wait_healthy(&health, true).await;
}

#[tokio::test]
async fn a_flapping_upstream_never_changes_the_flag() {
    for initially_healthy in [true, false] {
        let upstream = Upstream::start(Mode::Flapping).await;
        let health = MemberHealth::new(initially_healthy);
        let watch = health.subscribe();
        let checker = spawn_active(upstream.addr.to_string(), health.clone(), check(2, 2));
        // The checker probes one at a time, so once the 14th answer is out
        // the first 13 have been recorded; alternating answers must not have
        // moved a flag guarded by thresholds of 2.
        upstream.wait_served(14).await;
        drop(checker);
        assert!(!watch.has_changed().unwrap(), "flag moved while flapping");
        assert_eq!(health.is_healthy(), initially_healthy);
    }
}

#[tokio::test]
async fn each_probe_is_a_new_connection_with_connection_close() {
    let upstream = Upstream::start(Mode::Healthy).await;
    let health = MemberHealth::new(true);
    let mut check = check(1, 1);
    check.host = Some("health.internal".into());
    let _checker = spawn_active(upstream.addr.to_string(), health, check);
    upstream.wait_served(4).await;
    let seen = upstream.seen();
    for (i, probe) in seen.iter().enumerate() {
        assert_eq!(probe.connection, i as u64 + 1, "{seen:?}");
        assert_eq!(probe.connection_header, "close");
        assert_eq!(probe.host, "health.internal");
        assert_eq!(probe.path, "/healthz?deep=1");
    }
}

#[tokio::test]
async fn the_host_header_defaults_to_the_member_key() {
    let upstream = Upstream::start(Mode::Failing).await;
    let key = upstream.addr.to_string();
    assert_eq!(probe(&key, &check(1, 1)).await, Ok(503));
    assert_eq!(upstream.seen()[0].host, key);
}

#[tokio::test]
async fn a_refused_connection_makes_the_member_unhealthy() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    assert!(matches!(
        probe(&addr, &check(1, 1)).await,
        Err(ProbeError::Connect { .. })
    ));
    let health = MemberHealth::new(true);
    let _checker = spawn_active(addr, health.clone(), check(2, 2));
    wait_healthy(&health, false).await;
    assert!(health.snapshot(tokio::time::Instant::now()).active_failures >= 2);
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    // Accepts connections (the kernel does, from the backlog) but never
    // answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let mut check = check(1, 1);
    check.timeout = Duration::from_millis(50);
    assert_eq!(probe(&addr, &check).await, Err(ProbeError::TimedOut));
    let health = MemberHealth::new(true);
    let _checker = spawn_active(addr, health.clone(), check);
    wait_healthy(&health, false).await;
    drop(silent);
}

#[tokio::test]
async fn an_unresolvable_host_fails_the_probe() {
    let result = probe("no-such-host.invalid:80", &check(1, 1)).await;
    assert!(
        matches!(
            result,
            Err(ProbeError::Resolve { .. } | ProbeError::TimedOut)
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_handshake_runs_on_each_probes_connection_and_its_failure_fails_the_probe() {
    let upstream = Upstream::start(Mode::Healthy).await;
    let key = upstream.addr.to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // A pass-through handshake (a TLS one would wrap the stream).
    let through: Handshake = Arc::new(move |tcp| {
        counted.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(Box::new(tcp) as Box<dyn ProbeIo>) })
    });
    assert_eq!(
        probe_over(&key, &check(1, 1), Some(&through)).await,
        Ok(200)
    );
    assert_eq!(
        probe_over(&key, &check(1, 1), Some(&through)).await,
        Ok(200)
    );
    assert_eq!(calls.load(Ordering::Relaxed), 2);

    let refusing: Handshake =
        Arc::new(|_tcp| Box::pin(async { Err(std::io::Error::other("bad certificate")) }));
    let result = probe_over(&key, &check(1, 1), Some(&refusing)).await;
    assert_eq!(
        result,
        Err(ProbeError::Handshake {
            message: "bad certificate".into()
        })
    );
    assert_eq!(upstream.served(), 2, "no request after a failed handshake");
}

/// The prober's thread is kept from running past a probe's deadline (the
/// CPU starved by other processes, say) while the member, on a thread of
/// its own, is fine: the probe is not a timeout.
#[test]
fn a_starved_prober_does_not_blame_the_member() {
    let member = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = member.block_on(Upstream::start(Mode::Healthy));
    let prober = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    prober.block_on(async {
        // The probe's own work on its connection (a handshake that takes
        // 10 ms of the prober's time) says when it started.
        let (started, mut has_started) = tokio::sync::mpsc::unbounded_channel();
        let handshake: Handshake = Arc::new(move |tcp| {
            let _ = started.send(());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(Box::new(tcp) as Box<dyn ProbeIo>)
            })
        });
        let mut check = check(1, 1);
        check.timeout = Duration::from_millis(40);
        let probe = tokio::spawn({
            let addr = upstream.addr.to_string();
            async move { probe_over(&addr, &check, Some(&handshake)).await }
        });
        within(has_started.recv()).await.unwrap();
        // Blocks the prober's only thread past the deadline: the starvation
        // under test, not a wait for an event.
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(within(probe).await.unwrap(), Ok(200));
    });
    assert_eq!(upstream.served(), 1);
}

fn pool_of(members: &[(&str, &Arc<MemberHealth>)]) -> (Pool, Arc<Peers>) {
    let members = members
        .iter()
        .map(|(key, health)| {
            let spec = MemberSpec {
                key: (*key).to_owned(),
                weight: 1,
                max_connections: 0,
            };
            (spec, Arc::clone(health))
        })
        .collect();
    let pool = Pool::new("p", Policy::WeightedRoundRobin, members, None);
    let peers = Peers::new();
    peers.set(&pool);
    (pool, peers)
}

/// Every member of a pool times out at once (what a prober starved of CPU
/// sees): one leaves, the last one stays, whatever the order in which
/// their checkers decide, and stays through further timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_alone_never_take_the_last_available_member_out() {
    let (a, b) = (Silent::start().await, Silent::start().await);
    let (a_key, b_key) = (a.addr.to_string(), b.addr.to_string());
    let (a_health, b_health) = (MemberHealth::new(true), MemberHealth::new(true));
    let (pool, peers) = pool_of(&[(&a_key, &a_health), (&b_key, &b_health)]);
    let mut check = check(1, 1);
    check.timeout = Duration::from_millis(20);
    let spawn = |key: &str, health: &Arc<MemberHealth>| {
        spawn_active_over(
            key,
            health.clone(),
            check.clone(),
            None,
            Some(peers.clone()),
        )
    };
    let _checkers = (spawn(&a_key, &a_health), spawn(&b_key, &b_health));
    let mut a_watch = a_health.subscribe();
    let mut b_watch = b_health.subscribe();
    within(async {
        tokio::select! {
            r = a_watch.wait_for(|a| !a.healthy) => r.map(drop),
            r = b_watch.wait_for(|a| !a.healthy) => r.map(drop),
        }
    })
    .await
    .unwrap();
    // Three more timeouts of each: nothing moves.
    let (a_seen, b_seen) = (a.accepted(), b.accepted());
    a.wait_accepted(a_seen + 3).await;
    b.wait_accepted(b_seen + 3).await;
    let now = tokio::time::Instant::now();
    assert_eq!(pool.available(now), 1, "{a_health:?}\n{b_health:?}");
    let kept = if a_health.is_healthy() {
        &a_health
    } else {
        &b_health
    };
    assert!(kept.snapshot(now).active_failures >= 3, "{kept:?}");
}

/// Refused connections are an answer, not a timeout: even the last member
/// leaves.
#[tokio::test]
async fn a_refusing_last_member_leaves_its_pool() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key = closed.local_addr().unwrap().to_string();
    drop(closed);
    let health = MemberHealth::new(true);
    let (_pool, peers) = pool_of(&[(&key, &health)]);
    let _checker = spawn_active_over(&key, health.clone(), check(2, 2), None, Some(peers));
    wait_healthy(&health, false).await;
}
