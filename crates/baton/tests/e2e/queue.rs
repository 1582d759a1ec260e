//! More concurrent requests than a pool's `max_connections_per_member`,
//! through the real binary: they wait in the pool's queue instead of
//! failing, and past the queue's bounds they get an accurate 503.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::{Load, LoadConfig};

use crate::support::{self, TempDir, baton_serve, get, start_hello};

fn write(dir: &TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn config(member: &str, pool_keys: &str) -> String {
    format!(
        "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[pool.app]\nmembers = [{{ address = \"{member}\" }}]\n{pool_keys}\n[[route]]\npool = \"app\"\n"
    )
}

/// One member that takes 4 requests at a time, and ten times as many
/// clients — keep-alive, a new connection per request, uploads and slow
/// requests — fail nothing: the ones that find the member full wait for a
/// free connection instead of getting an instant 503 (which they got
/// before the queue, blamed on the member's health).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_clients_than_max_connections_under_load_wait_and_fail_nothing() {
    let _heavy = support::heavy().await;
    let (_hello, member) = start_hello(&["--app-version", "one"]).await;
    let dir = TempDir::new("queue-load");
    let path = write(&dir, &config(&member, "max_connections_per_member = 4"));
    let (_baton, addr) = baton_serve(&path).await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 20,
        fresh_workers: 8,
        post_workers: 4,
        slow_workers: 8,
        slow_ms: 50,
        max_duration: Duration::from_secs(60),
        ..LoadConfig::new(addr.parse().unwrap())
    });
    assert!(load.wait_for_requests(2_000).await);
    let report = load.stop().await;
    eprintln!("{report}");
    report.assert_no_failures();
}

/// An h2 client's concurrent streams wait in the same queue: 4 connections
/// × 25 streams of slow requests on a member that takes 2 at a time all
/// get their 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_past_max_connections_under_load_wait_and_fail_nothing() {
    let _heavy = support::heavy().await;
    let (_hello, member) = start_hello(&[]).await;
    let dir = TempDir::new("queue-h2");
    let path = write(&dir, &config(&member, "max_connections_per_member = 2"));
    let (_baton, addr) = baton_serve(&path).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..25 {
            let mut sender = sender.clone();
            let req = http::Request::get(format!("http://{addr}/slow?ms=10"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            streams.push(tokio::spawn(async move {
                let res = sender.send_request(req).await.unwrap();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            }));
        }
    }
    for stream in streams {
        let (status, body) = stream.await.unwrap();
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(&body[..], b"slept 10 ms\n");
    }
}

/// One member busy with one request it may take at a time, a queue of
/// one: of two more requests, one waits and gives up after
/// `queue_timeout`, the other finds the queue full at once — each a 503
/// with `Retry-After` that says which. A client that hangs up gives its
/// connection back, and the next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_and_a_queue_timeout_answer_503_with_retry_after() {
    let (mut hello, member) = start_hello(&["--app-version", "one"]).await;
    let dir = TempDir::new("queue-bounds");
    let keys = "max_connections_per_member = 1\nqueue_length = 1\nqueue_timeout = \"500ms\"";
    let path = write(&dir, &config(&member, keys));
    let (_baton, addr) = baton_serve(&path).await;

    let busy = tokio::spawn({
        let addr = addr.clone();
        async move { get(&addr, "/slow?ms=60000").await }
    });
    hello.wait_for("slow request started").await;

    let started = Instant::now();
    let timed = |addr: String| async move {
        let response = get(&addr, "/").await;
        (response, started.elapsed())
    };
    let (a, b) = tokio::join!(
        tokio::spawn(timed(addr.clone())),
        tokio::spawn(timed(addr.clone()))
    );
    let mut answers = [a.unwrap(), b.unwrap()];
    answers.sort_by_key(|(_, took)| *took);
    let [(full, _), (timed_out, waited)] = answers;
    for r in [&full, &timed_out] {
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    }
    assert_eq!(full.body, "upstream queue full\n");
    assert_eq!(
        timed_out.body,
        "timed out waiting for a free upstream connection\n"
    );
    assert!(waited >= Duration::from_millis(500), "{waited:?}");

    // The busy request's client hangs up: its connection to the member is
    // released, and the next request gets it.
    busy.abort();
    assert!(busy.await.unwrap_err().is_cancelled());
    let served = get(&addr, "/").await;
    assert_eq!(served.status, 200, "{served:?}");
}

/// Nothing healthy is not a full pool: no waiting, the 503 says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_member_is_refused_at_once_not_queued() {
    let (hello, member) = start_hello(&[]).await;
    let dir = TempDir::new("queue-unhealthy");
    let keys = "queue_timeout = \"1h\"\n[pool.app.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nunhealthy_threshold = 1";
    let path = write(&dir, &config(&member, keys));
    let (mut baton, addr) = baton_serve(&path).await;
    drop(hello);
    baton.wait_for("member health changed").await;
    let response = get(&addr, "/").await;
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.body, "no healthy upstream\n");
}
