//! Test and benchmark support shared by baton's crates, used only as a dev-dependency: a child process whose output
//! lines are collected so that callers wait on a line instead of sleeping ([`Proc`]), a temp dir removed on drop
//! ([`TempDir`]), a certificate authority made at test time ([`pki`]), TLS clients ([`client`]), the test ACME
//! server ([`pebble`]), real etcd processes ([`etcd`]) and the Debian tools the tests need ([`system_tool`]).
//!
//! Every wait here is bounded (by [`EVENT_TIMEOUT`] unless a caller says otherwise): a broken program fails a test,
//! it never hangs it. A wait for something a process reports is a wait on its output, never a sleep (pebble, which
//! reports nothing, is the one thing polled). Nothing here is linked into a shipped binary.

#![deny(missing_docs)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod client;
mod dir;
pub mod etcd;
pub mod pebble;
pub mod pki;
mod process;

pub use dir::TempDir;
pub use process::{Proc, WaitError, field, signal};

/// How long any single expected event may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A program of a Debian package the tests need: on PATH, or in /usr/bin (where `scripts/test` installs it).
/// Missing, it fails the test with what to install.
pub fn system_tool(name: &str, package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain([Path::new("/usr/bin").join(name)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is neither on PATH nor in /usr/bin: this test needs Debian's \
                 `{package}` package (scripts/test installs it: apt-get install {package})"
            )
        })
}

/// A port that was free a moment ago, for a program that takes a port number rather than a socket (pebble's
/// `httpPort`, and the listener of baton's that pebble must reach).
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different ports that were free a moment ago (all held at once, so they differ, then released).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// A port free for both TCP and UDP (a DNS server listens on both), other than the ports in `taken`: picked a moment
/// ago and released, one of them may be handed out again.
pub fn free_tcp_udp_port(taken: &[u16]) -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if !taken.contains(&port) && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}
