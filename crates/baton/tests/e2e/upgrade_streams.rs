//! Long-lived streams through `baton serve`: a WebSocket is not an HTTP
//! request, so the listener's head and idle limits do not cut it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    EVENT_TIMEOUT, TempDir, baton_serve, start_hello, ws_connect, ws_read, ws_send_text,
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
