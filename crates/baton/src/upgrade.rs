//! `baton upgrade` (and SIGUSR2): the running `baton serve` is replaced by
//! the binary on disk with no gap, its instances kept.
//!
//! The old process starts the new one (the same executable path and
//! arguments it was started with) with `BATON_UPGRADE=1` and a Unix socket
//! as its stdin, over which they exchange one JSON line at a time:
//!
//! 1. old → new, with the descriptors attached (`SCM_RIGHTS`): `sockets`,
//!    the names of the proxy's listeners passed, then of baton's own (the
//!    control socket, the admin listener). The very same sockets: their
//!    accept queues never close.
//! 2. The new process reads and checks its config and certificates, opens
//!    the state, builds the proxy, then says `prepared`. A refusal is its
//!    exit (64 for a bad config, with its errors in the log).
//! 3. old → new: `go`, with the running instances of every service (pid,
//!    start time, port, version, readiness) and what the old process knows
//!    of every pool member's health (the active flag and streaks, the
//!    passive streak, backoff and the rest of an ejection). From here on the
//!    old process supervises nothing (its groups are frozen) and no deploy
//!    may start.
//! 4. The new process adopts them (same PIDs, watched by pidfd), takes the
//!    members' health over (a member known down stays down; otherwise it
//!    would be trusted as at a first start until its checks failed again),
//!    serves on the same sockets, and says `ready`.
//! 5. The old process names the new one the main process to systemd
//!    (`MAINPID=`), stops accepting, drains what it has in flight and exits
//!    as soon as that is done.
//!
//! A new process that exits, or that is not ready within the timeout, is
//! killed (it has not served yet) and the old one supervises again, keeps
//! serving, and answers with the reason. An upgrade is refused while a
//! deploy runs (the new process could not finish it); a deploy is refused
//! (exit 75) while an upgrade runs.
//!
//! Idle keep-alive client connections are not handed over yet: the old
//! process closes them as any drain does (after `Connection: close` on the
//! last response of a busy one). Moving a parked plain-HTTP connection (no
//! unread byte in user space, only its socket) is possible in principle but
//! needs what does not exist: `handoff::http::Server` takes connections only
//! from its own accept loops, where the connection limit, the counts, the
//! keep-alive deadline and the drain are attached, so the new process has
//! nowhere to inject an accepted socket; the parked wait (`http::park`)
//! closes the socket when the drain closes idle connections and would have
//! to give it to a sink instead, only for an upgrade's drain; and this
//! handover socket would have to stay open through the old process's drain
//! to carry the sockets (at most `fdpass::MAX_FDS` a message). A TLS
//! connection cannot move at all: its rustls session (keys, sequence
//! numbers) lives in the old process's memory.
//!
//! For tests only: `BATON_TEST_UPGRADE_FAULT_FILE` names a file that, when a
//! new process starts, makes it `crash` (exit 70 at once) or `hang` (before
//! it serves, once it has taken the instances over) if it holds that word.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use handoff::http::Stop;
use handoff::{Listener, NamedListener};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Set in the new process's environment: its stdin is the handover socket.
const ENV: &str = "BATON_UPGRADE";
/// Test-only: a file whose word (`crash`, `hang`) makes the new process
/// fail that way.
const FAULT_ENV: &str = "BATON_TEST_UPGRADE_FAULT_FILE";
/// How long an upgrade asked for by SIGUSR2 waits for the new process.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest line either side accepts.
const MAX_LINE: usize = 16 << 20;

/// One line of the handover.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Message {
    Sockets {
        listeners: Vec<String>,
        /// `control`, `admin`: after the listeners.
        own: Vec<String>,
    },
    Prepared,
    Go {
        services: BTreeMap<String, deploy::HandedOver>,
        /// Absent from an older baton's `go`: the members then start as at
        /// a first start.
        #[serde(default)]
        health: Vec<CarriedMember>,
    },
    Ready {
        pid: u32,
    },
}

/// One pool member's health as the handover carries it
/// (`balance::CarriedHealth`, which has no serde).
#[derive(Debug, Serialize, Deserialize)]
struct CarriedMember {
    pool: String,
    member: String,
    healthy: bool,
    #[serde(default)]
    active_successes: u32,
    #[serde(default)]
    active_failures: u32,
    #[serde(default)]
    passive_streak: u32,
    #[serde(default)]
    ejections: u32,
    /// What is left of a passive ejection, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ejected_for_ms: Option<u64>,
}

impl From<proxy::CarriedMember> for CarriedMember {
    fn from(c: proxy::CarriedMember) -> CarriedMember {
        let h = c.health;
        CarriedMember {
            pool: c.pool,
            member: c.member,
            healthy: h.healthy,
            active_successes: h.active_successes,
            active_failures: h.active_failures,
            passive_streak: h.passive_streak,
            ejections: h.ejections,
            // Rounded up: an ejection never ends early by the rounding.
            ejected_for_ms: h
                .ejected_for
                .map(|d| u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)),
        }
    }
}

