//! `baton exec` under load: repeated SIGHUP restarts and SIGTERM drains,
//! counting every failed request.

use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{Load, LoadConfig, Phase};

use crate::support::{self, baton_exec, get};

fn load_for(addr: &str) -> LoadConfig {
    LoadConfig {
        keepalive_workers: 3,
        fresh_workers: 2,
        post_workers: 2,
        slow_workers: 3,
        slow_ms: 250,
        request_timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(90),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    }
}

/// The zero-downtime claim of `baton exec`: ten SIGHUP restarts of two
/// instances under keep-alive, new-connection, POST and slow load lose no
/// request, and every restart really brings a new generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_restarts_under_load_lose_no_request() {
    let _heavy = support::heavy().await;
    let hello = support::hello();
    let (mut baton, addr) = baton_exec(
        &["--listen", "http=127.0.0.1:0", "--instances", "2"],
        &[hello.to_str().unwrap(), "--app-version", "v1"],
    )
    .await;
    baton.wait_for("rollout complete generation=1").await;

    let load = Load::start(load_for(&addr));
    assert!(load.wait_for_requests(100).await, "load did not start");
    let restarts = 10;
    for generation in 2..=restarts + 1 {
        load.set_phase(Phase::Switching);
        baton.signal(libc::SIGHUP);
        baton
            .wait_for(&format!("rollout complete generation={generation}"))
            .await;
        load.set_phase(Phase::Steady);

        // A new connection now lands on the new generation only.
        let pids = baton.generation_pids(generation);
        assert_eq!(pids.len(), 2, "generation {generation}: {pids:?}");
        let r = get(&addr, "/").await;
        assert_eq!(r.status, 200);
        assert!(
            pids.contains(&r.instance_pid()),
            "generation {generation}: answered by {:?}, expected one of {pids:?}",
            r.header("x-instance")
        );
        assert!(
            load.wait_for_requests(50).await,
            "load stalled after restart"
        );
    }
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
    // Every kind of request really ran, including slow ones across switches.
    for kind in ["keepalive", "fresh", "post", "slow"] {
        let ok = report.workers.get(kind).map_or(0, |w| w.ok);
        assert!(ok > 0, "no successful {kind} request: {report}");
    }
    assert!(
        report.latency.switching.count > 0,
        "no request during a switch"
    );
    // Two instances per generation, eleven generations, all seen by the load.
    assert!(
        report.instances.len() >= 2 * restarts as usize,
        "{:?}",
        report.instances
    );

    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
}

/// SIGTERM to `baton exec` lets a slow request in flight finish, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let hello = support::hello();
    let (mut baton, addr) = baton_exec(
        &["--listen", "127.0.0.1:0", "--drain-timeout", "20s"],
        &[hello.to_str().unwrap()],
    )
    .await;
    baton.wait_for("rollout complete generation=1").await;

    let slow = tokio::spawn({
        let addr = addr.clone();
        async move { get(&addr, "/slow?ms=1500").await }
    });
    baton.wait_for("slow request started").await;
    baton.signal(libc::SIGTERM);
    baton.wait_for("draining").await;

    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slept 1500 ms\n");
    let status = baton.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", baton.dump());
    baton.wait_for("all instances stopped cleanly").await;
}
