//! End-to-end tests of the `hello` binary: real process, real sockets on
//! port 0, real signals. No test sleeps to wait for the server; each waits
//! on a stdout/stderr line, a datagram or the exit, bounded by a timeout.

mod faults;
mod support;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixDatagram, UnixStream};
use tokio::time::timeout;

use support::{Hello, WAIT, call, collect, command, request, send, send_on, try_send};

#[tokio::test]
async fn every_route_answers_with_its_status_body_and_instance() {
    let mut hello = Hello::start(&["--app-version", "v2"]).await;
    let addr = hello.addr();
    let instance = format!("v2/{}", hello.pid());

    let root = call(addr, "GET", "/").await;
    assert_eq!(root.status, 200);
    assert_eq!(root.text(), "Hello, 你好,Rust服务器! (v2)\n");
    assert_eq!(
        root.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(root.header("x-instance"), Some(instance.as_str()));

    let user = call(addr, "GET", "/users/42").await;
    assert_eq!((user.status.as_u16(), user.text()), (200, "user 42\n"));

    let health = call(addr, "GET", "/healthz").await;
    assert_eq!((health.status.as_u16(), health.text()), (200, "ok\n"));

    let slow = call(addr, "GET", "/slow?ms=5").await;
    assert_eq!((slow.status.as_u16(), slow.text()), (200, "slept 5 ms\n"));

    let missing = call(addr, "GET", "/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-instance"), Some(instance.as_str()));

    let wrong_method = call(addr, "DELETE", "/users/42").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("x-instance"), Some(instance.as_str()));

    let get_echo = call(addr, "GET", "/echo").await;
    assert_eq!(get_echo.status, 405);

    for path in [
        "/slow",
        "/slow?ms=abc",
        "/slow?ms=-5",
        "/events?interval_ms=x",
    ] {
        let bad = call(addr, "GET", path).await;
        assert_eq!(bad.status, 400, "{path}");
        assert!(
            bad.text().contains("milliseconds"),
            "{path}: {}",
            bad.text()
        );
        assert_eq!(bad.header("x-instance"), Some(instance.as_str()), "{path}");
    }

    hello.signal(libc::SIGTERM);
    assert!(hello.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn app_version_comes_from_the_environment() {
    let mut cmd = command(&["--listen", "127.0.0.1:0"]);
    cmd.env("APP_VERSION", "v9");
    let hello = Hello::spawn(cmd, 1).await;
    let root = call(hello.addr(), "GET", "/").await;
    assert_eq!(root.text(), "Hello, 你好,Rust服务器! (v9)\n");
    let instance = root.header("x-instance").unwrap();
    assert_eq!(instance, format!("v9/{}", hello.pid()));
}

#[tokio::test]
async fn echo_returns_the_same_bytes_and_content_type() {
    let hello = Hello::start(&[]).await;
    for size in [100 * 1024, 1024 * 1024] {
        // Every byte value, in a pattern that is not a multiple of the size.
        let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let req = Request::post("/echo")
            .header("host", "hello.test")
            .header("content-type", "application/x-test")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let answer = collect(send(hello.addr(), req).await).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("content-type"), Some("application/x-test"));
        assert!(answer.body == body, "{size}-byte body differs");
    }
    let plain = Request::post("/echo")
        .header("host", "hello.test")
        .body(Full::new(Bytes::from_static(b"no type")))
        .unwrap();
    let answer = collect(send(hello.addr(), plain).await).await;
    assert_eq!(answer.body, "no type");
    assert_eq!(answer.header("content-type"), None);
}

#[tokio::test]
async fn fail_health_answers_503() {
    let hello = Hello::start(&["--fail-health"]).await;
    let health = call(hello.addr(), "GET", "/healthz").await;
    assert_eq!(
        (health.status.as_u16(), health.text()),
        (503, "unhealthy\n")
    );
    // Only the health check fails; the app still serves.
    assert_eq!(call(hello.addr(), "GET", "/").await.status, 200);
}

