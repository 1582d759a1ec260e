//! Cluster mode in `baton serve`: with `[cluster]`, the node joins the etcd
//! registry, registers the instances its pools route to (and takes them out
//! of the registry, and of every front door, before they are signalled),
//! and fills the pools that `discover` a service with the registry's
//! instances of it. The deploy engine knows none of this: it calls a
//! `deploy::Registrar` after each publish and takes discovered members
//! through `Engine::set_discovered`. A supervised service's deploys are the
//! cluster's: `deploys` (a `deploy::ClusterDeploys`) writes the desired
//! version and follows every node to it, and on every node `converge`
//! brings its own instances there, one slot of the cluster's semaphore at
//! a time — or, blue-green, all at once on standby until one write of the
//! service's active version switches every front door. A canary runs on the
//! deploying node before the rollout.
//!
//! `GET /v1/cluster` (`view`) answers with the whole cluster as one read of
//! the registry shows it, and `print` makes the cluster section of
//! `baton status` from it.
//!
//! The etcd client's build needs `protoc`, so cluster mode is the cargo
//! feature `cluster` (off by default: `cargo run --release -- demo` builds
//! on a machine without it). A binary built without it refuses a
//! `[cluster]` section at start and in `baton check`, saying how to build
//! one with it.

#[cfg(feature = "cluster")]
mod converge;
#[cfg(feature = "cluster")]
mod deploys;
#[cfg(feature = "cluster")]
mod node;
#[cfg(feature = "cluster")]
mod registrar;
mod view;

#[cfg(feature = "cluster")]
pub use node::{Node, join};
pub use view::{Viewer, print, view};

/// How to build a baton with cluster support, for the error a binary
/// without it gives.
#[cfg(not(feature = "cluster"))]
const BUILD_HINT: &str = "cargo build --release --features cluster (the etcd client's build needs protoc: Debian's protobuf-compiler and libprotobuf-dev)";

/// Whether this binary can run `cfg`: a `[cluster]` section needs the
/// `cluster` feature.
pub fn supported(cfg: &config::Config) -> anyhow::Result<()> {
    #[cfg(not(feature = "cluster"))]
    if cfg.cluster.is_some() {
        anyhow::bail!(
            "[cluster] needs a baton built with cluster support, and this one was built without it; build it with: {BUILD_HINT}"
        );
    }
    let _ = cfg;
    Ok(())
}

/// Reads what `[cluster]` names without connecting — the password's file or
/// variable, the TLS files (the CA parsed as certificates) — so that
/// `baton check` says now what `baton serve` would only say at start.
pub fn check_files(cfg: &config::Config) -> anyhow::Result<()> {
    #[cfg(feature = "cluster")]
    if let Some(settings) = &cfg.cluster {
        cluster::check_files(settings)?;
        if let Some(files) = &settings.tls {
            let ca = config::UpstreamTls {
                ca_bundle: Some(files.ca.clone()),
                server_name: None,
            };
            tls::client_config(&ca).map_err(|e| anyhow::anyhow!("[cluster] ca: {e}"))?;
        }
    }
    let _ = cfg;
    Ok(())
}

/// Without the `cluster` feature there is never a node: [`supported`]
/// refused every config with `[cluster]`.
#[cfg(not(feature = "cluster"))]
pub enum Node {}

#[cfg(not(feature = "cluster"))]
impl Node {
    /// Never called: no node exists.
    pub fn follow(&mut self, _engine: &deploy::Engine) {
        match *self {}
    }

    /// Never called: no node exists.
    pub async fn leave(self) {
        match self {}
    }

    /// Never called: no node exists.
    pub fn viewer(&self) -> Viewer {
        match *self {}
    }
}

/// Without the `cluster` feature: no node (the config was checked by
/// [`supported`]).
#[cfg(not(feature = "cluster"))]
pub async fn join(cfg: &config::Config, _engine: &deploy::Engine) -> anyhow::Result<Option<Node>> {
    supported(cfg)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    const CLUSTER: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\n[cluster]\nendpoints = [\"127.0.0.1:2379\"]\nadvertise = \"127.0.0.1\"\n";

    /// Without the feature, `[cluster]` is refused with how to build a baton
    /// that has it; with it, accepted (connecting is `join`'s business).
    #[test]
    fn a_cluster_section_needs_the_cluster_feature() {
        let cfg = config::parse(CLUSTER, "t.toml").unwrap();
        let result = super::supported(&cfg);
        match cfg!(feature = "cluster") {
            true => assert!(result.is_ok()),
            false => {
                let e = result.unwrap_err().to_string();
                assert!(
                    e.contains("cargo build --release --features cluster"),
                    "{e}"
                );
            }
        }
        let plain = config::parse("[[listener]]\naddress = \"127.0.0.1:0\"\n", "t.toml").unwrap();
        assert!(super::supported(&plain).is_ok());
    }

    /// `baton check` reads the files `[cluster]` names: a password file or
    /// a CA that cannot be read or is not PEM is an error before a start.
    #[cfg(feature = "cluster")]
    #[test]
    fn check_reads_the_password_file_and_the_ca() {
        tls::install_default_provider();
        let dir = testkit::TempDir::new("cluster-check");
        let missing = dir.join("missing");
        let not_pem = dir.join("not-pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "secret\n").unwrap();
        let with = |extra: String| {
            let text = format!("{CLUSTER}{extra}");
            let text = text.replace("\"127.0.0.1:2379\"", "\"https://127.0.0.1:2379\"");
            config::parse(&text, "t.toml").unwrap()
        };
        let error = |extra: String| super::check_files(&with(extra)).unwrap_err().to_string();
        let ca = |path: &std::path::Path| format!("ca = \"{}\"\n", path.display());
        let password_file = |path: &std::path::Path| {
            format!("username = \"u\"\npassword = \"file:{}\"\n", path.display())
        };
        assert_eq!(
            error(format!("{}{}", ca(&not_pem), password_file(&missing))),
            format!(
                "could not read the etcd password from {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        assert_eq!(
            error(ca(&missing)),
            format!(
                "could not read the etcd CA from {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let message = error(format!("{}{}", ca(&not_pem), password_file(&password)));
        assert!(message.starts_with("[cluster] ca: "), "{message}");
        assert!(
            message.contains(&not_pem.display().to_string()),
            "{message}"
        );
    }
}
