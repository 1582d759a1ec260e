//! The etcd registry against real etcd processes: registration and
//! discovery, deregistration at once, lease expiry of a registrant that
//! stops renewing, a lost lease registered again, etcd down (the last set
//! kept, reachability reported) and back, a compacted revision, a
//! three-member cluster losing a member, clear errors for a wrong endpoint
//! or wrong credentials, and TLS to etcd with a client certificate.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster::{
    ConnectError, Discovery, Etcd, Members, Name, Options, Reachability, Registrant, Registry,
    State,
};
use etcd_client::GetOptions;
use support::{EtcdCluster, test_options};
use testkit::etcd::EtcdTls;

/// Bounds every wait for the registry to reflect a change; far below the
/// leases of the tests that show a change is not a lease expiry.
const CHANGE_WITHIN: Duration = Duration::from_secs(10);
const LONG_TTL: Duration = Duration::from_secs(60);

fn name(text: &str) -> Name {
    text.parse().unwrap()
}

fn web(id: &str, port: u16) -> Registrant {
    Registrant {
        service: name("web"),
        id: name(id),
        version: "v2".parse().unwrap(),
        address: format!("127.0.0.1:{port}").parse().unwrap(),
        state: State::Ready,
        weight: 1,
    }
}

/// The ids of the instances in the set, sorted.
fn ids(members: &Members) -> Vec<String> {
    members
        .instances
        .keys()
        .map(|k| format!("{}/{}", k.node, k.id))
        .collect()
}

/// Waits until the member set's ids are `expected`; returns the set.
async fn members_become(discovery: &mut Discovery, expected: &[&str]) -> Arc<Members> {
    let wait = discovery.members.wait_for(|m| ids(m) == expected);
    let outcome = tokio::time::timeout(CHANGE_WITHIN, wait).await;
    match outcome.map(|r| r.map(|members| Arc::clone(&members))) {
        Ok(Ok(members)) => members,
        Ok(Err(_)) => panic!("discovery ended"),
        Err(_) => panic!(
            "the member set is {:?}, not {expected:?}, after {CHANGE_WITHIN:?}",
            ids(&discovery.members.borrow())
        ),
    }
}

/// A connect timeout no test waits for: an error that comes within
/// [`CHANGE_WITHIN`] is an answer, not the timeout.
fn never_waited() -> Duration {
    Duration::from_secs(3600)
}

async fn reachability_becomes(
    discovery: &mut Discovery,
    ok: impl Fn(&Reachability) -> bool,
) -> Reachability {
    let wait = discovery.reachability.wait_for(|r| ok(r));
    let outcome = tokio::time::timeout(CHANGE_WITHIN, wait).await;
    match outcome.map(|r| r.map(|r| r.clone())) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => panic!("discovery ended"),
        Err(_) => panic!(
            "reachability is {:?} after {CHANGE_WITHIN:?}",
            *discovery.reachability.borrow()
        ),
    }
}

