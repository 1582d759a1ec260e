//! What the proxy makes of members' answers, played byte for byte by a
//! raw member: streamed framings reach the client whole, a malformed
//! answer is a 502 (never a panic), and a member that answers an upload
//! early is heard.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use super::{config, get, raw_member, send, start};

#[tokio::test]
async fn chunked_and_close_delimited_bodies_reach_the_client_whole() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcde"[..],
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde"[..],
    ] {
        let member = raw_member(raw).await;
        let running = start(&config(&[("app", &[member])], "app")).await;
        let answer = get(running.addr, "/").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(raw));
        assert_eq!(answer.body.as_deref(), Ok("abcde"));
    }
}

#[tokio::test]
async fn a_malformed_answer_is_a_502_and_the_members_failure() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"[..],
        &b"not http at all\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n"[..],
    ] {
        let member = raw_member(raw).await;
        let running = start(&config(&[("app", &[member])], "app")).await;
        let answer = get(running.addr, "/").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{}",
            String::from_utf8_lossy(raw)
        );
        let stats = running
            .proxy
            .member_stats("app", &member.to_string())
            .unwrap();
        assert_eq!(stats.snapshot().failures(), 1);
    }
}

#[tokio::test]
async fn a_member_that_refuses_an_upload_early_is_heard() {
    // It answers after the head, without reading the 8 MiB body, and closes.
    let member = raw_member(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
    )
    .await;
    let running = start(&config(&[("app", &[member])], "app")).await;
    let body = Bytes::from(vec![b'x'; 8 << 20]);
    let upload = Request::post("/")
        .header(http::header::HOST, "test")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Full::new(body))
        .unwrap();
    let answer = send(running.addr, upload).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.body.as_deref(), Ok("too large"));
}
