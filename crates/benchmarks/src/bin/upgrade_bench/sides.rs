//! The three proxies and how each upgrades itself; what "the old process" is for each, and when it is gone.
//!
//! - **baton**: `baton serve` with the backend as a pool's member; `baton upgrade --control SOCK` starts the binary
//!   on disk, which takes the sockets over; the old process is the `baton serve` that was serving, gone when it
//!   exits (it drains first).
//! - **nginx**: a master with one worker, daemonized (a master whose parent never changed ignores USR2: it takes
//!   itself for the new binary of an upgrade still going on); the binary upgrade as nginx documents it: USR2 to the old master (it starts a new master, which
//!   writes its pid file), then — once the new master has its worker — WINCH (the old workers finish gracefully),
//!   then — once they have — QUIT; the old process is the old master, gone when it exits.
//! - **HAProxy**: `haproxy -W` (master-worker) with one thread; SIGUSR2 to the master, which executes itself again
//!   and starts a new worker; the old process is the old worker, gone when it exits (the master stays).
//!
//! A process is gone when its pidfd polls readable: it has exited, whoever reaps it (after an upgrade the new baton
//! and the new nginx master are no children of this program any more).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use benchmarks::{EVENT_TIMEOUT, spawn_baton};
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use testkit::{Proc, field, signal};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::Command;

/// Which proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Baton,
    Nginx,
    Haproxy,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Baton => "baton",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
        })
    }
}

/// One running proxy.
pub struct Side {
    pub kind: Kind,
    pub addr: std::net::SocketAddr,
    /// What `--version` / `-v` says.
    pub version: String,
    bin: PathBuf,
    dir: PathBuf,
    /// The process started first; its output pipes are inherited by the processes that replace it.
    proc: Proc,
    /// The process to signal now: baton's serving process, nginx's master, HAProxy's master.
    pid: u32,
    /// baton: the lines of `proc` already looked at for `upgraded` lines.
    seen: usize,
}

impl Side {
    /// Writes the proxy's config into `dir/KIND/`, starts it and waits until it accepts connections.
    pub async fn start(kind: Kind, bin: &Path, dir: &Path, backend: &str) -> anyhow::Result<Side> {
        let dir = dir.join(kind.to_string().to_lowercase());
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        match kind {
            Kind::Baton => {
                let config = dir.join("baton.toml");
                std::fs::write(&config, baton_config(backend))?;
                cmd.arg("serve").arg("--config").arg(&config);
                cmd.arg("--control").arg(dir.join("control.sock"));
            }
            Kind::Nginx => {
                let config = dir.join("nginx.conf");
                std::fs::write(&config, nginx_config(&dir, port, backend))?;
                cmd.arg("-p").arg(format!("{}/", dir.display()));
                cmd.arg("-c").arg(&config);
                cmd.arg("-e").arg(dir.join("error.log"));
            }
            Kind::Haproxy => {
                let config = dir.join("haproxy.cfg");
                std::fs::write(&config, haproxy_config(port, backend))?;
                cmd.args(["-W", "-db", "-f"]).arg(&config);
            }
        }
        let mut proc = spawn_baton(&mut cmd)?;
        let addr = match kind {
            Kind::Baton => {
                let (_, line) = proc
                    .wait_from(0, "baton's listening on line", |l| {
                        l.starts_with("[out] listening on ")
                    })
                    .await?;
                let addr = line.rsplit("listening on ").next().unwrap_or_default();
                addr.trim().parse()?
            }
            _ => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let pid = match kind {
            Kind::Nginx => {
                // The process started daemonizes: its child, the master, writes the pid file.
                let pid_file = dir.join("nginx.pid");
                poll_until("nginx's pid file", || {
                    std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
                })
                .await?
            }
            _ => proc.pid,
        };
        wait_accepting(addr, &proc).await?;
        let version = version(kind, bin).await;
        Ok(Side {
            kind,
            addr,
            version,
            bin: bin.to_owned(),
            dir,
            proc,
            pid,
            seen: 0,
        })
    }

    /// One upgrade; the time from the signal until the old process was gone.
    pub async fn upgrade(&mut self) -> anyhow::Result<Duration> {
        match self.kind {
            Kind::Baton => self.upgrade_baton().await,
            Kind::Nginx => self.upgrade_nginx().await,
            Kind::Haproxy => self.upgrade_haproxy().await,
        }
    }

    async fn upgrade_baton(&mut self) -> anyhow::Result<Duration> {
        let old = pidfd(self.pid)?;
        let started = Instant::now();
        let gone = tokio::spawn(async move { gone(&old).await.map(|()| Instant::now()) });
        let out = Command::new(&self.bin)
            .arg("upgrade")
            .arg("--control")
            .arg(self.dir.join("control.sock"))
            .output()
            .await?;
        if !out.status.success() {
            gone.abort();
            anyhow::bail!(
                "baton upgrade exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (next, line) = self
            .proc
            .wait_from(self.seen, "the upgraded line", |l| {
                l.contains("upgraded: the new baton serves")
            })
            .await?;
        self.seen = next;
        let new = field(&line, "pid")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no pid in {line:?}"))?;
        let at = tokio::time::timeout(EVENT_TIMEOUT, gone)
            .await
            .map_err(|_| anyhow::anyhow!("the old baton {} did not exit", self.pid))???;
        eprintln!("the new baton is pid={new}");
        self.pid = new;
        Ok(at - started)
    }

    async fn upgrade_nginx(&mut self) -> anyhow::Result<Duration> {
        let old_pid = self.pid;
        let old = pidfd(old_pid)?;
        let pid_file = self.dir.join("nginx.pid");
        let started = Instant::now();
        signal(old_pid, libc::SIGUSR2);
        let new = poll_until("nginx's new master", || {
            let pid: u32 = std::fs::read_to_string(&pid_file)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (pid != old_pid && !children(pid).is_empty()).then_some(pid)
        })
        .await?;
        signal(old_pid, libc::SIGWINCH);
        // The new master is a child of the old one too.
        poll_until("the old nginx workers' exit", || {
            children(old_pid).iter().all(|&c| c == new).then_some(())
        })
        .await?;
        signal(old_pid, libc::SIGQUIT);
        tokio::time::timeout(EVENT_TIMEOUT, gone(&old))
            .await
            .map_err(|_| anyhow::anyhow!("the old nginx master {old_pid} did not exit"))??;
        self.pid = new;
        Ok(started.elapsed())
    }

    async fn upgrade_haproxy(&mut self) -> anyhow::Result<Duration> {
        let workers = children(self.pid);
        if workers.is_empty() {
            anyhow::bail!("HAProxy's master {} has no worker", self.pid);
        }
        let old: Vec<AsyncFd<OwnedFd>> = workers
            .iter()
            .map(|&w| pidfd(w))
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        signal(self.pid, libc::SIGUSR2);
        for fd in &old {
            tokio::time::timeout(EVENT_TIMEOUT, gone(fd))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("an old HAProxy worker ({workers:?}) did not exit")
                })??;
        }
        let elapsed = started.elapsed();
        poll_until("HAProxy's new worker", || {
            children(self.pid)
                .iter()
                .any(|c| !workers.contains(c))
                .then_some(())
        })
        .await?;
        Ok(elapsed)
    }

    /// Stops the proxy gracefully (bounded), then by force.
    pub async fn stop(&mut self) {
        let sig = match self.kind {
            Kind::Baton => libc::SIGTERM,
            Kind::Nginx => libc::SIGQUIT,
            Kind::Haproxy => libc::SIGUSR1,
        };
        let Ok(fd) = pidfd(self.pid) else {
            return;
        };
        signal(self.pid, sig);
        if tokio::time::timeout(EVENT_TIMEOUT, gone(&fd))
            .await
            .is_err()
        {
            signal(self.pid, libc::SIGKILL);
        }
        self.proc.instances_stopped();
        let _ = benchmarks::write_log(&self.dir.join("output.log"), &self.proc.lines());
    }
}

fn pidfd(pid: u32) -> anyhow::Result<AsyncFd<OwnedFd>> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| anyhow::anyhow!("bad pid {pid}"))?;
    let fd = pidfd_open(raw, PidfdFlags::empty())
        .map_err(|e| anyhow::anyhow!("could not open a pidfd of {pid}: {e}"))?;
    // Deprecated because an arbitrary `AsRawFd` may close or swap its descriptor while registered; an `OwnedFd`
    // owned by the `AsyncFd` cannot.
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
    Ok(fd)
}

