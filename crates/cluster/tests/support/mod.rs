//! Real etcd processes for the registry tests (`testkit::etcd`: one member
//! or a cluster of several, on loopback, killed on drop), with the registry
//! and raw clients the tests connect to them.

#![allow(dead_code, reason = "each test uses part of the support module")]

use std::net::Ipv4Addr;
use std::time::Duration;

use cluster::{Etcd, Options};
use testkit::etcd::{Etcd as EtcdProcesses, EtcdTls};

/// An etcd cluster of one or more members on loopback.
pub struct EtcdCluster {
    etcd: EtcdProcesses,
}

impl EtcdCluster {
    /// A one-member cluster.
    pub async fn start() -> EtcdCluster {
        EtcdCluster::start_members(1).await
    }

    /// A cluster of `n` members, all ready (so with a leader).
    pub async fn start_members(n: usize) -> EtcdCluster {
        EtcdCluster {
            etcd: EtcdProcesses::start_members(Ipv4Addr::LOCALHOST, n).await,
        }
    }

    /// A one-member cluster that serves its clients over TLS.
    pub async fn start_tls(tls: EtcdTls) -> EtcdCluster {
        EtcdCluster {
            etcd: EtcdProcesses::start_tls(Ipv4Addr::LOCALHOST, tls).await,
        }
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.etcd.member_endpoint(i)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.etcd.endpoints()
    }

    /// Kills member `i` (SIGKILL) and waits until it has exited, so that
    /// its ports are free again.
    pub async fn kill(&mut self, i: usize) {
        self.etcd.kill_member(i).await;
    }

    /// Starts the members killed again on their ports and data, and waits
    /// until they are ready.
    pub async fn restart(&mut self, _i: usize) {
        self.etcd.restart().await;
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
            tls: None,
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
