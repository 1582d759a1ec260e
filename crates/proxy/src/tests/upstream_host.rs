//! `upstream_host = "member"`: the `Host` an upstream gets is the authority
//! of the member the request went to, on every attempt (it was the first
//! member's for every member).

use std::net::SocketAddr;

use http::StatusCode;

use super::{Upstream, closed_port, get, start};

/// A pool `app` of `members` that sends each member's authority as `Host`.
fn pool(members: &[SocketAddr]) -> config::Config {
    let members: Vec<String> = members
        .iter()
        .map(|m| format!("{{ address = \"{m}\" }}"))
        .collect();
    let source = format!(
        "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\
         [pool.app]\nmembers = [{}]\nupstream_host = \"member\"\n[[route]]\npool = \"app\"\n",
        members.join(", ")
    );
    config::parse(&source, "test.toml").unwrap()
}

/// The `Host` each of `n` requests brought to the upstream that answered
/// (the upstreams echo it for `/header/host`).
async fn hosts_received(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut hosts = Vec::new();
    for _ in 0..n {
        let answer = get(addr, "/header/host").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        hosts.push(answer.body.unwrap());
    }
    hosts
}

#[tokio::test]
async fn each_member_gets_its_own_authority() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let running = start(&pool(&[a.addr, b.addr])).await;
    let hosts = hosts_received(running.addr, 10).await;
    let count = |m: &Upstream| hosts.iter().filter(|h| **h == m.addr.to_string()).count();
    assert!(a.served() > 0 && b.served() > 0, "both members served");
    assert_eq!(
        (count(&a), count(&b)),
        (a.served(), b.served()),
        "{hosts:?}"
    );
}

#[tokio::test]
async fn a_request_sent_to_another_member_carries_that_members_authority() {
    // Every request that picks the unreachable member is sent on to `b`.
    let b = Upstream::start("b").await;
    let running = start(&pool(&[closed_port(), b.addr])).await;
    let hosts = hosts_received(running.addr, 6).await;
    assert_eq!(b.served(), 6);
    assert!(hosts.iter().all(|h| *h == b.addr.to_string()), "{hosts:?}");
}
