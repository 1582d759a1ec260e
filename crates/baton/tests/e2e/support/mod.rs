//! Shared pieces of the end-to-end tests: finding the built binaries,
//! starting them (through `testkit`'s [`Proc`], which collects a process's
//! output lines so that tests wait on a line instead of sleeping), and a tiny
//! raw HTTP/1.1 client.
//!
//! Every wait is bounded: a broken binary fails a test, it never hangs it.

#![allow(dead_code)] // each test module uses a different part

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

pub mod pebble;
pub mod tls;

pub use testkit::{EVENT_TIMEOUT, Proc, TempDir, field, signal};

/// The `baton` binary under test.
pub fn baton() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_baton"))
}

/// The example app, built beside `baton` by `cargo nextest run --workspace`.
pub fn hello() -> PathBuf {
    let path = baton().with_file_name("hello");
    assert!(
        path.exists(),
        "{} is missing: build the whole workspace (cargo nextest run --workspace builds it)",
        path.display()
    );
    path
}

/// Starts `baton exec` with `args` before `--` and `cmd` after it, and
/// returns it with the address of its first listener.
pub async fn baton_exec(args: &[&str], cmd: &[&str]) -> (Proc, String) {
    let mut c = Command::new(baton());
    c.arg("exec").args(args).arg("--").args(cmd);
    Proc::spawn_listening(&mut c).await
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The pid part of `x-instance: VERSION/PID`.
    pub fn instance_pid(&self) -> u32 {
        let v = self.header("x-instance").expect("x-instance header");
        v.rsplit('/').next().unwrap().parse().unwrap()
    }

    /// The version part of `x-instance: VERSION/PID`.
    pub fn instance_version(&self) -> String {
        let v = self.header("x-instance").expect("x-instance header");
        v.split('/').next().unwrap().to_owned()
    }
}

/// One request on a new connection (`Connection: close`), read to the end.
/// `addr` is `IP:PORT` or `unix:PATH`.
pub async fn get(addr: &str, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tokio::time::timeout(EVENT_TIMEOUT, exchange(addr, req.as_bytes()))
        .await
        .expect("request timed out")
}

pub async fn exchange(addr: &str, request: &[u8]) -> Response {
    let raw = if let Some(path) = addr.strip_prefix("unix:") {
        let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    } else {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    };
    parse_response(&raw)
}

/// Sends `request` to `addr` (`HOST:PORT`, or `unix:PATH`) and reads the
/// answer to its end or, for a stream of server-sent events, to the end of
/// its first event.
pub async fn exchange_first_event(addr: &str, request: &[u8]) -> Response {
    if let Some(path) = addr.strip_prefix("unix:") {
        let s = tokio::net::UnixStream::connect(path).await.unwrap();
        first_event(s, request).await
    } else {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        first_event(s, request).await
    }
}

async fn first_event(
    mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &[u8],
) -> Response {
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && head.to_ascii_lowercase().contains("text/event-stream")
            && dechunk(body).contains("\n\n")
        {
            break;
        }
    }
    parse_response(&buf)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The `HOST:PORT` of `baton serve`'s admin listener, from its
/// `admin API at http://ADDR` line.
pub async fn admin_addr(baton: &mut Proc) -> String {
    let line = baton.wait_for("admin API at http://").await;
    line.rsplit("http://").next().unwrap().trim().to_owned()
}

/// The body of a chunked response, decoded.
pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Serializes CPU-heavy tests when several run in one process (`cargo
/// test`); under nextest the `load` test group does the same across
/// processes.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Starts `hello` on 127.0.0.1:0 with extra arguments; returns it with its
/// address.
pub async fn start_hello(args: &[&str]) -> (Proc, String) {
    let mut c = Command::new(hello());
    c.args(["--listen", "127.0.0.1:0"]).args(args);
    Proc::spawn_listening(&mut c).await
}

/// Starts `baton serve` with the config at `path`; returns it with the
/// address of its first listener, once it is ready.
pub async fn baton_serve(path: &Path) -> (Proc, String) {
    baton_serve_with(path, &[]).await
}