impl From<CarriedMember> for proxy::CarriedMember {
    fn from(c: CarriedMember) -> proxy::CarriedMember {
        proxy::CarriedMember {
            pool: c.pool,
            member: c.member,
            health: proxy::CarriedHealth {
                healthy: c.healthy,
                active_successes: c.active_successes,
                active_failures: c.active_failures,
                passive_streak: c.passive_streak,
                ejections: c.ejections,
                ejected_for: c.ejected_for_ms.map(Duration::from_millis),
            },
        }
    }
}

/// Why an upgrade did not happen; the old process serves on.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Refused(#[from] deploy::DeployError),
    #[error("another upgrade is running")]
    Running,
    #[error("could not start the new baton {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("could not hand over to the new baton: {0}")]
    Handover(String),
    #[error(
        "the new baton exited ({status}) before it was ready{}; the old one keeps serving",
        if *.usage { " — its config or certificates were refused, see its errors in the log" } else { "" }
    )]
    Exited {
        status: std::process::ExitStatus,
        usage: bool,
    },
    #[error(
        "the new baton was not ready within {}; it was stopped and the old one keeps serving",
        humantime::format_duration(*.0)
    )]
    NotReady(Duration),
}

impl UpgradeError {
    /// The CLI's exit code: 75 when it may work later, 1 otherwise.
    pub fn exit(&self) -> u8 {
        match self {
            UpgradeError::Refused(_) | UpgradeError::Running => crate::EXIT_TEMPFAIL,
            _ => 1,
        }
    }
}

// What the old process keeps to hand over, and what the new one received.
// Process-wide because they are taken where `baton serve` binds (its
// listeners, its control socket), far from where they are used.
static LISTENERS: Mutex<Vec<NamedListener>> = Mutex::new(Vec::new());
static OWN: Mutex<Vec<NamedListener>> = Mutex::new(Vec::new());
static INCOMING: Mutex<Option<UnixStream>> = Mutex::new(None);
static RECEIVED_OWN: Mutex<Vec<NamedListener>> = Mutex::new(Vec::new());
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps second descriptors of the proxy's listeners, to hand over.
pub fn remember_listeners(listeners: &[(NamedListener, config::Listener)]) {
    let mut kept = lock(&LISTENERS);
    for (l, _) in listeners {
        match l.listener.try_clone() {
            Ok(listener) => kept.push(NamedListener {
                name: l.name.clone(),
                listener,
            }),
            Err(e) => {
                tracing::warn!(listener = %l.name, error = %e, "could not keep a listener for upgrades")
            }
        }
    }
}

/// One of baton's own sockets (`control`, `admin`): the one handed over,
/// or a newly bound one; a second descriptor is kept to hand over.
pub fn own_listener(
    name: &str,
    bind: impl FnOnce() -> anyhow::Result<Listener>,
) -> anyhow::Result<Listener> {
    let handed = {
        let mut received = lock(&RECEIVED_OWN);
        let at = received.iter().position(|l| l.name == name);
        at.map(|i| received.swap_remove(i).listener)
    };
    let listener = match handed {
        Some(l) => l,
        None => bind()?,
    };
    match listener.try_clone() {
        Ok(kept) => lock(&OWN).push(NamedListener {
            name: name.to_owned(),
            listener: kept,
        }),
        Err(e) => tracing::warn!(socket = name, error = %e, "could not keep a socket for upgrades"),
    }
    Ok(listener)
}

/// Whether this process handed everything over: it must then stop no
/// instance and remove no socket file on its way out.
pub fn handed_over() -> bool {
    HANDED_OVER.load(Ordering::SeqCst)
}

// ---- The new process's side ----