/// Returns once the process of `fd` has exited.
async fn gone(fd: &AsyncFd<OwnedFd>) -> anyhow::Result<()> {
    let _ready = fd.readable().await?;
    Ok(())
}

/// The children of `pid` (every thread's).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Checks `probe` every 2 ms until it yields a value, for at most [`EVENT_TIMEOUT`]. The proxies' states that have
/// no event to wait on (a pid file written, a child forked) are read this way; a benchmark may poll, a test may not.
async fn poll_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_accepting(addr: std::net::SocketAddr, proc: &Proc) -> anyhow::Result<()> {
    let pid = proc.pid;
    poll_until("the proxy to accept connections", || {
        std::net::TcpStream::connect(addr).ok().map(drop)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e} (pid {pid})\n{}", proc.dump()))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn version(kind: Kind, bin: &Path) -> String {
    let arg = if kind == Kind::Baton {
        "--version"
    } else {
        "-v"
    };
    let Ok(out) = Command::new(bin).arg(arg).output().await else {
        return "unknown".into();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next().unwrap_or("unknown");
    match kind {
        Kind::Nginx => first.trim_start_matches("nginx version: nginx/").to_owned(),
        Kind::Haproxy => first.split_whitespace().nth(2).unwrap_or(first).to_owned(),
        Kind::Baton => first.trim_start_matches("baton ").to_owned(),
    }
}

fn baton_config(backend: &str) -> String {
    format!(
        r#"# bench/upgrade.sh: one listener, the backend as a pool's member, one thread as nginx and HAProxy have.
[proxy]
drain_timeout = "30s"
workers = 1

[[listener]]
address = "127.0.0.1:0"

[pool.app]
members = [{{ address = "{backend}" }}]

[[route]]
path = "/"
pool = "app"

[[route]]
path = "/echo"
pool = "app"

[[route]]
path = "/slow"
pool = "app"
"#
    )
}

fn nginx_config(dir: &Path, port: u16, backend: &str) -> String {
    let d = dir.display();
    format!(
        r#"# bench/upgrade.sh: a master and one worker, keep-alive to the upstream, no access log.
# Workers run as root when the master does: this directory is private to the benchmark.
user root;
worker_processes 1;
daemon on;
pid {d}/nginx.pid;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # The load's POST bodies (up to 64 KiB) stay in memory.
    client_body_buffer_size 128k;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    upstream backend {{
        server {backend};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
    )
}

fn haproxy_config(port: u16, backend: &str) -> String {
    format!(
        r#"# bench/upgrade.sh: master-worker (-W), one thread, keep-alive on both sides.
global
    nbthread 1
    maxconn 4096
    # The old worker's connections are bounded as baton's drain is.
    hard-stop-after 30s

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    default_backend be

backend be
    server hello {backend}
"#
    )
}
