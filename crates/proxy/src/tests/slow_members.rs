//! Members that go silent mid-body, over real sockets: the response is cut
//! after the pool's `body_timeout` and counted as the member's failure;
//! an event stream, whose events may be far apart, is never cut for it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{get, read_request_head, start, within};

/// A member that answers each request's head with `first`, then, once
/// `release` gives it a permit, `rest`, and closes the connection.
async fn pausing_member(
    first: &'static [u8],
    rest: &'static [u8],
    release: Arc<Semaphore>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let release = release.clone();
            tokio::spawn(async move {
                if !read_request_head(&mut stream).await {
                    return;
                }
                let _ = stream.write_all(first).await;
                release.acquire().await.unwrap().forget();
                let _ = stream.write_all(rest).await;
            });
        }
    });
    addr
}

/// Reads from `s` until what was received contains `text`.
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, text: &str) {
    while !String::from_utf8_lossy(got).contains(text) {
        let mut buf = [0u8; 4096];
        let n = within(s.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "closed before {text:?}: {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// A member that stops sending its body is cut off after `body_timeout`
/// (the client gets what came, then a broken body) and the failure is the
/// member's; an event stream that waits longer than that between two
/// events is not cut, and ends whole.
#[tokio::test]
async fn a_silent_member_is_cut_after_body_timeout_but_an_event_stream_is_not() {
    let never = Arc::new(Semaphore::new(0));
    let stalled = pausing_member(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        b"",
        never,
    )
    .await;
    let next_event = Arc::new(Semaphore::new(0));
    let events = pausing_member(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n",
        b"9\r\ndata: 2\n\n\r\n0\r\n\r\n",
        next_event.clone(),
    )
    .await;
    let source = format!(
        "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\
         [pool.stalled]\nmembers = [{{ address = \"{stalled}\" }}]\nbody_timeout = \"300ms\"\n\
         [pool.events]\nmembers = [{{ address = \"{events}\" }}]\nbody_timeout = \"300ms\"\n\
         [[route]]\npath = \"/events\"\npool = \"events\"\n\
         [[route]]\npool = \"stalled\"\n"
    );
    let cfg = config::parse(&source, "test.toml").unwrap();
    let running = start(&cfg).await;

    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "data: 1").await;

    // Started after the event stream's last bytes: its cut shows the limit
    // has passed for the event stream too.
    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.is_err(), "{answer:?}");
    let member = running.proxy.member_stats("stalled", &stalled.to_string());
    let member = member.unwrap().snapshot();
    assert_eq!((member.requests(), member.failures()), (1, 1), "{member:?}");

    next_event.add_permits(1);
    read_until(&mut stream, &mut got, "0\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&got).contains("data: 2"));
    let member = running.proxy.member_stats("events", &events.to_string());
    assert_eq!(member.unwrap().snapshot().failures(), 0);
}
