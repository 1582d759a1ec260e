//! `baton upgrade` carries what the old process knew of each pool member's
//! health: the new process starts from it instead of trusting every member
//! as at a first start, so a member known to be down gets no request while
//! the new process's own checks catch up.

use crate::support::{TempDir, baton_serve_with, get, start_hello};
use crate::upgrade::{new_pid, stop_last, upgrade};

/// Regression: after an upgrade a member that failed its checks was routed
/// to again (the new process trusted it until `unhealthy_threshold` of its
/// own probes failed: 2 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_known_down_stays_down_across_an_upgrade() {
    let (_good, good) = start_hello(&["--app-version", "good"]).await;
    let (_bad, bad) = start_hello(&["--app-version", "bad", "--fail-health"]).await;
    let dir = TempDir::new("upgrade-health");
    let control = dir.path().join("control.sock");
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
address = "127.0.0.1:0"

[pool.app]
members = [{{ address = "{good}" }}, {{ address = "{bad}" }}]

[pool.app.health]
path = "/healthz"
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 3

[[route]]
pool = "app"
"#
        ),
    )
    .unwrap();
    let (mut baton, addr) =
        baton_serve_with(&path, &["--control", control.to_str().unwrap()]).await;
    baton
        .wait_line("the failing member to be marked unhealthy", |l| {
            l.contains(&bad) && l.contains("to=\"unhealthy\"")
        })
        .await;

    let (code, out) = upgrade(&control, "30s").await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    let new = new_pid(&mut baton, 1).await;
    let line = baton
        .wait_line("the new process's account of the members", |l| {
            l.contains("members' health taken over")
        })
        .await;
    assert!(line.contains(&bad), "{line}");
    assert!(!line.contains(&good), "{line}");
    // Every request goes to the member that works, at once.
    for _ in 0..40 {
        let r = get(&addr, "/").await;
        assert_eq!(r.instance_version(), "good", "{}", baton.dump());
    }
    stop_last(&mut baton, new).await;
}
