//! The control socket of `baton serve` is 0600 from the moment its file
//! exists, even when baton runs under `umask 000`: it once was bound and
//! listening as `0777 & !umask` before being restricted, and another local
//! user could reach the API in that moment.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::process::Command;

use crate::support::{self, EVENT_TIMEOUT, Proc, TempDir, run_baton};

/// Starts of `baton serve`: each is one chance for the watcher to see the
/// file before its mode is right. It saw the old code's 0777 in about one
/// start in seven (15 of 100), so 40 starts miss it once in a thousand runs.
const STARTS: usize = 40;

/// The mode of `path` at the first `stat` that finds it: the watcher spins
/// on `stat` from before baton starts, so it sees the file within a few
/// microseconds of its creation.
fn first_mode(path: &Path) -> u32 {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => return meta.permissions().mode() & 0o7777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::hint::spin_loop();
            }
            Err(e) => panic!("{} never appeared: {e}", path.display()),
        }
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_is_0600_from_its_creation_under_umask_000() {
    let dir = TempDir::new("control-mode");
    let config = dir.path().join("baton.toml");
    std::fs::write(
        &config,
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[pool.app]\nmembers = [{ address = \"127.0.0.1:9\" }]\n[[route]]\npool = \"app\"\n",
    )
    .unwrap();
    let control: PathBuf = dir.path().join("control.sock");
    for start in 1..=STARTS {
        let watched = control.clone();
        let watcher = tokio::task::spawn_blocking(move || first_mode(&watched));
        let mut cmd = Command::new("sh");
        // `umask` applies to the shell, and `exec` keeps it for baton.
        cmd.args(["-c", "umask 000 && exec \"$0\" \"$@\""])
            .arg(support::baton())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--control")
            .arg(&control);
        let mut baton = Proc::spawn(&mut cmd);
        baton.wait_for(" ready").await;
        let first = watcher.await.unwrap();
        assert_eq!(
            first,
            0o600,
            "start {start}: the control socket was first seen with mode {first:o}\n{}",
            baton.dump()
        );
        // Nothing else was left beside it, and it answers its owner.
        assert_eq!(
            names_in(dir.path()),
            BTreeSet::from(["baton.toml".to_owned(), "control.sock".to_owned()])
        );
        let (code, out) = run_baton(&["status", "--control", &control.to_string_lossy()]).await;
        assert_eq!(code, 0, "{out}");
        baton.signal(libc::SIGTERM);
        let status = baton.wait_exit().await;
        assert!(status.success(), "{status:?}\n{}", baton.dump());
        assert!(!control.exists(), "the control socket outlived baton");
    }
}
