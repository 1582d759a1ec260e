//! Real etcd processes for tests and benchmarks: one member or a cluster of
//! several on one address (loopback, or a bridge that network namespaces
//! reach), each member with its own data directory in a temporary directory
//! removed at the end. Readiness is etcd's own log line (that it serves
//! clients), never a sleep; every process is killed on drop. A one-member
//! etcd can serve its clients over TLS, asking them for certificates or not
//! ([`EtcdTls`]). Debian's
//! `etcd` (`etcd-server`) and `etcdctl` (`etcd-client`).
//!
//! etcd cannot report a port it chose itself, nor inherit a socket, so the
//! ports are picked by binding port 0 and releasing it before etcd binds it:
//! another process may take the port in between. When etcd then reports
//! "address already in use", the start is retried with new ports.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::{Proc, TempDir, system_tool};

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
    tls: Option<EtcdTls>,
    dir: TempDir,
}

/// TLS on etcd's client URLs (`https://`).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// etcd's certificate (PEM; it must name the address).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// With a CA, etcd asks every client for a certificate signed by it
    /// (`--client-cert-auth`).
    pub client_ca: Option<PathBuf>,
}

/// How long etcd may take to be ready on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(30);

impl Etcd {
    /// A one-member etcd.
    pub async fn start(address: Ipv4Addr) -> Etcd {
        Etcd::start_members(address, 1).await
    }

    /// A one-member etcd that serves its clients over TLS.
    pub async fn start_tls(address: Ipv4Addr, tls: EtcdTls) -> Etcd {
        Etcd::start_with(address, 1, Some(tls)).await
    }

    /// An etcd cluster of `n` members, all serving clients (so with a
    /// leader).
    pub async fn start_members(address: Ipv4Addr, n: usize) -> Etcd {
        Etcd::start_with(address, n, None).await
    }

    async fn start_with(address: Ipv4Addr, n: usize, tls: Option<EtcdTls>) -> Etcd {
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
                tls: tls.clone(),
                // etcd syncs its log on every write: on a disk that a build
                // keeps busy a sync took 5 s, past every lease's TTL.
                dir: TempDir::in_memory("etcd"),
            };
            if etcd.spawn_all().await {
                return etcd;
            }
        }
        panic!("etcd found its port taken 5 times");
    }

    /// The client URL of member `i`.
    pub fn member_endpoint(&self, i: usize) -> String {
        let scheme = match self.tls {
            Some(_) => "https",
            None => "http",
        };
        format!(
            "{scheme}://{}:{}",
            self.address, self.members[i].client_port
        )
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|i| self.member_endpoint(i))
            .collect()
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
            // Fast elections: tests kill members, and a client's request
            // bound (2 s at least) must outlast an election.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(tls) = &self.tls {
            command.arg("--cert-file").arg(&tls.cert);
            command.arg("--key-file").arg(&tls.key);
            if let Some(ca) = &tls.client_ca {
                command
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(ca);
            }
        }
        let process = Proc::spawn(&mut command).with_timeout(READY_WITHIN);
        self.members[i].process = Some(process);
    }

    /// Waits until member `i` serves clients: `true`, or `false` if its port
    /// was taken. Panics with its output if it exits or takes too long.
    async fn ready(&mut self, i: usize) -> bool {
        let ready = |l: &str| {
            l.contains("serving client traffic insecurely")
                || l.contains("serving client traffic securely")
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
