//! "Hosts" for the multi-host tests: network namespaces, each with its own
//! network stack, joined by a bridge in the test's own namespace (where etcd
//! and the load client run). Runs as root (`ip netns`). Names and the subnet
//! are unique per test process; everything is removed on drop (also when the
//! test fails), and namespaces left by a test process that was killed are
//! removed by the next one.
//!
//! etcd (`testkit::etcd`, one member or several) listens on the bridge's
//! address, so that every namespace reaches it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command as StdCommand;

pub use testkit::etcd::Etcd;
use testkit::system_tool;
use tokio::process::Command;

/// The prefix of every namespace, bridge and veth name these tests make.
const PREFIX: &str = "btn";

/// Hosts on one bridge.
pub struct Net {
    bridge: String,
    /// The namespaces, in order (host `i` has address `.{i + 2}`).
    hosts: Vec<String>,
    subnet: [u8; 3],
}

/// Runs `ip ARGS`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let out = StdCommand::new(ip_tool())
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_tool() -> PathBuf {
    ["/usr/sbin/ip", "/sbin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| system_tool("ip", "iproute2"))
}

/// Runs `ip ARGS`, ignoring a failure (cleaning up what may be gone).
fn ip_quiet(args: &[&str]) {
    let _ = StdCommand::new(ip_tool()).args(args).output();
}

impl Net {
    /// `n` hosts on a new bridge.
    pub fn new(n: usize) -> Net {
        remove_stale();
        let pid = std::process::id();
        // 10.X.Y.0/24 from the pid: different for tests running at once.
        let subnet = [10, 64 + ((pid >> 8) % 128) as u8, (pid & 0xff) as u8];
        let bridge = format!("{PREFIX}{pid}b");
        let net = Net {
            bridge: bridge.clone(),
            hosts: (0..n).map(|i| format!("{PREFIX}{pid}n{i}")).collect(),
            subnet,
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let gateway = format!("{}/24", net.gateway());
        ip(&["addr", "add", &gateway, "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for (i, ns) in net.hosts.iter().enumerate() {
            let outside = format!("{PREFIX}{pid}v{i}");
            let inside = format!("{PREFIX}{pid}i{i}");
            ip(&["netns", "add", ns]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &outside, "master", &bridge]);
            ip(&["link", "set", &outside, "up"]);
            ip(&["link", "set", &inside, "netns", ns]);
            let address = format!("{}/24", net.address(i));
            ip(&["-n", ns, "addr", "add", &address, "dev", &inside]);
            ip(&["-n", ns, "link", "set", &inside, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The bridge's address, in the test's own namespace.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Host `i`'s address.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 2 + i as u8)
    }

    /// Cuts host `i` off the network (its link to the bridge down).
    pub fn cut(&self, i: usize) {
        let outside = format!("{PREFIX}{}v{i}", std::process::id());
        ip(&["link", "set", &outside, "down"]);
    }

    /// Connects host `i` again.
    pub fn heal(&self, i: usize) {
        let outside = format!("{PREFIX}{}v{i}", std::process::id());
        ip(&["link", "set", &outside, "up"]);
    }

    /// `program` run on host `i` (`ip netns exec`, which execs it: the
    /// process is the program itself).
    pub fn command(&self, i: usize, program: impl Into<PathBuf>) -> Command {
        let mut c = Command::new(ip_tool());
        c.args(["netns", "exec", &self.hosts[i]])
            .arg(program.into());
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth inside it, and so its peer.
        for ns in &self.hosts {
            ip_quiet(&["netns", "del", ns]);
        }
        ip_quiet(&["link", "del", &self.bridge]);
    }
}

/// Removes the namespaces and bridges of test processes that no longer run
/// (killed before their drop).
fn remove_stale() {
    let Ok(out) = StdCommand::new(ip_tool())
        .args(["-o", "link", "show"])
        .output()
    else {
        return;
    };
    let links = String::from_utf8_lossy(&out.stdout).into_owned();
    let namespaces = StdCommand::new(ip_tool())
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let names = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .chain(
            namespaces
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned),
        );
    for name in names {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match rest[digits.len()..].starts_with('n') {
            true => ip_quiet(&["netns", "del", &name]),
            false => ip_quiet(&["link", "del", &name]),
        }
    }
}
