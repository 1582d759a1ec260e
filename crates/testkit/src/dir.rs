//! A fresh private directory under the system's temp dir, removed (with everything in it) when dropped. Its name
//! carries a tag, the process id and a counter, so that tests running at once never share one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `baton-TAG-PID-N` in the temp dir (emptied first, should a dead process have left one).
    pub fn new(tag: &str) -> TempDir {
        TempDir::under(&std::env::temp_dir(), tag)
    }

    /// As [`TempDir::new`], in memory (`/dev/shm`) when the machine has it: for the data of a server whose
    /// `fsync`s must not wait on a disk that other work keeps busy (etcd blocked 5 s in `fdatasync` while a
    /// build wrote gigabytes, and every lease of the test expired).
    pub fn in_memory(tag: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            TempDir::under(shm, tag)
        } else {
            TempDir::new(tag)
        }
    }

    fn under(base: &Path, tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = base.join(format!(
            "baton-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
