//! Certificate hot reload: polls the certificate and key files of the TLS
//! listeners and reloads a listener when one of its files changes (renewed
//! by certbot, copied by hand). Owns the polling only; what a reload
//! accepts is `ServerTls::reload`'s business.
//!
//! Polling, not inotify: it sees files behind symlinks that are re-pointed
//! (certbot's `live/` directory), on network file systems and in
//! containers alike, at the cost of one `stat` per file per interval.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::server::ServerTls;

/// What is compared between two polls of a file: a change of content shows
/// as a new modification time or length, a replacement (rename over it,
/// symlink re-pointed) as a new inode. `None`: the file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks: a re-pointed link is a new inode.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

fn stamps(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    files.iter().map(stamp).collect()
}

/// One listener's files and their stamps at the last poll (`None`: not
/// polled yet).
struct Watched {
    tls: ServerTls,
    files: Vec<PathBuf>,
    seen: Option<Vec<Option<Stamp>>>,
}

/// Polls the files of `listeners` every `every` and reloads a listener
/// whose files changed: logged at info level when new certificates are
/// served, at error level with the reason when a reload is refused (the
/// current certificates keep serving; the next change is tried again).
/// Runs until the handle is aborted (returns at once if no listener has
/// certificate files).
pub fn watch(listeners: Vec<ServerTls>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Nothing seen yet: the first poll reloads every listener, which
        // catches a change made after the certificates were first read
        // (a reload of unchanged files changes nothing).
        let mut watched: Vec<Watched> = listeners
            .into_iter()
            .map(|tls| Watched {
                files: tls.files(),
                tls,
                seen: None,
            })
            .filter(|w| !w.files.is_empty())
            .collect();
        if watched.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            for Watched { tls, files, seen } in &mut watched {
                let now = Some(stamps(files));
                if now == *seen {
                    continue;
                }
                *seen = now;
                // Reading files is blocking work, but a few small files once
                // per change; not worth a blocking thread.
                match tls.reload() {
                    Ok(true) => tracing::info!(files = ?files, "TLS certificates reloaded"),
                    Ok(false) => {
                        tracing::debug!(files = ?files, "certificate files touched, content unchanged")
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "new TLS certificates refused, the current ones keep serving"
                    ),
                }
            }
        }
    })
}
