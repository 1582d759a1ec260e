//! Pausing a pool through a real proxy: held requests, the bounds, reloads.

use std::time::Duration;

use http::StatusCode;
use http::header::RETRY_AFTER;
use tokio::time::Instant;

use super::{Upstream, config, get, start, wait_held, within};
use crate::{Hold, UnknownPool};

fn hold(max_wait: Duration, max_requests: usize) -> Hold {
    Hold {
        max_wait,
        max_requests,
    }
}

#[tokio::test]
async fn held_requests_complete_after_resume() {
    let a = Upstream::start("a").await;
    let running = start(&config(&[("app", &[a.addr])], "app")).await;
    let proxy = &running.proxy;
    proxy
        .pause("app", hold(Duration::from_secs(60), 10))
        .unwrap();
    assert!(proxy.paused("app"));
    let first = tokio::spawn(get(running.addr, "/"));
    let second = tokio::spawn(get(running.addr, "/"));
    wait_held(proxy, "app", 2).await;
    assert_eq!(a.served(), 0, "nothing passes a paused pool");

    assert!(proxy.resume("app"));
    assert!(!proxy.paused("app"));
    for held in [first, second] {
        let answer = within(held).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body.unwrap(), "a");
    }
    assert!(!proxy.resume("app"), "not paused any more");
    let stats = proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!((stats.requests(), stats.failures()), (2, 0));
}

#[tokio::test]
async fn one_request_over_max_requests_gets_a_503_at_once() {
    let a = Upstream::start("a").await;
    let running = start(&config(&[("app", &[a.addr])], "app")).await;
    let proxy = &running.proxy;
    proxy
        .pause("app", hold(Duration::from_millis(59_500), 1))
        .unwrap();
    let waiting = tokio::spawn(get(running.addr, "/"));
    wait_held(proxy, "app", 1).await;

    let refused = get(running.addr, "/").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers[RETRY_AFTER], "60");
    assert!(refused.body.unwrap().contains("paused"));

    proxy.resume("app");
    assert_eq!(within(waiting).await.unwrap().status, StatusCode::OK);
    let stats = proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!(
        (stats.requests(), stats.failures()),
        (2, 1),
        "the 503 counts"
    );
}

#[tokio::test]
async fn a_request_held_past_max_wait_gets_a_503() {
    let a = Upstream::start("a").await;
    let running = start(&config(&[("app", &[a.addr])], "app")).await;
    let max_wait = Duration::from_millis(50);
    running.proxy.pause("app", hold(max_wait, 10)).unwrap();
    let started = Instant::now();
    let refused = get(running.addr, "/").await;
    assert!(started.elapsed() >= max_wait, "{:?}", started.elapsed());
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers[RETRY_AFTER], "1");
    assert_eq!(a.served(), 0);
    assert!(running.proxy.paused("app"), "the pool stays paused");
    let stats = running.proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!((stats.requests(), stats.failures()), (1, 1));
    assert!(
        stats.quantile(0.0).unwrap() >= max_wait,
        "the wait is latency"
    );
}

#[tokio::test]
async fn a_pause_survives_a_reload_and_released_requests_reach_the_new_members() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let running = start(&config(&[("app", &[a.addr])], "app")).await;
    let proxy = &running.proxy;
    assert_eq!(
        proxy.pause("nope", hold(Duration::from_secs(1), 1)),
        Err(UnknownPool("nope".to_owned()))
    );
    assert!(!proxy.paused("nope"));
    proxy
        .pause("app", hold(Duration::from_secs(60), 10))
        .unwrap();
    let held = tokio::spawn(get(running.addr, "/"));
    wait_held(proxy, "app", 1).await;

    // Pause, swap the members, resume: how a deploy switches at once.
    proxy.reload(&config(&[("app", &[b.addr])], "app")).unwrap();
    assert!(proxy.paused("app"));
    let later = tokio::spawn(get(running.addr, "/"));
    wait_held(proxy, "app", 2).await;
    proxy.resume("app");
    for request in [held, later] {
        assert_eq!(within(request).await.unwrap().body.unwrap(), "b");
    }
    assert_eq!(a.served(), 0);
}

#[tokio::test]
async fn removing_a_paused_pool_releases_its_requests() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let running = start(&config(&[("app", &[a.addr])], "app")).await;
    let proxy = &running.proxy;
    proxy
        .pause("app", hold(Duration::from_secs(60), 10))
        .unwrap();
    let held = tokio::spawn(get(running.addr, "/"));
    wait_held(proxy, "app", 1).await;
    proxy
        .reload(&config(&[("other", &[b.addr])], "other"))
        .unwrap();
    // It goes on with the snapshot it started with.
    assert_eq!(within(held).await.unwrap().body.unwrap(), "a");
    assert!(!proxy.paused("app"));
    assert_eq!(get(running.addr, "/").await.body.unwrap(), "b");
}
