//! The HTTP/1.1 client against a member played byte for byte over a real
//! loopback socket: framing, bounds, reuse, and the request as written.

use std::future::poll_fn;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A connection, and the member's end of it.
async fn pair() -> (Box<Conn>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (Conn::new(Io::Plain(client.unwrap())), accepted.unwrap().0)
}

async fn head(conn: &mut Conn, method: &Method) -> io::Result<Head> {
    poll_fn(|cx| poll_head(conn, cx, method, None)).await
}

/// The body's data and trailers, or the error that ended it.
async fn body(
    conn: &mut Conn,
    decoder: &mut Decoder,
) -> Result<(Vec<u8>, Option<HeaderMap>), io::Error> {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| decoder.poll_frame(conn, cx)).await {
        let frame = frame?;
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok((data, trailers))
}

/// `answer` from the member to a GET, read as a head and a body.
async fn answer(method: Method, answer: &'static [u8]) -> (io::Result<Head>, Box<Conn>) {
    let (mut conn, mut member) = pair().await;
    member.write_all(answer).await.unwrap();
    let head = head(&mut conn, &method).await;
    (head, conn)
}

#[tokio::test]
async fn a_length_framed_body_leaves_the_connection_reusable() {
    let (head, mut conn) = answer(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
    )
    .await;
    let mut head = head.unwrap();
    assert_eq!(head.response.status, 200);
    let a: Vec<_> = head.response.headers.get_all("x-a").iter().collect();
    assert_eq!(a, ["1", "2"]);
    assert!(head.keep_alive);
    assert_eq!(head.decoder.size_hint().exact(), Some(5));
    let (data, _) = body(&mut conn, &mut head.decoder).await.unwrap();
    assert_eq!(data, b"hello");
    assert!(head.decoder.is_done());
    assert!(conn.is_drained());
    assert!(!conn.is_dead());
}

#[tokio::test]
async fn a_chunked_body_is_decoded_with_its_extensions_and_trailers() {
    let (head, mut conn) = answer(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 6\r\n\r\n",
    )
    .await;
    let mut head = head.unwrap();
    assert!(head.keep_alive);
    let (data, trailers) = body(&mut conn, &mut head.decoder).await.unwrap();
    assert_eq!(data, b"hello!");
    assert_eq!(trailers.unwrap()["x-sum"], "6");
    assert!(conn.is_drained());
}

#[tokio::test]
async fn informational_responses_are_read_past() {
    let (head, _conn) = answer(
        Method::POST,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
          HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let head = head.unwrap();
    assert_eq!(head.response.status, 201);
    assert!(head.response.headers.get("link").is_none());
    assert!(head.decoder.is_done());
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_whatever_their_length_says() {
    for (method, raw) in [
        (
            Method::HEAD,
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..],
        ),
        (
            Method::GET,
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
        ),
        (
            Method::GET,
            &b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        ),
    ] {
        let (mut conn, mut member) = pair().await;
        member.write_all(raw).await.unwrap();
        let h = head(&mut conn, &method).await.unwrap();
        assert!(h.decoder.is_done(), "{method} {:?}", h.response.status);
        assert!(h.keep_alive);
        // Kept for the client: a HEAD's length is the GET's.
        if method == Method::HEAD {
            assert_eq!(h.response.headers["content-length"], "10");
        }
    }
}

#[tokio::test]
async fn a_body_without_framing_lasts_until_the_member_closes() {
    let (mut conn, mut member) = pair().await;
    member
        .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil ")
        .await
        .unwrap();
    let mut h = head(&mut conn, &Method::GET).await.unwrap();
    assert!(!h.keep_alive);
    assert_eq!(h.decoder, Decoder::Eof);
    member.write_all(b"the end").await.unwrap();
    drop(member);
    let (data, _) = body(&mut conn, &mut h.decoder).await.unwrap();
    assert_eq!(data, b"until the end");
}

#[tokio::test]
async fn what_asks_to_close_is_not_reused() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"[..],
        &b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
        // Both framings: the coding wins, the connection is not trusted.
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        // A coding other than chunked last: to the end of the connection.
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..],
    ] {
        let (mut conn, mut member) = pair().await;
        member.write_all(raw).await.unwrap();
        let h = head(&mut conn, &Method::GET).await.unwrap();
        assert!(!h.keep_alive, "{}", String::from_utf8_lossy(raw));
    }
}

