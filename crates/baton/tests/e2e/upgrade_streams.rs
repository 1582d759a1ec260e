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

/// A WebSocket that echoed once and an event stream that ticked twice.
async fn open_streams(addr: &str) -> (TcpStream, TcpStream, Vec<u8>) {
    let mut ws = ws_connect(addr, "/ws").await;
    ws_send_text(&mut ws, "before").await;
    assert_eq!(ws_read(&mut ws).await, (1, b"before".to_vec()));
    let mut sse = TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /events?interval_ms=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut events = Vec::new();
    while String::from_utf8_lossy(&events).matches("tick").count() < 2 {
        read_some(&mut sse, &mut events).await;
    }
    (ws, sse, events)
}

async fn read_some(s: &mut TcpStream, got: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(EVENT_TIMEOUT, s.read(&mut buf))
        .await
        .expect("nothing more came")
        .expect("the connection was reset");
    assert!(n > 0, "closed: {}", String::from_utf8_lossy(got));
    got.extend_from_slice(&buf[..n]);
}

/// The WebSocket gets a close frame saying 1001 and, answered, its
/// connection ends cleanly; the event stream's response ends (its last
/// chunk) after a whole event, while the app goes on ticking.
async fn ended_as_announced(mut ws: TcpStream, mut sse: TcpStream, mut events: Vec<u8>) {
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
    while !events.ends_with(b"\r\n0\r\n\r\n") {
        read_some(&mut sse, &mut events).await;
    }
    let text = String::from_utf8_lossy(&events);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/event-stream"), "{head}");
    let body = dechunk(body);
    assert!(body.ends_with("\n\n"), "ended inside an event: {body:?}");
    assert!(!body.contains("shutdown"), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_websockets_and_event_streams_cleanly() {
    let (_app, member) = start_hello(&[]).await;
    let dir = TempDir::new("streams-drain");
    let (mut baton, addr) = baton_serve(&config(&dir, &member, "")).await;
    let (ws, sse, events) = open_streams(&addr).await;
    baton.signal(libc::SIGTERM);
    ended_as_announced(ws, sse, events).await;
    // Both ended on purpose, long before the drain deadline.
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}

/// A member taken out of the config (here by a reload; a deploy does the
/// same to an instance it replaces) has its streams ended the same way:
/// they would otherwise hold it — a deploy waits for an instance's requests
/// before it stops it — until the app itself drained them at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_the_config_ends_its_streams_cleanly() {
    let (_old, old) = start_hello(&[]).await;
    let (new_app, new) = start_hello(&[]).await;
    let dir = TempDir::new("streams-leave");
    let path = config(&dir, &old, "");
    let (baton, addr) = baton_serve(&path).await;
    let (ws, sse, events) = open_streams(&addr).await;
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).unwrap().replace(&old, &new),
    )
    .unwrap();
    baton.signal(libc::SIGHUP);
    ended_as_announced(ws, sse, events).await;
    // The streams opened again reach the new member.
    let (_ws, _sse, events) = open_streams(&addr).await;
    let head = String::from_utf8_lossy(&events).to_lowercase();
    let instance = format!("x-instance: v1/{}\r\n", new_app.pid);
    assert!(head.contains(&instance), "{head}");
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
