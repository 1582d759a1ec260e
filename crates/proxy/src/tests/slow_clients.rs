//! Slow clients, over real sockets: a client that sends its body slowly
//! holds no member's connection while the first `body_buffer_bytes`
//! arrive, one that stops sending gets 408 after `body_read_timeout`,
//! before or after a member was picked, and one that stops reading its
//! response loses its connection after `write_timeout` — never counted
//! against the member.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{get, start, within};

/// A member that reads each request's whole body and answers with its
/// length; counts the requests whose head it received.
async fn reading_member() -> (SocketAddr, watch::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (count, heads) = watch::channel(0usize);
    let count = Arc::new(count);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let count = count.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                count.send_modify(|n| *n += 1);
                async move {
                    let body = request.into_body().collect().await;
                    let text = match body {
                        Ok(body) => body.to_bytes().len().to_string(),
                        Err(e) => format!("broken: {e}"),
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from(text))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, heads)
}

fn slow_config(member: SocketAddr, listener: &str, pool: &str) -> config::Config {
    let source = format!(
        "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n{listener}\n\
         [pool.app]\nmembers = [{{ address = \"{member}\" }}]\n{pool}\n\
         [[route]]\npool = \"app\"\n"
    );
    config::parse(&source, "test.toml").unwrap()
}

/// Sends a POST head announcing `length` bytes and asking for
/// `100 Continue`, and waits for it: the proxy is reading the body.
async fn start_upload(addr: SocketAddr, length: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(within(s.read(&mut byte)).await.unwrap(), 1, "{got:?}");
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    s
}

/// Everything the proxy sends until it closes the connection.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    within(s.read_to_end(&mut got)).await.unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// Slow uploads fill no member's slots: with room for one request at a
/// time on the only member and an upload that stalls halfway, a GET is
/// still served at once; the upload, once sent, reaches the member whole.
#[tokio::test]
async fn a_slow_upload_holds_no_member_connection_while_it_is_read() {
    let (member, heads) = reading_member().await;
    let cfg = slow_config(
        member,
        "",
        "max_connections_per_member = 1\nqueue_timeout = \"30s\"",
    );
    let running = start(&cfg).await;
    let mut upload = start_upload(running.addr, 1000).await;
    upload.write_all(&[b'x'; 10]).await.unwrap();
    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        *heads.borrow(),
        1,
        "the upload reached the member before its body"
    );
    upload.write_all(&[b'x'; 990]).await.unwrap();
    let got = read_answer(&mut upload).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("1000"),
        "{got:?}"
    );
    assert_eq!(*heads.borrow(), 2);
}

/// Reads one response with a `content-length` body.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                return text;
            }
        }
        let mut buf = [0u8; 4096];
        let n = within(s.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before a whole answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A body that stops before a member was picked: 408 and the connection
/// closed; no member ever saw the request, and the pool counts no failure.
#[tokio::test]
async fn a_body_stalled_before_a_member_is_picked_gets_408_from_the_proxy() {
    let (member, heads) = reading_member().await;
    let cfg = slow_config(member, "body_read_timeout = \"200ms\"", "");
    let running = start(&cfg).await;
    let mut upload = start_upload(running.addr, 1000).await;
    upload.write_all(&[b'x'; 10]).await.unwrap();
    let got = read_to_close(&mut upload).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(got.contains("request body timed out"), "{got:?}");
    assert_eq!(*heads.borrow(), 0);
    let pool = running.proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!(pool.failures(), 0, "{pool:?}");
}

/// A body larger than what is read ahead streams to the member; when it
/// stops there, the client gets 408, and the member — whose exchange broke
/// off — is not blamed: with one failure enough to eject it, it still
/// serves.
#[tokio::test]
async fn a_body_stalled_while_streaming_gets_408_and_is_not_the_members_fault() {
    let (member, heads) = reading_member().await;
    let cfg = slow_config(
        member,
        "body_read_timeout = \"200ms\"\nbody_buffer_bytes = \"1KiB\"",
        "passive = { consecutive_failures = 1 }",
    );
    let running = start(&cfg).await;
    let mut upload = start_upload(running.addr, 100_000).await;
    upload.write_all(&[b'x'; 4096]).await.unwrap();
    let got = read_to_close(&mut upload).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert_eq!(*heads.borrow(), 1, "the body streamed to the member");
    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let member_stats = running
        .proxy
        .member_stats("app", &member.to_string())
        .unwrap();
    assert_eq!(member_stats.snapshot().failures(), 0);
}

/// A member whose every response is endless: 64 KiB a frame, for as long
/// as the proxy takes them.
async fn endless_member() -> SocketAddr {
    struct Endless;
    impl hyper::body::Body for Endless {
        type Data = bytes::Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Infallible>>> {
            static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
            let chunk = bytes::Bytes::from_static(&CHUNK);
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let body = match request.uri().path() {
                    "/endless" => http_body_util::Either::Left(Endless),
                    _ => http_body_util::Either::Right(Full::new(bytes::Bytes::from_static(b"ok"))),
                };
                Ok::<_, Infallible>(Response::new(body))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A client that stops reading a large response holds the member's
/// connection only until `write_timeout`: then its connection is closed,
/// the member's slot is free for the next request, and the member — with
/// one failure enough to eject it — is not blamed.
#[tokio::test]
async fn a_client_that_stops_reading_frees_the_member_after_the_write_timeout() {
    let member = endless_member().await;
    let cfg = slow_config(
        member,
        "write_timeout = \"300ms\"",
        "max_connections_per_member = 1\nqueue_timeout = \"30s\"\npassive = { consecutive_failures = 1 }",
    );
    let running = start(&cfg).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut reader = socket.connect(running.addr).await.unwrap();
    reader
        .write_all(b"GET /endless HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    within(reader.read_exact(&mut head)).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The member's only slot is the endless response's until the proxy
    // gives up on the client that reads nothing more.
    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body.as_deref(), Ok("ok"));
    let stats = running
        .proxy
        .member_stats("app", &member.to_string())
        .unwrap();
    assert_eq!(stats.snapshot().failures(), 0);
    assert_eq!(get(running.addr, "/").await.status, StatusCode::OK);
}
