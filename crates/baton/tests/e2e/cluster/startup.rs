//! A `[cluster]` that cannot work stops `baton serve` at start with the
//! reason, instead of a node that hangs or serves without its registry: an
//! endpoint where nothing listens, and a password etcd refuses.

use std::net::Ipv4Addr;

use testkit::etcd::Etcd;

use crate::support::{self, TempDir};

/// `baton serve` on a config with `cluster` as its `[cluster]` section:
/// its exit code and output.
async fn serve(dir: &TempDir, cluster: &str) -> (i32, String) {
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[cluster]\nadvertise = \"127.0.0.1\"\nnode = \"node-a\"\n{cluster}\n[pool.everywhere]\ndiscover = \"web\"\n\n[[route]]\npool = \"everywhere\"\n"
    );
    let path = dir.join("baton.toml");
    std::fs::write(&path, config).unwrap();
    let control = dir.join("baton.sock");
    let args = [
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--control",
        control.to_str().unwrap(),
    ];
    support::run_baton(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_endpoint_or_password_stops_baton_serve_at_start_with_the_reason() {
    let dir = TempDir::new("cluster-startup");
    // Nothing listens on a port released a moment ago.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out) = serve(&dir, &format!("endpoints = [\"http://{closed}\"]\n")).await;
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "baton: could not join the cluster: could not reach etcd at http://{closed} within 5s: {closed}: Connection refused"
    );
    assert!(out.contains(&expected), "{out}");

    let etcd = Etcd::start(Ipv4Addr::LOCALHOST).await;
    etcd.ctl(&["user", "add", "root", "--new-user-password=root-secret"])
        .await;
    etcd.ctl(&["role", "add", "root"]).await;
    etcd.ctl(&["user", "grant-role", "root", "root"]).await;
    etcd.ctl(&["auth", "enable"]).await;
    let password = dir.join("password");
    std::fs::write(&password, "wrong-secret\n").unwrap();
    let endpoint = etcd.member_endpoint(0);
    let section = format!(
        "endpoints = [\"{endpoint}\"]\nusername = \"root\"\npassword = \"file:{}\"\n",
        password.display()
    );
    let (code, out) = serve(&dir, &section).await;
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "baton: could not join the cluster: could not authenticate to etcd at {endpoint} as user \"root\""
    );
    assert!(out.contains(&expected), "{out}");
    assert!(!out.contains("wrong-secret"), "{out}");
}