#[tokio::test]
async fn invalid_or_unbounded_heads_are_errors() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"[..],
        &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"[..],
    ] {
        let (head, _) = answer(Method::GET, raw).await;
        assert_eq!(
            head.err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidData),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }

    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
    let (mut conn, mut member) = pair().await;
    member.write_all(raw.as_bytes()).await.unwrap();
    let err = head(&mut conn, &Method::GET).await.err().unwrap();
    assert_eq!(err.to_string(), "too many response headers");

    // A head that never ends stops at its bound, not at the memory's.
    let (mut conn, mut member) = pair().await;
    let writer = tokio::spawn(async move {
        let _ = member.write_all(b"HTTP/1.1 200 OK\r\nX-Long: ").await;
        let filler = vec![b'a'; 4096];
        while member.write_all(&filler).await.is_ok() {}
    });
    let err = head(&mut conn, &Method::GET).await.err().unwrap();
    assert_eq!(err.to_string(), "response head too large");
    drop(conn);
    writer.await.unwrap();
}

#[tokio::test]
async fn a_closed_connection_before_or_during_the_answer_is_an_error() {
    let (mut conn, member) = pair().await;
    drop(member);
    let err = head_of(&mut conn).await;
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    let (mut conn, mut member) = pair().await;
    member
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
        .await
        .unwrap();
    drop(member);
    let mut h = head(&mut conn, &Method::GET).await.unwrap();
    let err = body(&mut conn, &mut h.decoder).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    let (mut conn, mut member) = pair().await;
    member
        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        .await
        .unwrap();
    let mut h = head(&mut conn, &Method::GET).await.unwrap();
    let err = body(&mut conn, &mut h.decoder).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

async fn head_of(conn: &mut Conn) -> io::Error {
    head(conn, &Method::GET).await.err().unwrap()
}

#[tokio::test]
async fn an_idle_connection_the_member_closed_is_dead() {
    let (mut conn, member) = pair().await;
    assert!(!conn.is_dead());
    drop(member);
    readable(&conn).await;
    assert!(conn.is_dead(), "closed by the member");

    let (mut conn, mut member) = pair().await;
    member.write_all(b"unasked").await.unwrap();
    readable(&conn).await;
    assert!(conn.is_dead(), "bytes nobody asked for");
}

/// Waits until the reactor has seen the connection readable.
async fn readable(conn: &Conn) {
    match &conn.io {
        Io::Plain(s) => s.readable().await.unwrap(),
        Io::Tls(_) => unreachable!("plain connections only"),
    }
}

/// What the member receives for `req`.
async fn sent(req: Request<ReqBody>) -> Vec<u8> {
    let (mut conn, mut member) = pair().await;
    let (parts, body) = req.into_parts();
    let mut outgoing = Outgoing::start(&mut conn, &parts, body);
    poll_fn(|cx| outgoing.poll_send(&mut conn, cx))
        .await
        .map_err(|_| "send failed")
        .unwrap();
    assert!(outgoing.is_done());
    drop(conn);
    let mut received = Vec::new();
    member.read_to_end(&mut received).await.unwrap();
    received
}

fn boxed<B>(body: B) -> ReqBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

#[tokio::test]
async fn requests_are_framed_by_their_bodies() {
    let get = Request::get("/a?b=c")
        .header("host", "example")
        .body(crate::empty_body())
        .unwrap();
    assert_eq!(
        sent(get).await,
        b"GET /a?b=c HTTP/1.1\r\nhost: example\r\n\r\n"
    );

    let post = Request::post("/").body(crate::empty_body()).unwrap();
    assert_eq!(
        sent(post).await,
        b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );

    let known = Request::put("/")
        .body(boxed(Full::new(Bytes::from_static(b"abc"))))
        .unwrap();
    assert_eq!(
        sent(known).await,
        b"PUT / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"
    );

    // Unknown length: chunked, a stale Content-Length dropped, a frame too
    // large to copy written from where it is with its CRLF after it.
    let large = Bytes::from(vec![b'x'; COPY_LIMIT + 1]);
    let frames = Frames(
        [
            Bytes::from_static(b"hi"),
            large.clone(),
            Bytes::from_static(b"!"),
        ]
        .into(),
    );
    let chunked = Request::post("/")
        .header("content-length", "1")
        .body(boxed(frames))
        .unwrap();
    let mut want = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n".to_vec();
    want.extend_from_slice(format!("{:x}\r\n", large.len()).as_bytes());
    want.extend_from_slice(&large);
    want.extend_from_slice(b"\r\n1\r\n!\r\n0\r\n\r\n");
    assert_eq!(sent(chunked).await, want);
}

#[tokio::test]
async fn a_request_body_longer_than_its_length_is_refused() {
    let (mut conn, _member) = pair().await;
    let body = boxed(Lying);
    let (parts, _) = Request::post("/").body(()).unwrap().into_parts();
    let mut outgoing = Outgoing::start(&mut conn, &parts, body);
    let sent = poll_fn(|cx| outgoing.poll_send(&mut conn, cx)).await;
    assert!(matches!(sent, Err(SendError::Client(_))));
}

/// Data frames of a length nobody announced.
struct Frames(std::collections::VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|d| Ok(Frame::data(d))))
    }
}

