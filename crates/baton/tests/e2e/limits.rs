//! `baton serve` raises its soft limit on open descriptors to the hard limit
//! at start, so that a default soft limit of 1,024 does not refuse clients
//! long before `max_connections` would.

use tokio::process::Command;

use crate::support::{Proc, TempDir, baton, start_hello};

/// The soft and hard "Max open files" of a running process.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[tokio::test]
async fn serve_raises_a_low_soft_open_files_limit_to_the_hard_limit() {
    let (_upstream, upstream) = start_hello(&["--app-version", "pool"]).await;
    let dir = TempDir::new("open-files");
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[pool.app]\nmembers = [{{ address = \"{upstream}\" }}]\n\n[[route]]\npool = \"app\"\n"
        ),
    )
    .unwrap();
    // The shell lowers both limits (the soft one first: it may never exceed the hard one; a hard limit of 4,096 is allowed to any
    // process that has at least that much) and then becomes baton.
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"ulimit -Sn 256 && ulimit -Hn 4096 && exec "$0" serve --config "$1""#)
        .arg(baton())
        .arg(&path);
    let (mut p, _addr) = Proc::spawn_listening(&mut c).await;
    let line = p.wait_for("open files limit raised").await;
    assert!(line.contains("before=256"), "{line}");
    assert!(line.contains("now=4096"), "{line}");
    assert_eq!(open_files_limit(p.pid), (4096, 4096));
}