/// In a new process of an upgrade, takes the handed-over sockets (the
/// proxy's listeners; the control socket is kept for `control_listener`).
/// `Ok(None)` when this process is not an upgrade's.
pub fn receive() -> anyhow::Result<Option<Vec<NamedListener>>> {
    if std::env::var_os(ENV).is_none() {
        return Ok(None);
    }
    fault("crash");
    let stdin: OwnedFd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("could not take the handover socket (stdin)")?;
    let stream = UnixStream::from(stdin);
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fds) = handoff::fdpass::recv_fds(&stream, &mut buf, handoff::fdpass::MAX_FDS).context(
        format!("{ENV} is set but stdin is not an upgrade's handover socket"),
    )?;
    let mut line = buf[..n].to_vec();
    while !line.contains(&b'\n') {
        let mut more = [0u8; 4096];
        let m = (&stream)
            .read(&mut more)
            .context("could not read the handover")?;
        if m == 0 || line.len() > MAX_LINE {
            anyhow::bail!("the handover ended early");
        }
        line.extend_from_slice(&more[..m]);
    }
    let Message::Sockets { listeners, own } =
        serde_json::from_slice(&line).context("could not read the handover")?
    else {
        anyhow::bail!("the handover did not start with the sockets");
    };
    let expected = listeners.len() + own.len();
    if fds.len() != expected {
        anyhow::bail!(
            "the handover named {expected} sockets but passed {}",
            fds.len()
        );
    }
    let mut fds = fds.into_iter();
    let mut out = Vec::with_capacity(listeners.len());
    for (name, fd) in listeners.into_iter().zip(fds.by_ref()) {
        out.push(NamedListener {
            name,
            listener: Listener::from_fd(fd)?,
        });
    }
    for (name, fd) in own.into_iter().zip(fds) {
        lock(&RECEIVED_OWN).push(NamedListener {
            name,
            listener: Listener::from_fd(fd)?,
        });
    }
    *lock(&INCOMING) = Some(stream);
    tracing::info!(
        listeners = out.len(),
        "sockets received from the baton being upgraded"
    );
    Ok(Some(out))
}

