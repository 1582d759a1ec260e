//! Long-lived and non-HTTP/1 traffic through `baton serve`: WebSocket
//! tunnels (closed with 1001 when the app drains), SSE streamed without
//! buffering, HTTP/2 over cleartext, the access log, and a graceful stop.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;

use crate::support::{
    self, TempDir, baton_serve, get, start_hello, ws_connect, ws_read, ws_send_text,
};

fn single_pool(dir: &TempDir, member: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[pool.app]\nmembers = [{{ address = \"{member}\" }}]\n[[route]]\npool = \"app\"\n"
        ),
    )
    .unwrap();
    path
}

/// A WebSocket echoes through the proxy, and when the app drains the client
/// gets a clean close with code 1001 (going away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_and_clean_close_through_the_proxy() {
    let (app, member) = start_hello(&[]).await;
    let dir = TempDir::new("ws");
    let (_baton, addr) = baton_serve(&single_pool(&dir, &member, "")).await;
    let mut ws = ws_connect(&addr, "/ws").await;
    for text in ["hello", "你好"] {
        ws_send_text(&mut ws, text).await;
        let (op, payload) = ws_read(&mut ws).await;
        assert_eq!(op, 1);
        assert_eq!(String::from_utf8(payload).unwrap(), text);
    }
    app.signal(libc::SIGTERM);
    let (op, payload) = ws_read(&mut ws).await;
    assert_eq!(op, 8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
}

/// Server-sent events arrive one by one while the stream stays open: the
/// proxy does not buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_without_buffering() {
    let (_app, member) = start_hello(&["--app-version", "sse"]).await;
    let dir = TempDir::new("sse");
    let (_baton, addr) = baton_serve(&single_pool(&dir, &member, "")).await;
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET /events?interval_ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches("tick").count() < 3 {
        let n = tokio::time::timeout(support::EVENT_TIMEOUT, s.read(&mut buf))
            .await
            .expect("events did not stream")
            .unwrap();
        assert!(n > 0, "stream closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(got.contains("tick 2 sse"), "{got}");
}

/// HTTP/2 with prior knowledge (h2c) is served; the upstream still gets
/// HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    let (_app, member) = start_hello(&[]).await;
    let dir = TempDir::new("h2c");
    let (_baton, addr) = baton_serve(&single_pool(&dir, &member, "")).await;
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::get(format!("http://{addr}/users/42"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert!(res.headers().contains_key("x-instance"));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"user 42\n");
    }
}

/// The JSON access log gets one line per request, with status and upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_records_requests() {
    let (_app, member) = start_hello(&[]).await;
    let dir = TempDir::new("log");
    let extra = "[access_log]\npath = \"-\"\nformat = \"json\"\n";
    let (mut baton, addr) = baton_serve(&single_pool(&dir, &member, extra)).await;
    assert_eq!(get(&addr, "/users/9").await.status, 200);
    let line = baton.wait_for("\"/users/9\"").await;
    let json = line.trim_start_matches("[out] ");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["upstream"], member.as_str());
    assert_eq!(v["request_id"].as_str().unwrap().len(), 32);
}

/// SIGTERM to the proxy lets a slow request in flight finish, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_proxy() {
    let (mut app, member) = start_hello(&[]).await;
    let dir = TempDir::new("stop");
    let (mut baton, addr) = baton_serve(&single_pool(&dir, &member, "")).await;
    let slow = tokio::spawn({
        let addr = addr.clone();
        async move { get(&addr, "/slow?ms=800").await }
    });
    app.wait_for("slow request started").await;
    baton.signal(libc::SIGTERM);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slept 800 ms\n");
    assert!(baton.wait_exit().await.success(), "{}", baton.dump());
}
