//! Real etcd processes for the registry tests: one member or a cluster of
//! several, on loopback, each with its own data directory in a temporary
//! directory removed at the end (`testkit`'s `Proc` and `TempDir`).
//! Readiness is etcd's own log line (that it serves clients), never a sleep.
//! Every process is killed on drop.
//!
//! etcd cannot report a port it chose itself, nor inherit a socket, so the
//! ports are picked by binding port 0 and releasing it before etcd binds it:
//! another process may take the port in between. When etcd then reports
//! "address already in use", the start (not the test) is retried with new
//! ports.

#![allow(dead_code, reason = "each test uses part of the support module")]

use std::net::TcpListener;
use std::time::Duration;

use cluster::{Etcd, Options};
use testkit::{Proc, TempDir};
use tokio::process::Command;

/// How long etcd may take to be ready, on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(20);
const ATTEMPTS: usize = 5;

/// A port free a moment ago (see the module's header for the race).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Proc>,
}

/// An etcd cluster of one or more members on loopback.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    // Dropped last: the processes are killed before their data goes.
    dir: TempDir,
}

impl EtcdCluster {
    /// A one-member cluster.
    pub async fn start() -> EtcdCluster {
        EtcdCluster::start_members(1).await
    }

    /// A cluster of `n` members, all ready (so with a leader).
    pub async fn start_members(n: usize) -> EtcdCluster {
        for _ in 0..ATTEMPTS {
            let dir = TempDir::new("etcd");
            let members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    process: None,
                })
                .collect();
            let mut cluster = EtcdCluster {
                members,
                token: dir.path().display().to_string(),
                dir,
            };
            for i in 0..n {
                cluster.spawn(i);
            }
            let mut ready = true;
            for i in 0..n {
                ready &= cluster.ready(i).await;
            }
            if ready {
                return cluster;
            }
        }
        panic!("etcd found its port taken {ATTEMPTS} times");
    }

    fn initial_cluster(&self) -> String {
        let urls: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        urls.join(",")
    }

    /// Starts member `i` (again, on the same ports and data).
    fn spawn(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster();
        let data = self.dir.join(&self.members[i].name);
        let member = &mut self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new("etcd");
        command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Fast elections: a test kills members.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        let process = Proc::try_spawn(&mut command)
            .expect("start etcd (Debian's etcd-server; scripts/install-tools installs it)");
        member.process = Some(process.with_timeout(READY_WITHIN));
    }

    /// Waits until member `i` serves clients: `true`, or `false` if its port
    /// was taken. Panics with its output if it exits or takes too long.
    async fn ready(&mut self, i: usize) -> bool {
        // etcd 3.4 logs the first once its server is ready (with zap; with
        // its older logger, the second).
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

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Kills member `i` (SIGKILL) and waits until it has exited, so that
    /// its ports are free again.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            let _ = process.child.kill().await;
        }
    }

    /// Starts member `i` again on its ports and data, and waits until ready.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        assert!(
            self.ready(i).await,
            "etcd's port was taken while it was down"
        );
    }

    /// A raw etcd client, for what the tests do behind the registry's back.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("connect a raw etcd client")
    }

    /// `[cluster]` for these endpoints, node `node`, lease `ttl`.
    pub fn config(&self, node: &str, ttl: Duration) -> config::Cluster {
        config::Cluster {
            endpoints: self.endpoints(),
            prefix: "/test".into(),
            node: Some(node.into()),
            advertise: "127.0.0.1".into(),
            lease_ttl: ttl,
            credentials: None,
        }
    }

    /// A registry for node `node` with lease `ttl`, and short bounds.
    pub async fn registry(&self, node: &str, ttl: Duration) -> Etcd {
        Etcd::connect(&self.config(node, ttl), test_options(ttl))
            .await
            .expect("connect the registry")
    }
}

/// The production bounds for `ttl`, with a shorter connect timeout.
pub fn test_options(ttl: Duration) -> Options {
    Options {
        connect_timeout: Duration::from_secs(3),
        ..Options::for_ttl(ttl)
    }
}
