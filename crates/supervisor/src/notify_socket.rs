//! The receiving end of `sd_notify` for one instance: a datagram socket at a
//! private path (in a directory only our user can enter), handed to the
//! instance as `NOTIFY_SOCKET`. One socket per instance, so a `READY=1` can
//! only come from the instance it belongs to (or its children).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UnixDatagram;

/// A directory (mode 0700) for this process's notify sockets; removed on drop.
#[derive(Debug)]
pub(crate) struct RuntimeDir {
    path: PathBuf,
}

static DIRS: AtomicU64 = AtomicU64::new(0);

impl RuntimeDir {
    pub(crate) fn create() -> io::Result<RuntimeDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        // A process killed before it could remove its directory leaves it
        // behind, and a later process may get the same pid: a name taken
        // is skipped, not an error.
        let mut tries = 0;
        loop {
            let path = base.join(format!(
                "baton-{}-{}",
                std::process::id(),
                DIRS.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(RuntimeDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 1000 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One instance's notify socket; the file is removed on drop.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

/// What an instance told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    Ready,
    Stopping,
    Status(String),
}

impl NotifySocket {
    pub(crate) fn bind(dir: &RuntimeDir, instance: u64) -> io::Result<NotifySocket> {
        let path = dir.path().join(format!("notify-{instance}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        Ok(NotifySocket { socket, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Receives the next datagram and returns what it says, in order.
    pub(crate) async fn recv(&self) -> io::Result<Vec<Notice>> {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).await?;
        Ok(parse(&buf[..n]))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn parse(datagram: &[u8]) -> Vec<Notice> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|line| match line.split_once('=') {
            Some(("READY", "1")) => Some(Notice::Ready),
            Some(("STOPPING", "1")) => Some(Notice::Stopping),
            Some(("STATUS", s)) => Some(Notice::Status(s.to_owned())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments_and_ignores_the_rest() {
        assert_eq!(
            parse(b"STATUS=warming up\nREADY=1\nWATCHDOG=1\nnonsense\n"),
            [Notice::Status("warming up".into()), Notice::Ready]
        );
        assert_eq!(parse(b"READY=0"), []);
    }

    /// Regression: the directory of a killed process with the same pid
    /// made `baton serve` fail to start its services ("File exists").
    #[test]
    fn a_directory_left_by_an_earlier_process_with_our_pid_is_skipped() {
        let probe = RuntimeDir::create().unwrap();
        let base = probe.path().parent().unwrap().to_owned();
        let next = DIRS.load(Ordering::Relaxed);
        let stale: Vec<PathBuf> = (next..next + 3)
            .map(|n| base.join(format!("baton-{}-{n}", std::process::id())))
            .collect();
        for dir in &stale {
            std::fs::create_dir(dir).unwrap();
        }
        let dir = RuntimeDir::create().unwrap();
        assert!(dir.path().is_dir());
        assert!(!stale.contains(&dir.path().to_owned()), "{stale:?}");
        for dir in &stale {
            std::fs::remove_dir(dir).unwrap();
        }
    }

    #[tokio::test]
    async fn receives_from_a_sender_at_the_path() {
        let dir = RuntimeDir::create().unwrap();
        let sock = NotifySocket::bind(&dir, 7).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.send_to(b"READY=1", sock.path()).unwrap();
        assert_eq!(sock.recv().await.unwrap(), [Notice::Ready]);
        let path = sock.path().to_owned();
        drop(sock);
        assert!(!path.exists());
        let dir_path = dir.path().to_owned();
        drop(dir);
        assert!(!dir_path.exists());
    }
}
