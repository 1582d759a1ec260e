//! Interoperability with systemd's own socket activation: the real
//! `systemd-socket-activate` (Debian package `systemd`) binds a socket and
//! hands it over by the `LISTEN_FDS` protocol, to `baton exec` (which passes
//! it on to its instances) and to `hello` directly.

use tokio::process::Command;

use crate::support::{Proc, TempDir, baton, get, hello};

fn socket_activate(sock: &std::path::Path, name: &str) -> Command {
    let tool = "systemd-socket-activate";
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(tool).exists());
    assert!(
        found,
        "{tool} not found: install Debian's `systemd` package (scripts/test does)"
    );
    let mut c = Command::new(tool);
    c.arg("-l").arg(sock).arg(format!("--fdname={name}"));
    c
}

/// systemd binds, `baton exec` inherits the socket, its instances inherit it
/// from baton, and a SIGHUP restart keeps serving on the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hands_a_socket_to_baton_exec() {
    let dir = TempDir::new("sa-baton");
    let sock = dir.path().join("web.sock");
    let mut cmd = socket_activate(&sock, "web");
    cmd.arg(baton()).args(["exec", "--"]).arg(hello());
    let mut p = Proc::spawn(&mut cmd);
    p.wait_for("Listening on").await;
    let addr = format!("unix:{}", sock.display());

    // systemd-socket-activate starts the program at the first connection,
    // which waits in the socket's queue until an instance accepts it.
    let first = get(&addr, "/").await;
    assert_eq!(first.status, 200);
    p.wait_for(&format!("listening on {addr}")).await;
    p.wait_for("name=web").await;
    p.wait_for("rollout complete generation=1").await;

    p.signal(libc::SIGHUP);
    p.wait_for("rollout complete generation=2").await;
    let second = get(&addr, "/").await;
    assert_eq!(second.status, 200);
    assert!(p.generation_pids(2).contains(&second.instance_pid()));
    assert_ne!(first.instance_pid(), second.instance_pid());

    p.signal(libc::SIGTERM);
    assert!(p.wait_exit().await.success());
}

/// systemd binds and `hello` (through `handoff`) serves on the socket it is
/// handed instead of binding its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hands_a_socket_to_hello() {
    let dir = TempDir::new("sa-hello");
    let sock = dir.path().join("hello.sock");
    let mut cmd = socket_activate(&sock, "http");
    cmd.arg(hello()).args(["--listen", "127.0.0.1:1"]);
    let mut p = Proc::spawn(&mut cmd);
    p.wait_for("Listening on").await;
    let addr = format!("unix:{}", sock.display());
    let r = get(&addr, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("Hello, 你好,Rust服务器!"), "{}", r.body);
    assert_eq!(
        r.instance_pid(),
        p.pid,
        "systemd-socket-activate execs the app in place"
    );
    p.wait_for(&format!("listening on {addr}")).await;
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit().await.success());
}
