//! `retry_server_errors`: a 5xx to a bodyless idempotent request is resent
//! once to another member, and still counts as the first member's failure.

use std::net::SocketAddr;

use http::{Method, StatusCode};

use super::{Upstream, get, request, start};

/// A pool `app` of `members` with `extra` lines in its table, and a route
/// to it, parsed as a file would be.
fn pool(members: &[SocketAddr], extra: &str) -> config::Config {
    let members: Vec<String> = members
        .iter()
        .map(|m| format!("{{ address = \"{m}\" }}"))
        .collect();
    let source = format!(
        "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\
         [pool.app]\nmembers = [{}]\n{extra}\n[[route]]\npool = \"app\"\n",
        members.join(", ")
    );
    config::parse(&source, "test.toml").unwrap()
}

const REQUESTS: usize = 10;

#[tokio::test]
async fn with_retry_server_errors_clients_see_no_5xx_but_the_failing_member_counts_them() {
    let (good, bad) = (
        Upstream::start("good").await,
        Upstream::failing("bad").await,
    );
    let cfg = pool(&[good.addr, bad.addr], "retry_server_errors = true");
    assert!(cfg.pools["app"].forward.retry_server_errors);
    let running = start(&cfg).await;
    for _ in 0..REQUESTS {
        let answer = get(running.addr, "/").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body.unwrap(), "good");
    }

    let proxy = &running.proxy;
    let failing = proxy.member_stats("app", &bad.addr.to_string()).unwrap();
    let failing = failing.snapshot();
    assert!(
        bad.served() > 0,
        "round robin sent requests to the failing member"
    );
    assert_eq!(
        (failing.requests(), failing.failures()),
        (bad.served() as u64, bad.served() as u64),
        "every 5xx is the failing member's failure: {failing:?}"
    );
    assert_eq!(good.served(), REQUESTS, "each request was answered once");
    let healthy = proxy.member_stats("app", &good.addr.to_string()).unwrap();
    let healthy = healthy.snapshot();
    assert_eq!(
        (healthy.requests(), healthy.failures()),
        (REQUESTS as u64, 0)
    );
    let clients = proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!(
        (clients.requests(), clients.failures()),
        (REQUESTS as u64, 0),
        "the pool counts what clients saw"
    );
}

#[tokio::test]
async fn without_retry_server_errors_the_5xx_reaches_the_client() {
    let (good, bad) = (
        Upstream::start("good").await,
        Upstream::failing("bad").await,
    );
    let cfg = pool(&[good.addr, bad.addr], "");
    assert!(
        !cfg.pools["app"].forward.retry_server_errors,
        "off by default"
    );
    let running = start(&cfg).await;
    let mut errors = 0;
    for _ in 0..REQUESTS {
        let answer = get(running.addr, "/").await;
        if answer.status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(answer.body.unwrap(), "bad");
            errors += 1;
        } else {
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        }
    }
    assert!(
        errors > 0,
        "round robin sent requests to the failing member"
    );
    assert_eq!(bad.served(), errors, "every 5xx was returned");
    assert_eq!(good.served() + bad.served(), REQUESTS, "nothing was resent");
    let failing = running
        .proxy
        .member_stats("app", &bad.addr.to_string())
        .unwrap()
        .snapshot();
    assert_eq!(failing.failures(), errors as u64);
}

#[tokio::test]
async fn requests_with_a_body_or_a_non_idempotent_method_are_never_resent_after_a_5xx() {
    let (good, bad) = (
        Upstream::start("good").await,
        Upstream::failing("bad").await,
    );
    // Even where a broken exchange would replay a bodyless POST.
    let extra = "retry_server_errors = true\nretry_non_idempotent = true";
    let running = start(&pool(&[good.addr, bad.addr], extra)).await;
    let cases = [
        (Method::POST, "payload"),
        (Method::PUT, "payload"),
        (Method::POST, ""),
    ];
    let mut errors = 0;
    for (method, body) in cases {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let answer = request(running.addr, method.clone(), "/", body).await;
            statuses.push(answer.status);
        }
        assert!(
            statuses.contains(&StatusCode::INTERNAL_SERVER_ERROR),
            "{method} with body {body:?}: the 500 reaches the client: {statuses:?}"
        );
        errors += statuses
            .iter()
            .filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR)
            .count();
    }
    assert_eq!(bad.served(), errors, "every 5xx was returned");
    assert_eq!(good.served() + bad.served(), 12, "nothing was resent");
}

#[tokio::test]
async fn a_5xx_is_resent_to_every_other_member_and_the_last_answer_is_returned() {
    let failing = [
        Upstream::failing("one").await,
        Upstream::failing("two").await,
        Upstream::failing("three").await,
    ];
    let addrs: Vec<SocketAddr> = failing.iter().map(|u| u.addr).collect();
    let running = start(&pool(&addrs, "retry_server_errors = true")).await;
    for _ in 0..4 {
        let answer = get(running.addr, "/").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = answer.body.unwrap();
        assert!(["one", "two", "three"].contains(&body.as_str()), "{body}");
    }
    let served: usize = failing.iter().map(Upstream::served).sum();
    assert_eq!(
        served, 12,
        "each request reached all three members, once each"
    );
    for member in &failing {
        let stats = running
            .proxy
            .member_stats("app", &member.addr.to_string())
            .unwrap()
            .snapshot();
        assert_eq!(stats.failures(), member.served() as u64);
    }
    let clients = running.proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!((clients.requests(), clients.failures()), (4, 4));
}

#[tokio::test]
async fn a_5xx_from_the_only_member_is_returned_as_is() {
    let bad = Upstream::failing("bad").await;
    let running = start(&pool(&[bad.addr], "retry_server_errors = true")).await;
    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body.unwrap(), "bad");
    assert_eq!(bad.served(), 1, "no other member to try, nor a second time");
}

/// A member that reads each request's head, then closes the connection
/// without answering (a host dying under a request); counts the requests.
async fn breaking() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_idempotent_request_broken_on_two_members_in_a_row_reaches_a_third() {
    use std::sync::atomic::Ordering;
    let (first, first_seen) = breaking().await;
    let (second, second_seen) = breaking().await;
    let good = Upstream::start("good").await;
    let cfg = pool(&[first, second, good.addr], "");
    let running = start(&cfg).await;
    for _ in 0..REQUESTS {
        let answer = get(running.addr, "/").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body.unwrap(), "good");
    }
    assert_eq!(good.served(), REQUESTS, "each request was answered once");
    assert!(
        first_seen.load(Ordering::SeqCst) > 0 && second_seen.load(Ordering::SeqCst) > 0,
        "both broken members got requests"
    );
    // A request with a body is never resent after it was sent.
    let mut refused = 0;
    for _ in 0..3 {
        let answer = request(running.addr, Method::POST, "/", "body").await;
        if answer.status == StatusCode::BAD_GATEWAY {
            refused += 1;
        }
    }
    assert!(refused > 0, "a POST that broke was not replayed");
}