#[tokio::test]
async fn sse_ends_with_a_shutdown_event_when_draining() {
    let mut hello = Hello::start(&["--drain-timeout", "20s"]).await;
    let response = send(hello.addr(), request("GET", "/events?interval_ms=20")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut text = String::new();

    while text.matches("data: tick").count() < 2 {
        let frame = timeout(WAIT, body.frame()).await.expect("no tick in time");
        let frame = frame.expect("stream ended early").expect("stream error");
        text.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    assert!(text.contains("data: tick 1 v1\n"), "{text}");
    assert!(text.contains("data: tick 2 v1\n"), "{text}");

    let signalled = Instant::now();
    hello.signal(libc::SIGTERM);
    // Read to the end: the stream must end by itself, not be cut.
    while let Some(frame) = timeout(WAIT, body.frame())
        .await
        .expect("stream did not end")
    {
        let frame = frame.expect("stream cut instead of ended");
        text.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    assert!(
        text.ends_with("event: shutdown\ndata: shutdown v1\n\n"),
        "{text}"
    );

    let status = hello.wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
    // The drain took the idle grace, not the 20 s deadline.
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_slow_request_finish() {
    let mut hello = Hello::start(&[]).await;
    let in_flight = tokio::spawn(send(hello.addr(), request("GET", "/slow?ms=800")));
    let line = hello.wait_log("slow request started").await;
    assert!(line.contains("ms=800"), "{line}");
    hello.signal(libc::SIGTERM);

    let answer = collect(in_flight.await.unwrap()).await;
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (200, "slept 800 ms\n")
    );
    let status = hello.wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn drain_deadline_cutting_a_request_exits_1() {
    let mut hello = Hello::start(&["--drain-timeout", "300ms"]).await;
    let in_flight = tokio::spawn(try_send(hello.addr(), request("GET", "/slow?ms=60000")));
    hello.wait_log("slow request started").await;
    hello.signal(libc::SIGTERM);
    hello.wait_log("drain deadline reached").await;
    let status = hello.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{status}");
    // The request was cut: the connection closed without a response.
    let cut = in_flight.await.unwrap();
    assert!(cut.is_err(), "got a response: {cut:?}");
}

/// A second SIGTERM during a long drain closes what is left at once instead
/// of waiting for the drain deadline.
#[tokio::test]
async fn second_sigterm_cuts_the_drain_short() {
    let mut hello = Hello::start(&["--drain-timeout", "60s"]).await;
    let in_flight = tokio::spawn(try_send(hello.addr(), request("GET", "/slow?ms=60000")));
    hello.wait_log("slow request started").await;
    hello.signal(libc::SIGTERM);
    hello.wait_log("draining").await;
    hello.signal(libc::SIGTERM);
    hello
        .wait_log("second stop signal, closing remaining connections")
        .await;
    let status = hello.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(in_flight.await.unwrap().is_err());
}

#[tokio::test]
async fn exit_after_crashes_with_code_3() {
    let mut hello = Hello::start(&["--exit-after", "200ms"]).await;
    hello.wait_log("hello: ready").await;
    let status = hello.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(3), "{status}");
}

#[test]
fn bad_arguments_exit_64_with_a_message() {
    for (args, needle) in [
        (&["--bogus"][..], "unexpected argument"),
        (&["--drain-timeout", "5x"], "unknown time unit"),
        (&["--startup-delay", "10"], "time unit needed"),
        (&["--listen", "localhost"], "expected IP:PORT"),
        (&["--app-version", "a b"], "invalid version"),
        (&["--error-rate", "2"], "from 0 to 1"),
        (&["--added-latency", "5"], "time unit needed"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hello"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_hello"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--never-ready"));
}

#[tokio::test]
async fn notify_socket_gets_ready_then_stopping() {
    let path = support::temp_path("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    let mut cmd = command(&["--listen", "127.0.0.1:0"]);
    cmd.env("NOTIFY_SOCKET", &path);
    let mut hello = Hello::spawn(cmd, 1).await;

    let mut buf = [0u8; 256];
    let n = timeout(WAIT, notify.recv(&mut buf))
        .await
        .expect("no READY")
        .unwrap();
    assert_eq!(&buf[..n], b"READY=1\n");
    // Ready means serving.
    assert_eq!(call(hello.addr(), "GET", "/").await.status, 200);

    hello.signal(libc::SIGTERM);
    let n = timeout(WAIT, notify.recv(&mut buf))
        .await
        .expect("no STOPPING")
        .unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(hello.wait_exit(WAIT).await.success());
    support::remove_temp(&path);
}

/// `--never-ready` still prints `listening on`: it did take the socket, and
/// connections to it queue in the kernel. It never answers them and never
/// notifies.
#[tokio::test]
async fn never_ready_holds_the_socket_silently_and_exits_0_on_sigterm() {
    let path = support::temp_path("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    let mut cmd = command(&["--listen", "127.0.0.1:0", "--never-ready"]);
    cmd.env("NOTIFY_SOCKET", &path);
    let mut hello = Hello::spawn(cmd, 1).await;
    hello.wait_log("never accepting").await;

    let mut tcp = TcpStream::connect(hello.addr())
        .await
        .expect("queued in the backlog");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let quiet = Duration::from_millis(500);
    assert!(
        timeout(quiet, tcp.read(&mut buf)).await.is_err(),
        "it answered"
    );
    assert!(
        timeout(quiet, notify.recv(&mut buf)).await.is_err(),
        "it notified"
    );

    hello.signal(libc::SIGTERM);
    let status = hello.wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
    assert!(
        notify.try_recv(&mut buf).is_err(),
        "it notified on the way out"
    );
    support::remove_temp(&path);
}

#[tokio::test]
async fn startup_delay_holds_requests_until_it_is_over() {
    let hello = Hello::start(&["--startup-delay", "800ms"]).await;
    let announced = Instant::now();
    // The connection is queued at once; the answer waits for the delay.
    let answer = call(hello.addr(), "GET", "/").await;
    assert_eq!(answer.status, 200);
    let waited = announced.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "answered after {waited:?}"
    );
}

#[tokio::test]
async fn sigterm_during_startup_delay_exits_0_without_serving() {
    let mut hello = Hello::start(&["--startup-delay", "10m"]).await;
    hello.wait_log("starting slowly").await;
    hello.signal(libc::SIGTERM);
    let status = hello.wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn serves_on_every_listener_including_unix_sockets() {
    let path = support::temp_path("hello.sock");
    let unix = format!("unix:{}", path.display());
    let mut hello = Hello::spawn(command(&["--listen", "127.0.0.1:0", "--listen", &unix]), 2).await;
    assert_eq!(hello.addrs[1], unix);

    assert_eq!(
        call(hello.addr(), "GET", "/users/tcp").await.text(),
        "user tcp\n"
    );
    let stream = UnixStream::connect(&path).await.unwrap();
    let answer = collect(send_on(stream, request("GET", "/users/unix")).await).await;
    assert_eq!(answer.text(), "user unix\n");

    hello.signal(libc::SIGINT);
    assert!(hello.wait_exit(WAIT).await.success());
    support::remove_temp(&path);
}

#[tokio::test]
#[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
async fn inherited_socket_is_used_instead_of_listen() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // `--listen` would fail if used: port 1 needs privileges we lack, and
    // the test asserts the inherited address anyway.
    let mut cmd = command(&["--listen", "127.0.0.1:1"]);
    cmd.env("LISTEN_FDS", "1");
    // SAFETY: between fork and exec the closure only makes async-signal-safe
    // system calls (dup2/fcntl) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                // dup2 onto itself would keep close-on-exec; clear it instead.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut hello = Hello::spawn(cmd, 1).await;
    assert_eq!(hello.addr(), addr);
    hello.wait_log("using inherited sockets").await;
    assert_eq!(call(addr, "GET", "/healthz").await.text(), "ok\n");
    hello.signal(libc::SIGTERM);
    assert!(hello.wait_exit(WAIT).await.success());
}

#[test]
fn an_address_in_use_exits_71_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hello"))
        .args(["--listen", &addr])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{stderr}");
    assert!(stderr.contains("could not bind"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A client's close frame is answered with one (the closing handshake),
/// then the connection ends.
#[tokio::test]
async fn a_websocket_close_is_answered() {
    let hello = Hello::start(&[]).await;
    let mut s = TcpStream::connect(hello.addr()).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = timeout(WAIT, s.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "{:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    // A masked close frame with code 1000.
    let mask = [1u8, 2, 3, 4];
    let code = 1000u16.to_be_bytes();
    s.write_all(&[
        0x88,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        code[0] ^ mask[0],
        code[1] ^ mask[1],
    ])
    .await
    .unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .expect("the connection was not closed")
        .unwrap();
    // An unmasked close frame echoing the code.
    assert_eq!(answer, [0x88, 0x02, 0x03, 0xe8]);
}