#[tokio::test]
async fn a_registered_instance_is_discovered_and_a_deregistered_one_is_gone_at_once() {
    let etcd = EtcdCluster::start().await;
    let registry = etcd.registry("node-a", LONG_TTL).await;
    let mut discovery = registry.discover(&name("web"));
    reachability_becomes(&mut discovery, |r| *r == Reachability::Reachable).await;
    assert!(discovery.members.borrow().instances.is_empty());

    let before = SystemTime::now() - Duration::from_secs(1);
    let key = registry.register(web("v2-1", 9001)).await.unwrap();
    let members = members_become(&mut discovery, &["node-a/v2-1"]).await;
    let instance = &members.instances[&key];
    assert_eq!(
        (instance.service.as_str(), instance.node.as_str()),
        ("web", "node-a")
    );
    assert_eq!(
        (
            instance.version.as_str(),
            instance.address.authority.as_str()
        ),
        ("v2", "127.0.0.1:9001")
    );
    assert_eq!(instance.state, State::Ready);
    assert!(instance.registered_at >= before && instance.registered_at <= SystemTime::now());

    // The key and value are the documented ones.
    let mut raw = etcd.client().await;
    let got = raw
        .get("/test/services/web/instances/node-a/v2-1", None)
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(got.kvs()[0].value()).unwrap();
    assert_eq!(value["state"], "ready");
    assert_eq!(value["address"], "127.0.0.1:9001");
    assert!(got.kvs()[0].lease() != 0, "registered under a lease");

    // A change of state is one new set.
    let draining = Registrant {
        state: State::Draining,
        weight: 1,
        ..web("v2-1", 9001)
    };
    registry.register(draining).await.unwrap();
    let changed = discovery.members.wait_for(|m| m.routed().count() == 0);
    tokio::time::timeout(CHANGE_WITHIN, changed)
        .await
        .unwrap()
        .unwrap();

    registry.deregister(&key).await.unwrap();
    members_become(&mut discovery, &[]).await;

    // Closing revokes the lease: every key of the node goes at once.
    registry.register(web("v2-2", 9002)).await.unwrap();
    registry.register(web("v2-3", 9003)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-2", "node-a/v2-3"]).await;
    registry.close().await.unwrap();
    members_become(&mut discovery, &[]).await;
}

#[tokio::test]
async fn the_instances_of_a_registrant_that_stops_renewing_go_when_its_lease_expires() {
    let etcd = EtcdCluster::start().await;
    let ttl = Duration::from_secs(2);
    let registrant = etcd.registry("node-a", ttl).await;
    let observer = etcd.registry("node-b", LONG_TTL).await;
    let mut discovery = observer.discover(&name("web"));
    registrant.register(web("v2-1", 9001)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-1"]).await;
    let mut raw = etcd.client().await;
    let leases = raw.leases().await.unwrap();
    let [lease] = leases.leases() else {
        panic!("not one lease: {:?}", leases.leases())
    };
    let lease = lease.id();
    // Renewals stop, the lease is not revoked: as if the node died.
    drop(registrant);
    members_become(&mut discovery, &[]).await;
    // What took the instance away is its lease's expiry: the lease, which
    // nobody revoked, is gone with it.
    let left = raw.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(left.ttl(), -1, "the lease {lease:x} is still alive");
}

#[tokio::test]
async fn a_lost_lease_is_granted_again_and_the_instances_registered_again() {
    let etcd = EtcdCluster::start().await;
    let registrant = etcd.registry("node-a", Duration::from_secs(3)).await;
    let mut discovery = registrant.discover(&name("web"));
    registrant.register(web("v2-1", 9001)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-1"]).await;
    // The lease disappears behind the registry's back (as when etcd expired
    // it during a long partition).
    let mut raw = etcd.client().await;
    let leases = raw.leases().await.unwrap();
    assert_eq!(leases.leases().len(), 1);
    raw.lease_revoke(leases.leases()[0].id()).await.unwrap();
    members_become(&mut discovery, &[]).await;
    // The next renewal finds the lease gone and registers again.
    members_become(&mut discovery, &["node-a/v2-1"]).await;
    let leases = raw.leases().await.unwrap();
    assert_eq!(leases.leases().len(), 1);
}

#[tokio::test]
async fn while_etcd_is_down_discovery_keeps_the_last_set_and_says_so_then_resyncs() {
    let mut etcd = EtcdCluster::start().await;
    // Requests give up after 2 s (a third of the TTL).
    let ttl = Duration::from_secs(6);
    let registrant = etcd.registry("node-a", ttl).await;
    let observer = etcd.registry("node-b", ttl).await;
    let mut discovery = observer.discover(&name("web"));
    registrant.register(web("v2-1", 9001)).await.unwrap();
    let before = members_become(&mut discovery, &["node-a/v2-1"]).await;
    discovery.members.mark_unchanged();

    let down = SystemTime::now();
    etcd.kill(0).await;
    let unreachable = reachability_becomes(&mut discovery, |r| {
        matches!(r, Reachability::Unreachable { .. })
    })
    .await;
    let Reachability::Unreachable { since, reason } = unreachable else {
        unreachable!()
    };
    assert!(since >= down - Duration::from_secs(1), "{since:?}");
    assert!(!reason.is_empty());
    // The last set stays, and no new set was published.
    assert!(!discovery.members.has_changed().unwrap());
    assert_eq!(**discovery.members.borrow(), *before);
    // Registering fails, ended by its own bound (a third of the TTL), with
    // the reason.
    let error = registrant.register(web("v2-2", 9002)).await.unwrap_err();
    let expected = "could not register /test/services/web/instances/node-a/v2-2: etcd gave no answer within 2s";
    assert!(error.to_string().starts_with(expected), "{error}");

    // The registrant's renewals fail too, and say so.
    let mut renewals = registrant.renewals();
    let failing = renewals.wait_for(|r| matches!(r, Reachability::Unreachable { .. }));
    tokio::time::timeout(CHANGE_WITHIN, failing)
        .await
        .unwrap()
        .unwrap();
    // A deregistration that etcd could not confirm is not forgotten.
    let v2_1 = before.instances.keys().next().unwrap().clone();
    assert!(registrant.deregister(&v2_1).await.is_err());

    etcd.restart(0).await;
    reachability_becomes(&mut discovery, |r| *r == Reachability::Reachable).await;
    registrant.register(web("v2-3", 9003)).await.unwrap();
    // The next renewal deletes v2-1 (it was registered under a live lease).
    members_become(&mut discovery, &["node-a/v2-3"]).await;
    let renewing = renewals.wait_for(|r| *r == Reachability::Reachable);
    tokio::time::timeout(CHANGE_WITHIN, renewing)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_replaced_by_a_fresh_read() {
    let etcd = EtcdCluster::start().await;
    let registry = etcd.registry("node-a", LONG_TTL).await;
    let key = registry.register(web("v2-1", 9001)).await.unwrap();
    let old = {
        let mut discovery = registry.discover(&name("web"));
        members_become(&mut discovery, &["node-a/v2-1"]).await
    };
    let b = registry.register(web("v2-2", 9002)).await.unwrap();
    registry.deregister(&b).await.unwrap();
    registry.register(web("v2-3", 9003)).await.unwrap();
    registry.deregister(&key).await.unwrap();
    let mut raw = etcd.client().await;
    let now = raw
        .get("/", Some(GetOptions::new().with_keys_only()))
        .await
        .unwrap();
    let revision = now.header().unwrap().revision();
    raw.compact(revision, None).await.unwrap();
    // Resuming from the old set: its revision is compacted, so a fresh read.
    let mut discovery = registry.discover_from(&name("web"), Members::clone(&old));
    assert_eq!(ids(&discovery.members.borrow()), ["node-a/v2-1"]);
    let fresh = members_become(&mut discovery, &["node-a/v2-3"]).await;
    assert!(fresh.revision >= revision);
}

#[tokio::test]
async fn a_three_member_etcd_keeps_registration_and_discovery_working_without_one_member() {
    let mut etcd = EtcdCluster::start_members(3).await;
    let registrant = etcd.registry("node-a", Duration::from_secs(5)).await;
    let observer = etcd.registry("node-b", LONG_TTL).await;
    let mut discovery = observer.discover(&name("web"));
    let a = registrant.register(web("v2-1", 9001)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-1"]).await;
    etcd.kill(0).await;
    registrant.register(web("v2-2", 9002)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-1", "node-a/v2-2"]).await;
    registrant.deregister(&a).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-2"]).await;
    // A new node connects with the dead member first in its list.
    let late = etcd.registry("node-c", LONG_TTL).await;
    late.register(web("v2-3", 9003)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-2", "node-c/v2-3"]).await;
    assert_eq!(*discovery.reachability.borrow(), Reachability::Reachable);
}

#[tokio::test]
async fn a_wrong_endpoint_is_a_clear_error_within_the_bound() {
    // Nothing listens on a port released a moment ago.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    // Something that accepts connections but is not etcd.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let options = test_options(Duration::from_secs(10));
    let config = |endpoint: String| config::Cluster {
        endpoints: vec![endpoint],
        prefix: "/test".into(),
        node: Some("node-a".into()),
        advertise: "127.0.0.1".into(),
        lease_ttl: Duration::from_secs(10),
        credentials: None,
        tls: None,
    };

    // A refused connection is the answer: said at once, without waiting
    // for the connect timeout (an hour here).
    let at_once = Options {
        connect_timeout: never_waited(),
        ..options
    };
    let closed_config = config(format!("http://{closed}"));
    let refused = Etcd::connect(&closed_config, at_once);
    let error = match tokio::time::timeout(CHANGE_WITHIN, refused).await {
        Ok(result) => result.err().unwrap(),
        Err(_) => panic!("a refused connection waited for the connect timeout"),
    };
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "could not reach etcd at http://{closed} within 1h: {closed}: Connection refused (os error 111)"
        )
    );

    // Something that never answers: the connect timeout ends the wait, and
    // the error says what the endpoint does.
    let error = Etcd::connect(&config(format!("http://{silent_addr}")), options)
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "could not reach etcd at http://{silent_addr} within 3s: {silent_addr}: accepts TCP connections but gave no etcd answer"
        )
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error_and_right_ones_from_a_file_work() {
    let etcd = EtcdCluster::start().await;
    let mut raw = etcd.client().await;
    raw.user_add("root", "root-secret", None).await.unwrap();
    let _ = raw.role_add("root").await;
    raw.user_grant_role("root", "root").await.unwrap();
    raw.user_add("baton", "right-secret", None).await.unwrap();
    raw.role_add("baton").await.unwrap();
    let everything = etcd_client::Permission::read_write("/test/").with_prefix();
    raw.role_grant_permission("baton", everything)
        .await
        .unwrap();
    raw.user_grant_role("baton", "baton").await.unwrap();
    raw.auth_enable().await.unwrap();

    let dir = testkit::TempDir::new("password");
    let file = dir.path().join("password");
    let mut config = etcd.config("node-a", LONG_TTL);
    let options = test_options(LONG_TTL);

    std::fs::write(&file, "wrong-secret\n").unwrap();
    config.credentials = Some(config::Credentials {
        username: "baton".into(),
        password: config::Password::File(file.clone()),
    });
    // etcd's refusal is the answer, not a timeout (an hour here).
    let at_once = Options {
        connect_timeout: never_waited(),
        ..options
    };
    let refused = Etcd::connect(&config, at_once);
    let error = match tokio::time::timeout(CHANGE_WITHIN, refused).await {
        Ok(result) => result.err().unwrap(),
        Err(_) => panic!("a wrong password waited for the connect timeout"),
    };
    assert!(matches!(error, ConnectError::Auth { .. }), "{error:?}");
    let message = error.to_string();
    let expected = format!(
        "could not authenticate to etcd at {} as user \"baton\": ",
        etcd.endpoint(0)
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");

    std::fs::write(&file, "right-secret\n").unwrap();
    let registry = Etcd::connect(&config, options).await.unwrap();
    let mut discovery = registry.discover(&name("web"));
    registry.register(web("v2-1", 9001)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-1"]).await;

    config.credentials = Some(config::Credentials {
        username: "baton".into(),
        password: config::Password::Env("BATON_TEST_UNSET_VARIABLE".into()),
    });
    let error = Etcd::connect(&config, options).await.err().unwrap();
    assert_eq!(
        error.to_string(),
        "could not read the etcd password: the environment variable BATON_TEST_UNSET_VARIABLE is not set"
    );
}

#[tokio::test]
async fn tls_to_etcd_with_a_client_certificate_registers_and_discovers() {
    let dir = testkit::TempDir::new("etcd-tls");
    let ca = testkit::pki::Ca::new("etcd test CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let (cert, key) = ca.leaf(&["127.0.0.1"], 1).write(dir.path(), "etcd");
    let etcd = EtcdCluster::start_tls(EtcdTls {
        cert,
        key,
        client_ca: Some(ca_file.clone()),
    })
    .await;
    let (cert, key) = ca.leaf(&["node-a"], 2).write(dir.path(), "node-a");
    let mut config = etcd.config("node-a", LONG_TTL);
    assert!(config.endpoints[0].starts_with("https://"), "{config:?}");
    let client = Some(config::ClientCert { cert, key });
    config.tls = Some(config::ClusterTls {
        ca: ca_file.clone(),
        client: client.clone(),
    });
    let options = test_options(LONG_TTL);
    let registry = Etcd::connect(&config, options).await.unwrap();
    let mut discovery = registry.discover(&name("web"));
    registry.register(web("v2-1", 9001)).await.unwrap();
    members_become(&mut discovery, &["node-a/v2-1"]).await;

    // Refused at start, each with its reason.
    let refused = |tls: config::ClusterTls| {
        let mut config = config.clone();
        config.tls = Some(tls);
        async move { Etcd::connect(&config, options).await.err().unwrap() }
    };
    let other = testkit::pki::Ca::new("another CA");
    let other_file = other.write(&dir.path().join("other.pem"));
    let error = refused(config::ClusterTls {
        ca: other_file,
        client: client.clone(),
    })
    .await
    .to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
    let error = refused(config::ClusterTls {
        ca: ca_file.clone(),
        client: None,
    })
    .await
    .to_string();
    // rustls's alert does not come through tonic: the connection closed.
    let expected = format!("could not talk to etcd at {} over TLS: ", etcd.endpoint(0));
    assert!(error.starts_with(&expected), "{error}");
    let missing = dir.path().join("missing.pem");
    let error = refused(config::ClusterTls {
        ca: missing.clone(),
        client,
    })
    .await
    .to_string();
    assert!(
        error.starts_with(&format!(
            "could not read the etcd CA from {}",
            missing.display()
        )),
        "{error}"
    );
}
