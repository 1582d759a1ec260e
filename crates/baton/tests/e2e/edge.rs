//! HTTP at the front door, through the real binary with a raw-socket client
//! and backends that record exactly what reached them: ambiguous heads
//! (no `Host`, two `Host`s, `CONNECT`, bad framing) are refused and never
//! forwarded, an absolute-form target is routed and forwarded by its own
//! authority, a bad chunk is the client's 400, both `Content-Length` and
//! `Transfer-Encoding` reach the backend as chunked only on a connection
//! that serves nothing after it, and a client that hangs up while waiting
//! is logged 499.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::{EVENT_TIMEOUT, TempDir, baton_serve};

/// One request as a backend received it: the head's lines, lower-cased
/// header names, and the body as framed on the wire.
#[derive(Debug)]
struct Received {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Received {
    fn line(&self) -> &str {
        &self.head[0]
    }

    fn headers(&self, name: &str) -> Vec<String> {
        self.head[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// A backend that records every complete request it receives and answers
/// `200 ok`, or — `answer = false` — records and never answers. Returns
/// its address and the records.
async fn recording_backend(answer: bool) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(record(s, tx.clone(), answer));
        }
    });
    (addr, rx)
}

async fn record(mut s: TcpStream, tx: mpsc::UnboundedSender<Received>, answer: bool) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            if !read_more(&mut s, &mut buf).await {
                return;
            }
            continue;
        };
        let head: Vec<String> = String::from_utf8_lossy(&buf[..end])
            .split("\r\n")
            .map(str::to_owned)
            .collect();
        let mut received = Received {
            head,
            body: Vec::new(),
        };
        let length = received
            .headers("content-length")
            .first()
            .map(|v| v.parse().unwrap());
        let chunked = !received.headers("transfer-encoding").is_empty();
        let start = end + 4;
        let stop = loop {
            let have = &buf[start..];
            let done = match length {
                Some(n) => (have.len() >= n).then_some(start + n),
                None if chunked => find(have, b"0\r\n\r\n").map(|i| start + i + 5),
                None => Some(start),
            };
            if let Some(stop) = done {
                break stop;
            }
            if !read_more(&mut s, &mut buf).await {
                return;
            }
        };
        received.body = buf[start..stop].to_vec();
        buf.drain(..stop);
        let _ = tx.send(received);
        if !answer {
            // Holds the connection until the proxy closes it.
            while read_more(&mut s, &mut buf).await {}
            return;
        }
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        if s.write_all(ok).await.is_err() {
            return;
        }
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` on a new connection and reads until the proxy closes
/// it: every status line it answered, in order.
async fn statuses(addr: &str, request: &[u8]) -> Vec<u16> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(EVENT_TIMEOUT, exchange)
        .await
        .expect("the proxy kept the connection open");
    String::from_utf8_lossy(&raw)
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .filter_map(|l| l.get(..3)?.parse().ok())
        .collect()
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Received>) -> Vec<Received> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_requests_are_refused_at_the_edge_and_never_forwarded() {
    let (a, mut a_got) = recording_backend(true).await;
    let (b, mut b_got) = recording_backend(true).await;
    let dir = TempDir::new("edge");
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[pool.a]
members = [{{ address = "{a}" }}]
[pool.b]
members = [{{ address = "{b}" }}]

[[route]]
host = "b.test"
pool = "b"

[[route]]
pool = "a"
"#
        ),
    )
    .unwrap();
    let (_baton, addr) = baton_serve(&path).await;
    let refused: [(&str, &[u8], u16); 9] = [
        ("no Host", b"GET /no-host HTTP/1.1\r\n\r\n", 400),
        (
            "two Hosts",
            b"GET /two-hosts HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            400,
        ),
        ("a bad Host", b"GET /bad-host HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (
            "CONNECT",
            b"CONNECT b.test:443 HTTP/1.1\r\nHost: b.test:443\r\n\r\n",
            501,
        ),
        (
            "another scheme",
            b"GET ftp://b.test/ftp HTTP/1.1\r\nHost: b.test\r\n\r\n",
            400,
        ),
        (
            "user information",
            b"GET http://u@b.test/userinfo HTTP/1.1\r\nHost: b.test\r\n\r\n",
            400,
        ),
        // Refused by hyper's parser before baton sees them.
        (
            "two Content-Lengths",
            b"POST /two-lengths HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
        (
            "a coding other than chunked",
            b"POST /gzip HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
        (
            "chunked in HTTP/1.0",
            b"POST /chunked-1.0 HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
    ];
    for (what, request, status) in refused {
        // A second request on the same connection is never read.
        let mut pipelined = request.to_vec();
        pipelined.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n");
        assert_eq!(statuses(&addr, &pipelined).await, [status], "{what}");
    }

    // A bad chunk size: the client's 400, not a 502.
    let bad_chunk = b"POST /bad-chunk HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n";
    assert_eq!(statuses(&addr, bad_chunk).await, [400], "a bad chunk size");

    // Absolute form: routed by its authority, forwarded with it as Host.
    let absolute =
        b"GET http://b.test/absolute?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    assert_eq!(statuses(&addr, absolute).await, [200]);
    let got = b_got.recv().await.unwrap();
    assert_eq!(got.line(), "GET /absolute?q=1 HTTP/1.1", "{got:?}");
    assert_eq!(got.headers("host"), ["b.test"], "{got:?}");

    // Both framings: the backend sees chunked only (hyper dropped the
    // Content-Length), and nothing after it is served on that connection.
    let both = b"POST /both HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a.test\r\n\r\n";
    assert_eq!(statuses(&addr, both).await, [200], "both framings");
    let got = a_got.recv().await.unwrap();
    assert_eq!(got.line(), "POST /both HTTP/1.1", "{got:?}");
    assert!(got.headers("content-length").is_empty(), "{got:?}");
    assert_eq!(got.headers("transfer-encoding"), ["chunked"], "{got:?}");
    assert_eq!(got.body, b"5\r\nhello\r\n0\r\n\r\n", "{got:?}");

    // A plain request, last: whatever the backends recorded before it
    // came in before its answer.
    let plain = b"GET /plain HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    assert_eq!(statuses(&addr, plain).await, [200]);
    let got = a_got.recv().await.unwrap();
    assert_eq!(got.line(), "GET /plain HTTP/1.1", "{got:?}");
    assert_eq!(got.headers("host"), ["a.test"], "{got:?}");
    let leaked: Vec<String> = drain(&mut a_got)
        .into_iter()
        .chain(drain(&mut b_got))
        .map(|r| r.line().to_owned())
        .collect();
    assert!(leaked.is_empty(), "forwarded: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_while_waiting_is_logged_499() {
    let (held, mut got) = recording_backend(false).await;
    let dir = TempDir::new("edge-499");
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\n[access_log]\nformat = \"json\"\n\n\
             [pool.held]\nmembers = [{{ address = \"{held}\" }}]\n\n[[route]]\npool = \"held\"\n"
        ),
    )
    .unwrap();
    let (mut baton, addr) = baton_serve(&path).await;
    let mut client = TcpStream::connect(&addr).await.unwrap();
    client
        .write_all(b"GET /waiting HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let received = tokio::time::timeout(EVENT_TIMEOUT, got.recv())
        .await
        .expect("never forwarded")
        .unwrap();
    assert_eq!(received.line(), "GET /waiting HTTP/1.1");
    drop(client);
    let line = baton.wait_for("\"uri\":\"/waiting\"").await;
    let entry: serde_json::Value =
        serde_json::from_str(line.strip_prefix("[out] ").unwrap()).unwrap();
    assert_eq!(entry["status"], 499, "{line}");
}