/// Starts the engine: in an upgrade's new process, once the old one hands
/// its instances over; otherwise as a first start.
pub async fn start_engine(engine: &deploy::Engine, proxy: Arc<proxy::Proxy>) -> anyhow::Result<()> {
    let Some(stream) = lock(&INCOMING).as_ref().and_then(|s| s.try_clone().ok()) else {
        return engine.start(proxy).context("could not start the services");
    };
    send(&stream, &Message::Prepared)?;
    let (services, health) = match read_line(&stream)? {
        Message::Go { services, health } => (services, health),
        other => anyhow::bail!("unexpected handover message {other:?}"),
    };
    let count: usize = services.values().map(|s| s.instances.len()).sum();
    tracing::info!(
        services = services.len(),
        instances = count,
        "taking over the running instances"
    );
    engine
        .start_adopting(proxy.clone(), services)
        .context("could not start the services")?;
    // Serve only once the adopted instances are in the pools: a request
    // this process accepted before would find none.
    engine.settled().await;
    // Then with what the old process knew of them, before any request.
    let carried: Vec<proxy::CarriedMember> = health.into_iter().map(Into::into).collect();
    let found = proxy.carry_in_health(&carried);
    let down: Vec<String> = carried
        .iter()
        .filter(|c| !c.health.healthy || c.health.ejected_for.is_some())
        .map(|c| format!("{}/{}", c.pool, c.member))
        .collect();
    tracing::info!(members = found, of = carried.len(), down = ?down, "members' health taken over");
    if fault_is("hang") {
        tracing::warn!("test fault: hanging before serving");
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// The new process serves: tells the old one, which then drains and exits.
pub fn ready() {
    let Some(stream) = lock(&INCOMING).take() else {
        return;
    };
    if let Err(e) = send(
        &stream,
        &Message::Ready {
            pid: std::process::id(),
        },
    ) {
        tracing::error!(error = %e, "could not tell the old baton that this one is ready");
    }
}

fn send(stream: &UnixStream, message: &Message) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    (&*stream)
        .write_all(&line)
        .context("could not write to the old baton")
}

fn read_line(stream: &UnixStream) -> anyhow::Result<Message> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the line may be consumed (there is
    // nothing after it either; the lines alternate).
    loop {
        let n = (&*stream)
            .read(&mut byte)
            .context("could not read from the old baton")?;
        if n == 0 {
            anyhow::bail!("the old baton closed the handover");
        }
        if byte[0] == b'\n' {
            break;
        }
        if line.len() >= MAX_LINE {
            anyhow::bail!("a handover line is too long");
        }
        line.push(byte[0]);
    }
    serde_json::from_slice(&line).context("could not read the handover")
}

fn fault_is(word: &str) -> bool {
    std::env::var_os(FAULT_ENV)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .is_some_and(|s| s.trim() == word)
}

fn fault(word: &str) {
    if fault_is(word) {
        eprintln!("baton: test fault: {word} at start");
        std::process::exit(70);
    }
}

// ---- The old process's side ----

/// Starts upgrades of this process; clones share it.
#[derive(Clone)]
pub struct Upgrader {
    exe: PathBuf,
    args: Vec<OsString>,
    engine: deploy::Engine,
    proxy: Arc<proxy::Proxy>,
    stop: watch::Sender<Stop>,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Upgrader {
    /// `exe` and `args` are this process's own, read at start: the binary
    /// at that path (replaced on disk since, typically) is what starts.
    pub fn new(
        engine: deploy::Engine,
        proxy: Arc<proxy::Proxy>,
        stop: watch::Sender<Stop>,
    ) -> anyhow::Result<Upgrader> {
        let exe = std::env::current_exe().context("could not find baton's own path")?;
        Ok(Upgrader {
            exe,
            args: std::env::args_os().skip(1).collect(),
            engine,
            proxy,
            stop,
            running: Arc::default(),
        })
    }

    /// Upgrades; on success this process is draining and will exit.
    pub async fn run(&self, timeout: Duration) -> Result<u32, UpgradeError> {
        let _one = self.running.try_lock().map_err(|_| UpgradeError::Running)?;
        if handed_over() {
            return Err(UpgradeError::Running);
        }
        self.engine.begin_upgrade()?;
        tracing::info!(exe = %self.exe.display(), "upgrading: starting the new baton");
        let result = self.hand_over(timeout).await;
        match &result {
            Ok(pid) => {
                HANDED_OVER.store(true, Ordering::SeqCst);
                // The new process is the service now.
                if let Err(e) = handoff::notify::notify(&[handoff::notify::State::MainPid(*pid)]) {
                    tracing::warn!(error = %e, "could not tell the service manager the new main pid");
                }
                tracing::info!(pid, "upgraded: the new baton serves; draining and exiting");
                self.stop.send_replace(Stop::Drain);
            }
            Err(e) => {
                self.engine.end_upgrade();
                tracing::error!(error = %e, "upgrade failed");
            }
        }
        result
    }

    async fn hand_over(&self, timeout: Duration) -> Result<u32, UpgradeError> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| UpgradeError::Handover(e.to_string()))?;
        let mut child = tokio::process::Command::new(&self.exe)
            .args(&self.args)
            .env(ENV, "1")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| UpgradeError::Spawn {
                exe: self.exe.display().to_string(),
                source,
            })?;
        let deadline = tokio::time::Instant::now() + timeout;
        let result = tokio::select! {
            r = self.exchange(ours) => r,
            _ = tokio::time::sleep_until(deadline) => Err(UpgradeError::NotReady(timeout)),
        };
        let e = match result {
            Ok(pid) => return Ok(pid),
            Err(e) => e,
        };
        // A handover that broke off: most likely the new process exited
        // (its socket closed with it); give it a moment to be seen.
        if let UpgradeError::Handover(_) = e
            && let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), child.wait()).await
        {
            return Err(exited(status));
        }
        // It has not served (it says `ready` only once it does): nothing is
        // lost by killing it.
        let _ = child.start_kill();
        let _ = child.wait().await;
        Err(e)
    }

    /// The handover up to `ready`; an error when the new process hangs up.
    async fn exchange(&self, ours: UnixStream) -> Result<u32, UpgradeError> {
        let fail = |e: &dyn std::fmt::Display| UpgradeError::Handover(e.to_string());
        let (names, own_names, fds) = {
            let listeners = lock(&LISTENERS);
            let own = lock(&OWN);
            let names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
            let own_names: Vec<String> = own.iter().map(|l| l.name.clone()).collect();
            let mut fds: Vec<OwnedFd> = Vec::new();
            for l in listeners.iter().chain(own.iter()) {
                fds.push(
                    l.listener
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(|e| fail(&e))?,
                );
            }
            (names, own_names, fds)
        };
        let mut line = serde_json::to_vec(&Message::Sockets {
            listeners: names,
            own: own_names,
        })
        .map_err(|e| fail(&e))?;
        line.push(b'\n');
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        handoff::fdpass::send_fds(&ours, &line, &borrowed).map_err(|e| fail(&e))?;
        drop(fds);
        ours.set_nonblocking(true).map_err(|e| fail(&e))?;
        let stream = tokio::net::UnixStream::from_std(ours).map_err(|e| fail(&e))?;
        let (read, mut write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| fail(&e))?
                .ok_or_else(|| fail(&"the new baton closed the handover"))?;
            match serde_json::from_str::<Message>(&line).map_err(|e| fail(&e))? {
                Message::Prepared => {
                    let services = self.engine.hand_over().await;
                    // After the freeze: what the new process starts from
                    // is what this one knew last.
                    let health = self
                        .proxy
                        .carry_out_health()
                        .into_iter()
                        .map(CarriedMember::from)
                        .collect();
                    let mut line = serde_json::to_vec(&Message::Go { services, health })
                        .map_err(|e| fail(&e))?;
                    line.push(b'\n');
                    write.write_all(&line).await.map_err(|e| fail(&e))?;
                }
                Message::Ready { pid } => return Ok(pid),
                other => return Err(fail(&format!("unexpected message {other:?}"))),
            }
        }
    }
}

fn exited(status: std::process::ExitStatus) -> UpgradeError {
    UpgradeError::Exited {
        usage: status.code() == Some(i32::from(crate::EXIT_USAGE)),
        status,
    }
}
