//! Test support: start the real `hello` binary, learn its address from the
//! `listening on` line, wait on its log lines and exit, and talk HTTP/1 to
//! it with a minimal hyper client. Every wait is bounded by [`WAIT`], so a
//! broken binary fails a test instead of hanging it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound of every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// A running `hello` process, killed when dropped.
pub struct Hello {
    child: Child,
    /// Every address from the `listening on` lines, in order.
    pub addrs: Vec<String>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
    /// The stderr lines seen so far, for failure messages.
    seen: Vec<String>,
}

/// A `hello` command with piped output and logs at `info`.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hello"));
    cmd.args(args)
        .env_remove("APP_VERSION")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Hello {
    /// Starts `hello --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub async fn start(args: &[&str]) -> Hello {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Hello::spawn(command(&all), 1).await
    }

    /// Spawns `cmd` and waits for `listeners` `listening on` lines.
    pub async fn spawn(mut cmd: Command, listeners: usize) -> Hello {
        let mut child = cmd.spawn().expect("could not start hello");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let mut hello = Hello {
            child,
            addrs: Vec::new(),
            stdout,
            stderr,
            seen: Vec::new(),
        };
        while hello.addrs.len() < listeners {
            let line = match timeout(WAIT, hello.stdout.recv()).await {
                Ok(Some(line)) => line,
                other => hello.fail(&format!("no `listening on` line (got {other:?})")),
            };
            match line.strip_prefix("listening on ") {
                Some(addr) => hello.addrs.push(addr.to_owned()),
                None => hello.fail(&format!("unexpected stdout line {line:?}")),
            }
        }
        hello
    }

    /// The first address, as a TCP socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0].parse().expect("a TCP address")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub async fn wait_log(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stderr.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                _ => self.fail(&format!("no log line containing {needle:?}")),
            }
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit within `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait failed"),
            Err(_) => self.fail(&format!("did not exit within {within:?}")),
        }
    }

    /// Panics with the stderr lines seen so far.
    fn fail(&mut self, what: &str) -> ! {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        panic!("hello: {what}\nstderr so far:\n{}", self.seen.join("\n"));
    }
}

/// Forwards the lines of a pipe to a channel (which also keeps the pipe
/// drained, so the child never blocks on a full pipe).
fn lines(pipe: impl AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends one request on a new connection over `io` and returns the response
/// head and a streaming body.
pub async fn send_on<I>(io: I, req: Request<Full<Bytes>>) -> Response<Incoming>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    timeout(WAIT, sender.send_request(req))
        .await
        .expect("response timed out")
        .expect("request failed")
}

/// Sends one request to `addr` on a new TCP connection; a failed exchange
/// (e.g. the connection closed before the response) is an error.
pub async fn try_send(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error> {
    let tcp = timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    timeout(WAIT, sender.send_request(req))
        .await
        .expect("response timed out")
}

/// Sends one request to `addr` on a new TCP connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Incoming> {
    let tcp = timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    send_on(tcp, req).await
}

/// A finished exchange: status, headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Reads a response to the end.
pub async fn collect(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = timeout(WAIT, body.collect())
        .await
        .expect("body timed out")
        .expect("body failed")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A request with an empty body.
pub fn request(method: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "hello.test")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `method path` on a new connection, read to the end.
pub async fn call(addr: SocketAddr, method: &str, path: &str) -> Answer {
    collect(send(addr, request(method, path)).await).await
}

/// A fresh path under the temp dir for sockets, unique per test.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hello-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Removes the directory `temp_path` made for `path`.
pub fn remove_temp(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
