//! Member and pool statistics measured by the proxy.

use std::time::Duration;

use http::StatusCode;

use super::{Upstream, broken_upstream, closed_port, config, get, start};

#[tokio::test]
async fn member_and_pool_stats_count_requests_failures_and_latency() {
    let a = Upstream::start("a").await;
    let cfg = config(&[("app", &[a.addr])], "app");
    let running = start(&cfg).await;
    let member = running
        .proxy
        .member_stats("app", &a.addr.to_string())
        .unwrap();
    let pool = running.proxy.pool_stats("app").unwrap();
    for _ in 0..3 {
        assert_eq!(get(running.addr, "/").await.status, StatusCode::OK);
    }
    let before = pool.snapshot();
    assert_eq!(get(running.addr, "/status/500").await.status, 500);
    assert_eq!(get(running.addr, "/status/404").await.status, 404);

    let m = member.snapshot();
    assert_eq!((m.requests(), m.failures()), (5, 1), "{m:?}");
    let p = pool.snapshot();
    assert_eq!((p.requests(), p.failures()), (5, 1), "{p:?}");
    assert_eq!(p.error_rate(), Some(0.2));
    let window = p.since(&before);
    assert_eq!((window.requests(), window.failures()), (2, 1));
    // Loopback requests: under a second, over nothing.
    let p99 = p.quantile(0.99).unwrap();
    assert!(
        p99 > Duration::ZERO && p99 < Duration::from_secs(1),
        "{p99:?}"
    );
    assert!(running.proxy.member_stats("app", "127.0.0.1:1").is_none());
    assert!(running.proxy.pool_stats("nope").is_none());
}

#[tokio::test]
async fn pool_stats_count_the_proxys_own_502s_and_broken_bodies() {
    let broken = broken_upstream().await;
    let dead = closed_port();
    let cfg = config(&[("app", &[broken]), ("dead", &[dead])], "app");
    let running = start(&cfg).await;

    let broken_answer = get(running.addr, "/").await;
    assert_eq!(broken_answer.status, StatusCode::OK);
    assert!(broken_answer.body.is_err(), "{broken_answer:?}");
    let pool = running.proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!((pool.requests(), pool.failures()), (1, 1));
    let member = running.proxy.member_stats("app", &broken.to_string());
    let member = member.unwrap().snapshot();
    assert_eq!((member.requests(), member.failures()), (1, 1));

    // The route goes to the dead pool now: a 502 of our own.
    running
        .proxy
        .reload(&config(&[("app", &[broken]), ("dead", &[dead])], "dead"))
        .unwrap();
    assert_eq!(get(running.addr, "/").await.status, StatusCode::BAD_GATEWAY);
    let pool = running.proxy.pool_stats("dead").unwrap().snapshot();
    assert_eq!((pool.requests(), pool.failures()), (1, 1));
    let member = running.proxy.member_stats("dead", &dead.to_string());
    let member = member.unwrap().snapshot();
    assert_eq!(
        (member.requests(), member.failures()),
        (1, 1),
        "connect failure"
    );
}

#[tokio::test]
async fn stats_survive_reloads_and_handles_outlive_what_they_measure() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let running = start(&config(&[("app", &[a.addr])], "app")).await;
    let member_a = running
        .proxy
        .member_stats("app", &a.addr.to_string())
        .unwrap();
    let pool = running.proxy.pool_stats("app").unwrap();
    assert_eq!(get(running.addr, "/").await.body.unwrap(), "a");

    // b replaces a: the pool's counts go on, a's handle keeps a's.
    running
        .proxy
        .reload(&config(&[("app", &[b.addr])], "app"))
        .unwrap();
    assert_eq!(get(running.addr, "/").await.body.unwrap(), "b");
    assert_eq!(pool.snapshot().requests(), 2);
    let same = running.proxy.pool_stats("app").unwrap();
    assert_eq!(same.snapshot(), pool.snapshot());
    assert_eq!(member_a.snapshot().requests(), 1);
    assert!(
        running
            .proxy
            .member_stats("app", &a.addr.to_string())
            .is_none()
    );
    let member_b = running.proxy.member_stats("app", &b.addr.to_string());
    assert_eq!(member_b.unwrap().snapshot().requests(), 1);

    // The pool goes away, then comes back: it starts over.
    running
        .proxy
        .reload(&config(&[("other", &[b.addr])], "other"))
        .unwrap();
    assert!(running.proxy.pool_stats("app").is_none());
    running
        .proxy
        .reload(&config(&[("app", &[b.addr])], "app"))
        .unwrap();
    assert_eq!(
        running
            .proxy
            .pool_stats("app")
            .unwrap()
            .snapshot()
            .requests(),
        0
    );
    assert_eq!(
        pool.snapshot().requests(),
        2,
        "an old handle keeps its counts"
    );
}

#[tokio::test]
async fn route_totals_are_the_routes_counts_summed() {
    let a = Upstream::start("a").await;
    let cfg = config(&[("app", &[a.addr])], "app");
    let running = start(&cfg).await;
    for path in ["/", "/", "/status/404", "/status/500"] {
        get(running.addr, path).await;
    }
    let mut totals = Vec::new();
    running
        .proxy
        .route_totals(|label, total| totals.push((label.to_owned(), total)));
    let readings: Vec<(String, u64)> = running
        .proxy
        .route_readings()
        .into_iter()
        .map(|r| (r.label, r.counts.counts.iter().flatten().sum()))
        .collect();
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(totals[0].1, 4, "{totals:?}");
    assert_eq!(totals, readings);
}
