//! Shared pieces of the end-to-end tests: finding the built binaries,
//! running a process while collecting its output lines (so tests wait on a
//! line instead of sleeping), signals, and a tiny raw HTTP/1.1 client.
//!
//! Every wait is bounded: a broken binary fails a test, it never hangs it.

#![allow(dead_code)] // each test module uses a different part

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub mod pebble;
pub mod tls;

/// How long any single expected event may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A fresh private directory for one test, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "baton-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stdout and stderr lines are collected.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn process under test");
        let pid = child.id().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = watch::channel(0usize);
        let tx = Arc::new(tx);
        collect(
            child.stdout.take().unwrap(),
            "out",
            lines.clone(),
            tx.clone(),
        );
        collect(child.stderr.take().unwrap(), "err", lines.clone(), tx);
        Proc {
            child,
            pid,
            lines,
            seen,
        }
    }

    /// Spawns a program that prints `listening on ADDR` and returns it with
    /// that (first) address.
    pub async fn spawn_listening(cmd: &mut Command) -> (Proc, String) {
        let mut p = Proc::spawn(cmd);
        let line = p.wait_for("listening on ").await;
        let addr = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .trim()
            .to_owned();
        (p, addr)
    }

    /// The addresses of the first `n` `listening on ADDR` lines, in order
    /// (for `baton serve`, one per `[[listener]]`, in file order), once
    /// that many were printed.
    pub async fn listening(&mut self, n: usize) -> Vec<String> {
        self.wait_count("listening on ", n).await;
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("[out] listening on "))
            .map(|a| a.trim().to_owned())
            .take(n)
            .collect()
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the first line (from the start of the output) that matches.
    pub async fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    // Both pipes closed: one last look, then fail.
                    if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                        return l;
                    }
                    panic!("process ended before {what}\n{}", self.dump());
                }
                Err(_) => panic!("timed out waiting for {what}\n{}", self.dump()),
            }
        }
    }

    /// Waits until both output pipes are closed (the process and anything
    /// that inherited them have exited).
    pub async fn wait_output_closed(&mut self) {
        let closed = async { while self.seen.changed().await.is_ok() {} };
        if tokio::time::timeout(EVENT_TIMEOUT, closed).await.is_err() {
            panic!("output was not closed\n{}", self.dump());
        }
    }

    /// Waits until `n` lines contain `needle`.
    pub async fn wait_count(&mut self, needle: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if self.lines().iter().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("{n} lines with {needle:?} not seen\n{}", self.dump()),
            }
        }
    }

    /// Waits for a line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let n = needle.to_owned();
        self.wait_line(needle, move |l| l.contains(&n)).await
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(EVENT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("process did not exit\n{}", self.dump()),
        }
    }

    pub fn signal(&self, sig: i32) {
        signal(self.pid, sig);
    }

    /// The output so far, for failure messages.
    pub fn dump(&self) -> String {
        // Per-request lines would drown the supervisor's story.
        let lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| !l.contains("slow request started"))
            .collect();
        let start = lines.len().saturating_sub(200);
        format!("--- last output lines ---\n{}", lines[start..].join("\n"))
    }

    /// The pids of every instance baton reported starting.
    pub fn instance_pids(&self) -> BTreeSet<u32> {
        self.lines()
            .iter()
            .filter(|l| l.contains("instance started"))
            .filter_map(|l| field(l, "pid")?.parse().ok())
            .collect()
    }

    /// The pids of the instances of one generation.
    pub fn generation_pids(&self, generation: u64) -> BTreeSet<u32> {
        let g = generation.to_string();
        self.lines()
            .iter()
            .filter(|l| l.contains("instance started") && field(l, "generation") == Some(&g))
            .filter_map(|l| field(l, "pid")?.parse().ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Instances run in their own process groups; a test that fails must
        // not leave them behind.
        for pid in self.instance_pids() {
            signal(pid, libc::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

fn collect<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    tag: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    seen: Arc<watch::Sender<usize>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let n = {
                let mut l = lines.lock().unwrap();
                l.push(format!("[{tag}] {line}"));
                l.len()
            };
            seen.send_replace(n);
        }
    });
}

/// The value of `key=value` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    Some(rest.split_whitespace().next().unwrap_or(""))
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
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
