//! Active checks over real sockets. Transitions are awaited on the member's
//! availability watch, never slept for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use balance::{
    ActiveCheck, Handshake, MemberHealth, ProbeError, ProbeIo, probe, probe_over, spawn_active,
};
use tokio::net::TcpListener;

use crate::support::{Mode, Upstream, within};

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
