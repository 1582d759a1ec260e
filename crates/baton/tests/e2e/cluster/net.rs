//! "Hosts" for the multi-host tests: network namespaces, each with its own
//! network stack, joined by a bridge in the test's own namespace (where etcd
//! and the load client run). Runs as root (`ip netns`). Names and the subnet
//! are unique per test process; everything is removed on drop (also when the
//! test fails), and namespaces left by a test process that was killed are
//! removed by the next one.
//!
//! Also a real etcd (one member, or a cluster of several) listening on the
//! bridge's address, so that every namespace reaches it; readiness is its log
//! line, never a sleep.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::time::Duration;

use testkit::{Proc, TempDir, system_tool};
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

/// One etcd member: its client port on the bridge's address, its peer port
/// on loopback.
struct Member {
    client_port: u16,
    peer_port: u16,
    process: Option<Proc>,
}

/// An etcd cluster of one or more members listening on `address` (free
/// ports picked there), with their data in a temporary directory; a member
/// can be killed and started again on the same ports and data.
pub struct Etcd {
    address: Ipv4Addr,
    members: Vec<Member>,
    dir: TempDir,
}

/// How long etcd may take to be ready on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(30);

impl Etcd {
    /// A one-member etcd.
    pub async fn start(address: Ipv4Addr) -> Etcd {
        Etcd::start_members(address, 1).await
    }

    /// An etcd cluster of `n` members, all serving clients (so with a
    /// leader).
    pub async fn start_members(address: Ipv4Addr, n: usize) -> Etcd {
        for _ in 0..5 {
            let free = |ip: Ipv4Addr| {
                let l = TcpListener::bind((ip, 0)).expect("bind port 0");
                l.local_addr().unwrap().port()
            };
            let members = (0..n)
                .map(|_| Member {
                    client_port: free(address),
                    peer_port: free(Ipv4Addr::LOCALHOST),
                    process: None,
                })
                .collect();
            let mut etcd = Etcd {
                address,
                members,
                dir: TempDir::new("etcd"),
            };
            if etcd.spawn_all().await {
                return etcd;
            }
        }
        panic!("etcd found its port taken 5 times");
    }

    /// The client URL of member `i`.
    pub fn member_endpoint(&self, i: usize) -> String {
        format!("http://{}:{}", self.address, self.members[i].client_port)
    }

    /// Every member's client URL, as a TOML array's items.
    pub fn toml_endpoints(&self) -> String {
        let quoted: Vec<String> = (0..self.members.len())
            .map(|i| format!("\"{}\"", self.member_endpoint(i)))
            .collect();
        quoted.join(", ")
    }

    /// The client URLs of the members that run, comma-separated.
    fn running_endpoints(&self) -> String {
        let running: Vec<String> = (0..self.members.len())
            .filter(|i| self.members[*i].process.is_some())
            .map(|i| self.member_endpoint(i))
            .collect();
        running.join(",")
    }

    /// Starts every member that is not running and waits until all of them
    /// serve clients; `false` if a port was taken meanwhile.
    async fn spawn_all(&mut self) -> bool {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].process.is_none())
            .collect();
        // All at once: a member of a cluster serves clients only once a
        // quorum of members has started.
        for &i in &stopped {
            self.spawn(i);
        }
        let mut ok = true;
        for &i in &stopped {
            ok &= self.ready(i).await;
        }
        ok
    }

    /// Starts member `i`.
    fn spawn(&mut self, i: usize) {
        let peer = |m: &Member| format!("http://127.0.0.1:{}", m.peer_port);
        let initial_cluster: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}={}", peer(m)))
            .collect();
        let client = self.member_endpoint(i);
        let token = self.dir.path().display().to_string();
        let member = &self.members[i];
        let mut command = Command::new(system_tool("etcd", "etcd-server"));
        command
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.join(&format!("data{i}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer(member)])
            .args(["--initial-advertise-peer-urls", &peer(member)])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        let process = Proc::spawn(&mut command).with_timeout(READY_WITHIN);
        self.members[i].process = Some(process);
    }

    /// Waits until member `i` serves clients: `true`, or `false` if its port
    /// was taken. Panics with its output if it exits or takes too long.
    async fn ready(&mut self, i: usize) -> bool {
        let ready = |l: &str| {
            l.contains("serving client traffic insecurely")
                || l.contains("ready to serve client requests")
        };
        let in_use = |l: &str| l.contains("address already in use");
        let process = self.members[i].process.as_mut().expect("started");
        let outcome = process
            .wait_from(0, "etcd serving clients", |l| ready(l) || in_use(l))
            .await;
        match outcome {
            Ok((_, line)) => !in_use(&line),
            Err(e) => panic!("{e}\n{}", process.dump()),
        }
    }

    /// Kills every member (SIGKILL) and waits until they have exited.
    pub async fn kill(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i).await;
        }
    }

    /// Kills member `i` (SIGKILL) and waits until it has exited.
    pub async fn kill_member(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            let _ = process.child.kill().await;
        }
    }

    /// Starts every stopped member again on its ports and data, and waits
    /// until they serve.
    pub async fn restart(&mut self) {
        assert!(
            self.spawn_all().await,
            "etcd's port was taken while it was down"
        );
    }

    /// Kills the leader (SIGKILL) and waits until the members left have
    /// elected another one; returns the killed member. (A request that a
    /// member forwarded to the dead leader is never answered: etcdctl would
    /// time out on it.)
    pub async fn kill_leader(&mut self) -> usize {
        let leader = self.leader().await;
        let witness = (0..self.members.len())
            .find(|&i| i != leader && self.members[i].process.is_some())
            .expect("a member besides the leader");
        let from = self.members[witness]
            .process
            .as_ref()
            .unwrap()
            .lines()
            .len();
        self.kill_member(leader).await;
        let process = self.members[witness].process.as_mut().unwrap();
        let elected = |l: &str| l.contains("elected leader");
        if let Err(e) = process.wait_from(from, "a new leader", elected).await {
            panic!("{e}\n{}", process.dump());
        }
        leader
    }

    /// The member that is the leader now, as the members that run say.
    async fn leader(&self) -> usize {
        let out = self.ctl(&["endpoint", "status", "--write-out=json"]).await;
        let statuses: serde_json::Value = serde_json::from_str(&out).expect("etcdctl's JSON");
        let leader = statuses
            .as_array()
            .and_then(|all| all.first())
            .and_then(|s| s["Status"]["leader"].as_u64())
            .unwrap_or_else(|| panic!("no leader in {out}"));
        let endpoint = statuses
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader))
            .and_then(|s| s["Endpoint"].as_str())
            .unwrap_or_else(|| panic!("the leader is none of {out}"));
        (0..self.members.len())
            .find(|&i| self.member_endpoint(i) == endpoint)
            .unwrap_or_else(|| panic!("{endpoint} is not a member"))
    }

    /// `etcdctl ARGS` against the members that run; its output, or a panic
    /// with why it failed.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(system_tool("etcdctl", "etcd-client"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.running_endpoints()])
            .args(args)
            .output()
            .await
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `etcdctl ARGS` left running (a lease's keep-alive).
    pub fn ctl_running(&self, args: &[&str]) -> Proc {
        let mut command = Command::new(system_tool("etcdctl", "etcd-client"));
        command
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.running_endpoints()])
            .args(args);
        Proc::spawn(&mut command)
    }
}