/// `baton serve` with extra arguments.
pub async fn baton_serve_with(path: &Path, args: &[&str]) -> (Proc, String) {
    let mut c = Command::new(baton());
    c.arg("serve").arg("--config").arg(path).args(args);
    let (mut p, addr) = Proc::spawn_listening(&mut c).await;
    p.wait_for(" ready").await;
    (p, addr)
}

/// A request with a method, a `Host` and extra header lines, on a new
/// connection.
pub async fn request(addr: &str, method: &str, host: &str, path: &str, extra: &str) -> Response {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    tokio::time::timeout(EVENT_TIMEOUT, exchange(addr, req.as_bytes()))
        .await
        .expect("request timed out")
}

/// Opens a WebSocket on `path` (the handshake by hand: the tests need no
/// WebSocket library) and returns the stream after the 101.
pub async fn ws_connect(addr: &str, path: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(EVENT_TIMEOUT, s.read(&mut byte))
            .await
            .expect("handshake timed out")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during handshake: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Sends one masked text frame (clients must mask).
pub async fn ws_send_text(s: &mut tokio::net::TcpStream, text: &str) {
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
}

/// Reads one (unmasked, server) frame: opcode and payload.
pub async fn ws_read(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).await.unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        (h[0] & 0x0f, payload)
    };
    tokio::time::timeout(EVENT_TIMEOUT, read)
        .await
        .expect("no frame")
}

/// A config for watching a canary deploy: one listener `http`, a service
/// `web` of two `baton demo-app` instances at v1 deployed by canary steps
/// 20, 50 and 100 % (each held `pause`), and `[admin]` on port 0 with the
/// token in `token_file`. Written in `dir`; returns its path.
pub fn canary_with_admin(dir: &TempDir, token_file: &Path, pause: &str) -> PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[service.web]
command = ["{baton}", "demo-app", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
instances = 2
ready_timeout = "5s"
strategy = "canary"

[service.web.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 2
unhealthy_threshold = 2

[service.web.canary]
steps = [20, 50, 100]
pause = "{pause}"
min_requests = 30
max_error_rate = 0.01
p99_floor = "250ms"

[[route]]
service = "web"

[admin]
listen = "127.0.0.1:0"
token = "file:{token}"
"#,
            baton = baton().display(),
            token = token_file.display(),
        ),
    )
    .unwrap();
    path
}

/// Runs `baton ARGS` to completion: its exit code and all its output.
pub async fn run_baton(args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(baton());
    cmd.args(args);
    let mut p = Proc::spawn(&mut cmd);
    let status = p.wait_exit().await;
    p.wait_output_closed().await;
    (status.code().unwrap_or(-1), p.lines().join("\n"))
}

/// Waits until ten requests in a row through `addr` are answered by
/// `version` (the `x-instance` header).
pub async fn wait_version(addr: &str, version: &str) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{version} never answered alone"
        );
        let r = get(addr, "/").await;
        in_a_row = if r.status == 200 && r.instance_version() == version {
            in_a_row + 1
        } else {
            0
        };
    }
}

/// Asserts that every instance `baton` stopped was out of its pool with
/// its requests finished before it got SIGTERM: no "drain began" line
/// counts a slow request (a client's) still in flight — an app that does
/// not drain by itself would lose it. Returns how many drains it checked.
pub fn assert_no_sigterm_in_flight(baton: &Proc) -> usize {
    let drains: Vec<String> = baton
        .lines()
        .into_iter()
        .filter(|l| l.contains("drain began"))
        .collect();
    let cut: Vec<&String> = drains
        .iter()
        .filter(|l| !l.contains("slow_in_flight=0"))
        .collect();
    assert!(
        cut.is_empty(),
        "instances got SIGTERM with requests in flight:\n{}",
        cut.iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    drains.len()
}

/// The app: `hello` on the given address and version; `*broken*` versions
/// fail their health check.
pub fn app_script(dir: &TempDir) -> PathBuf {
    let script = dir.path().join("app.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$2\" in *broken*) extra=--fail-health;; esac\nexec {} --listen \"$1\" --app-version \"$2\" $extra\n",
            hello().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}