/// Says 1 byte, sends 2.
struct Lying;

impl Body for Lying {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"ab")))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(1)
    }
}

#[tokio::test]
async fn any_bytes_from_a_member_end_in_an_answer_or_an_error() {
    let mut rng = fastrand::Rng::with_seed(7);
    let pieces: [&[u8]; 12] = [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 101 X\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"5\r\nabc",
        b"0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
        b"Connection: close\r\n",
        b"\xff\x00:",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"x;\r\n",
    ];
    for _ in 0..300 {
        let mut raw = Vec::new();
        for _ in 0..rng.usize(1..8) {
            raw.extend_from_slice(pieces[rng.usize(..pieces.len())]);
        }
        let (mut conn, mut member) = pair().await;
        member.write_all(&raw).await.unwrap();
        drop(member);
        let kinds = [io::ErrorKind::InvalidData, io::ErrorKind::UnexpectedEof];
        let raw = String::from_utf8_lossy(&raw).into_owned();
        match head(&mut conn, &Method::GET).await {
            Ok(mut h) => {
                let exact = h.decoder.size_hint().exact();
                match body(&mut conn, &mut h.decoder).await {
                    Ok((data, _)) => {
                        assert!(exact.is_none_or(|n| n == data.len() as u64), "{raw:?}");
                    }
                    Err(e) => assert!(kinds.contains(&e.kind()), "{raw:?}: {e}"),
                }
            }
            Err(e) => assert!(kinds.contains(&e.kind()), "{raw:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn hop_by_hop_headers_and_those_connection_names_are_left_out() {
    let (head, _conn) = answer(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nConnection: x-secret, keep-alive\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nX-Other: 2\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let head = head.unwrap();
    let mut names: Vec<&str> = head.response.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "x-other"]);
    assert!(head.keep_alive);

    // Both framings: the length is not passed on.
    let (head, _conn) = answer(
        Method::GET,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(head.unwrap().response.headers.is_empty());

    // A protocol switch keeps what the tunnel needs.
    let (head, _conn) = answer(
        Method::GET,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    let head = head.unwrap();
    assert_eq!(head.response.headers["upgrade"], "websocket");
    assert!(head.decoder.is_done());
}

#[test]
fn hop_by_hop_names_as_received_match_the_proxys_list_whatever_their_case() {
    for name in crate::headers::HOP_BY_HOP
        .iter()
        .chain([&http::header::UPGRADE])
    {
        assert!(is_hop_by_hop(name.as_str().as_bytes()), "{name}");
        assert!(
            is_hop_by_hop(name.as_str().to_uppercase().as_bytes()),
            "{name}"
        );
    }
    for name in ["content-length", "date", "server", "x-connection", "tee"] {
        assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
    }
}

#[tokio::test]
async fn a_large_body_is_read_in_growing_reads_and_the_buffer_let_go_when_idle() {
    let (mut conn, mut member) = pair().await;
    let size = 4 << 20;
    let writer = tokio::spawn(async move {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        member.write_all(head.as_bytes()).await.unwrap();
        member.write_all(&vec![b'x'; size]).await.unwrap();
        member
    });
    let mut h = head(&mut conn, &Method::GET).await.unwrap();
    let (data, _) = body(&mut conn, &mut h.decoder).await.unwrap();
    assert_eq!(data.len(), size);
    assert!(
        conn.read_size > READ_CHUNK,
        "reads grew: {}",
        conn.read_size
    );
    assert!(conn.read_size <= MAX_READ);
    conn.idle();
    assert_eq!((conn.read_size, conn.read.capacity()), (READ_CHUNK, 0));
    drop(writer.await.unwrap());
}

/// Waits for `at` on the connection's timer, and asserts that it fired
/// then (within the timer's millisecond), neither earlier nor later.
async fn fires_at(conn: &mut Conn, at: Instant) {
    poll_fn(|cx| conn.poll_deadline(at, cx)).await;
    let now = Instant::now();
    assert!(now >= at, "{:?} early", at - now);
    assert!(
        now - at < std::time::Duration::from_millis(5),
        "{:?} late",
        now - at
    );
}

/// Registers the connection's timer for `at` without waiting for it.
async fn arm(conn: &mut Conn, at: Instant) {
    let pending = poll_fn(|cx| Poll::Ready(conn.poll_deadline(at, cx).is_pending())).await;
    assert!(pending, "the deadline has not passed yet");
}

#[tokio::test(start_paused = true)]
async fn one_timer_keeps_each_exchanges_deadline_whichever_way_it_moves() {
    let (mut conn, _member) = pair().await;
    let secs = std::time::Duration::from_secs;
    fires_at(&mut conn, Instant::now() + secs(10)).await;
    // The timer set for an earlier deadline fires first, and is moved on to
    // the later one the next exchange keeps.
    arm(&mut conn, Instant::now() + secs(5)).await;
    fires_at(&mut conn, Instant::now() + secs(20)).await;
    // A timer set too late is moved back.
    arm(&mut conn, Instant::now() + secs(60)).await;
    fires_at(&mut conn, Instant::now() + secs(1)).await;
}

#[tokio::test]
async fn the_head_goes_into_the_spare_map_taken_only_when_whole() {
    let (mut conn, mut member) = pair().await;
    let mut spare = HeaderMap::with_capacity(16);
    spare.insert("x-request", HeaderValue::from_static("1"));
    let room = spare.capacity();
    member
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Le")
        .await
        .unwrap();
    readable(&conn).await;
    let pending = poll_fn(|cx| {
        Poll::Ready(poll_head(&mut conn, cx, &Method::GET, Some(&mut spare)).is_pending())
    })
    .await;
    assert!(pending, "half a head is no head");
    assert_eq!(spare["x-request"], "1", "kept while the head is not whole");
    member
        .write_all(b"ngth: 0\r\nX-A: 1\r\n\r\n")
        .await
        .unwrap();
    let head = poll_fn(|cx| poll_head(&mut conn, cx, &Method::GET, Some(&mut spare)))
        .await
        .unwrap();
    let headers = &head.response.headers;
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert_eq!(headers["x-a"], "1");
    assert_eq!(headers.capacity(), room, "the spare's room, used again");
    assert!(spare.is_empty());
}
