//! Long-lived streams through `baton serve` when it drains (SIGTERM, and the
//! old process of an upgrade): a WebSocket gets a close frame with 1001
//! (going away) and an event stream ends between two events — ends a client
//! knows were announced, never a reset — while the app behind keeps running.
//! And a WebSocket is not an HTTP request: the listener's head and idle
//! limits do not cut it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    EVENT_TIMEOUT, TempDir, baton_serve, dechunk, start_hello, ws_connect, ws_read, ws_send_text,
};

/// One listener (with `listener` keys added) in front of `member`, a 60 s
/// drain deadline: an end seen before it was made on purpose.
fn config(dir: &TempDir, member: &str, listener: &str) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\ndrain_timeout = \"60s\"\n\
             [[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n{listener}\n\
             [pool.app]\nmembers = [{{ address = \"{member}\" }}]\n[[route]]\npool = \"app\"\n"
        ),
    )
    .unwrap();
    path
}

/// Reads until the peer closes; a reset is an error.
async fn read_to_close(s: &mut TcpStream, got: &mut Vec<u8>) -> std::io::Result<()> {
    tokio::time::timeout(EVENT_TIMEOUT, s.read_to_end(got))
        .await
        .expect("the connection was not closed")
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_websockets_and_event_streams_cleanly() {
    let (_app, member) = start_hello(&[]).await;
    let dir = TempDir::new("streams-drain");
    let (mut baton, addr) = baton_serve(&config(&dir, &member, "")).await;

    let mut ws = ws_connect(&addr, "/ws").await;
    ws_send_text(&mut ws, "before").await;
    assert_eq!(ws_read(&mut ws).await, (1, b"before".to_vec()));
    let mut sse = TcpStream::connect(&addr).await.unwrap();
    sse.write_all(b"GET /events?interval_ms=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut events = Vec::new();
    while String::from_utf8_lossy(&events).matches("tick").count() < 2 {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(EVENT_TIMEOUT, sse.read(&mut buf))
            .await
            .expect("no events")
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&events));
        events.extend_from_slice(&buf[..n]);
    }

    baton.signal(libc::SIGTERM);
    // The WebSocket: a close frame saying 1001; answered, the connection
    // then ends cleanly.
    let (op, payload) = ws_read(&mut ws).await;
    assert_eq!(op, 8, "a close frame, not {payload:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    ws.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2])
        .await
        .unwrap();
    let mut rest = Vec::new();
    read_to_close(&mut ws, &mut rest)
        .await
        .expect("the WebSocket's connection was reset");
    assert!(rest.is_empty(), "{rest:?}");
    // The event stream: the response ends (the last chunk) after a whole
    // event, while the app goes on ticking.
    read_to_close(&mut sse, &mut events)
        .await
        .expect("the event stream's connection was reset");
    let text = String::from_utf8_lossy(&events);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(
        body.ends_with("\r\n0\r\n\r\n"),
        "not a complete response: {body:?}"
    );
    let body = dechunk(body);
    assert!(body.ends_with("\n\n"), "ended inside an event: {body:?}");
    assert!(!body.contains("shutdown"), "{body:?}");
    // Both ended on purpose, long before the drain deadline.
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

/// The WebSocket's messages after the 101 are not a request head (it once
/// got a 408 written into it `header_read_timeout` after its first message)
/// and a quiet WebSocket is not an idle keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_header_read_timeout() {
    let (_app, member) = start_hello(&[]).await;
    let dir = TempDir::new("ws-limits");
    let limits = "header_read_timeout = \"300ms\"\nkeepalive_timeout = \"300ms\"";
    let (_baton, addr) = baton_serve(&config(&dir, &member, limits)).await;
    let mut ws = ws_connect(&addr, "/ws").await;
    ws_send_text(&mut ws, "first").await;
    assert_eq!(ws_read(&mut ws).await, (1, b"first".to_vec()));
    // A slow request head started now gets its 408 once the limits have
    // passed for the WebSocket too.
    let mut probe = TcpStream::connect(&addr).await.unwrap();
    probe.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut got = Vec::new();
    read_to_close(&mut probe, &mut got).await.unwrap();
    assert!(got.starts_with(b"HTTP/1.1 408"), "{got:?}");
    ws_send_text(&mut ws, "second").await;
    assert_eq!(ws_read(&mut ws).await, (1, b"second".to_vec()));
}
