//! The deploy state against a real etcd: the semaphore (never more holders
//! than slots, a freed slot wakes a waiter, a dead holder's slot goes with
//! its lease, a full semaphore says who holds it), the desired version and
//! the nodes' reports, followed by watches, and the whole cluster in one
//! read (`Etcd::view`).

mod support;

use std::time::Duration;

use cluster::{Converge, Desired, Etcd, NodeReport, Registrant, Registry, SemaphoreError, State};
use support::EtcdCluster;

/// Bounds every wait for the registry to reflect a change.
const CHANGE_WITHIN: Duration = Duration::from_secs(10);
const LONG_TTL: Duration = Duration::from_secs(60);

fn web() -> cluster::Name {
    "web".parse().unwrap()
}

async fn acquire(node: &Etcd, slots: usize) -> cluster::Slot {
    let name = node.deploy_slots(&web());
    match node.acquire(&name, slots, CHANGE_WITHIN).await {
        Ok(slot) => slot,
        Err(e) => panic!("no slot: {e}"),
    }
}

#[tokio::test]
async fn the_semaphore_never_has_more_holders_than_slots_and_a_freed_slot_wakes_a_waiter() {
    let etcd = EtcdCluster::start().await;
    let a = etcd.registry("node-a", LONG_TTL).await;
    let b = etcd.registry("node-b", LONG_TTL).await;
    let c = etcd.registry("node-c", Duration::from_secs(2)).await;
    let name = a.deploy_slots(&web());

    let first = acquire(&a, 2).await;
    let second = acquire(&b, 2).await;
    assert_eq!((first.index(), second.index()), (0, 1));

    // Full: a bounded wait says who holds the slots.
    let full = c.acquire(&name, 2, Duration::from_millis(300)).await;
    match full {
        Err(SemaphoreError::Full { holders, slots, .. }) => {
            assert_eq!(slots, 2);
            assert_eq!(holders, ["node-a", "node-b"]);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a third holder of two slots"),
    }

    // A waiter gets the slot that is released.
    let waiter = {
        let (c, name) = (c.clone(), name.clone());
        tokio::spawn(async move { c.acquire(&name, 2, CHANGE_WITHIN).await })
    };
    first.release().await.unwrap();
    let third = tokio::time::timeout(CHANGE_WITHIN, waiter)
        .await
        .expect("the waiter got no slot")
        .unwrap()
        .unwrap();
    assert_eq!(third.index(), 0);

    // Dropped without a release: freed in the background.
    drop(third);
    let waiter = {
        let (a, name) = (a.clone(), name.clone());
        tokio::spawn(async move { a.acquire(&name, 2, CHANGE_WITHIN).await })
    };
    let again = tokio::time::timeout(CHANGE_WITHIN, waiter)
        .await
        .expect("the waiter got no slot")
        .unwrap()
        .unwrap();
    assert_eq!(again.index(), 0);
    drop(second);
}

#[tokio::test]
async fn a_wait_given_up_leaves_no_slot_taken() {
    let etcd = EtcdCluster::start().await;
    let a = etcd.registry("node-a", LONG_TTL).await;
    let b = etcd.registry("node-b", LONG_TTL).await;
    let name = a.deploy_slots(&web());
    let held = acquire(&a, 1).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let waiter = {
        let (b, name) = (b.clone(), name.clone());
        tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            b.acquire_or(&name, 1, CHANGE_WITHIN, stopped).await
        })
    };
    stop.send(()).unwrap();
    let given_up = tokio::time::timeout(CHANGE_WITHIN, waiter)
        .await
        .expect("the wait was not given up")
        .unwrap();
    assert!(matches!(given_up, Ok(None)));
    // The slot A frees is free for anyone: the wait given up took nothing.
    held.release().await.unwrap();
    let c = etcd.registry("node-c", LONG_TTL).await;
    let slot = c.acquire(&name, 1, Duration::from_millis(500)).await;
    assert_eq!(slot.map(|s| s.index()).ok(), Some(0));
}

#[tokio::test]
async fn a_holders_slot_goes_with_its_lease() {
    let etcd = EtcdCluster::start().await;
    let a = etcd.registry("node-a", LONG_TTL).await;
    let b = etcd.registry("node-b", LONG_TTL).await;
    let _held = acquire(&b, 1).await;
    let waiter = {
        let (a, name) = (a.clone(), a.deploy_slots(&web()));
        tokio::spawn(async move { a.acquire(&name, 1, CHANGE_WITHIN).await })
    };
    // Node B's lease ends (revoked here; expired for a node that died):
    // etcd deletes its slot, which wakes the waiter.
    b.close().await.unwrap();
    let slot = tokio::time::timeout(CHANGE_WITHIN, waiter)
        .await
        .expect("the waiter got no slot")
        .unwrap()
        .unwrap();
    assert_eq!(slot.index(), 0);
}

#[tokio::test]
async fn the_desired_version_and_the_reports_are_followed() {
    let etcd = EtcdCluster::start().await;
    let a = etcd.registry("node-a", LONG_TTL).await;
    let b = etcd.registry("node-b", LONG_TTL).await;

    let following = b.follow_desired(&web());
    let mut desired = following.receiver();
    let first = tokio::time::timeout(CHANGE_WITHIN, desired.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(first, Some(None));
    assert_eq!(a.desired(&web()).await.unwrap(), None);

    let wanted = Desired {
        version: "v2".parse().unwrap(),
        previous: Some("v1".parse().unwrap()),
        rollback_of: None,
        strategy: config::Strategy::Rolling,
        by: "node-a".into(),
        at: cluster::now_rfc3339(),
    };
    let revision = a.set_desired(&web(), &wanted).await.unwrap();
    let seen = tokio::time::timeout(
        CHANGE_WITHIN,
        desired.wait_for(|d| matches!(d, Some(Some(_)))),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .flatten()
    .unwrap();
    assert_eq!((seen.desired, seen.revision), (wanted, revision));

    let reports = a.follow_reports(&web());
    let mut reports = reports.receiver();
    let report = NodeReport {
        node: "node-b".into(),
        version: "v2".into(),
        state: Converge::Converged,
        desired: revision,
        instances: 2,
        reason: None,
        at: cluster::now_rfc3339(),
    };
    b.report(&web(), &report).await.unwrap();
    let seen = tokio::time::timeout(
        CHANGE_WITHIN,
        reports.wait_for(|r| r.as_ref().is_some_and(|r| r.contains_key("node-b"))),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .unwrap();
    assert_eq!(seen["node-b"], report);
    // A node that leaves takes its report with it.
    b.close().await.unwrap();
    tokio::time::timeout(
        CHANGE_WITHIN,
        reports.wait_for(|r| r.as_ref().is_some_and(|r| r.is_empty())),
    )
    .await
    .expect("node B's report stayed")
    .unwrap();
}

#[tokio::test]
async fn the_view_shows_the_nodes_their_instances_and_each_services_deploy_state() {
    let etcd = EtcdCluster::start().await;
    let a = etcd.registry("node-a", LONG_TTL).await;
    let b = etcd.registry("node-b", LONG_TTL).await;
    a.announce().await.unwrap();
    b.register(Registrant {
        service: web(),
        id: "v2-9001".parse().unwrap(),
        version: "v2".parse().unwrap(),
        address: "10.0.0.2:9001".parse().unwrap(),
        state: State::Ready,
        weight: 1,
    })
    .await
    .unwrap();
    let wanted = Desired {
        version: "v2".parse().unwrap(),
        previous: Some("v1".parse().unwrap()),
        rollback_of: None,
        strategy: config::Strategy::Rolling,
        by: "node-a".into(),
        at: cluster::now_rfc3339(),
    };
    let revision = a.set_desired(&web(), &wanted).await.unwrap();
    let report = NodeReport {
        node: "node-b".into(),
        version: "v2".into(),
        state: Converge::Converged,
        desired: revision,
        instances: 1,
        reason: None,
        at: cluster::now_rfc3339(),
    };
    b.report(&web(), &report).await.unwrap();
    let lock = a.lock("deploy", &web()).await.unwrap();
    let slot = acquire(&b, 2).await;

    let view = b.view().await.unwrap();
    assert_eq!(
        (view.prefix.as_str(), view.read_by.as_str()),
        ("/test", "node-b")
    );
    assert!(!view.truncated);
    let nodes: Vec<(&str, bool)> = view
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.record))
        .collect();
    // Node B keeps no record here (it discovers nothing and never
    // announced itself), but its keys are alive under its lease.
    assert_eq!(nodes, [("node-a", true), ("node-b", false)]);
    for node in &view.nodes {
        let left = node.lease_ttl_left_s.unwrap_or(-1);
        assert!((1..=60).contains(&left), "{node:?}");
    }
    let instances = &view.nodes[1].instances;
    assert_eq!(instances.len(), 1, "{view:?}");
    assert_eq!(
        (
            instances[0].id.as_str(),
            instances[0].version.as_str(),
            instances[0].address.as_str()
        ),
        ("v2-9001", "v2", "10.0.0.2:9001")
    );
    let [service] = view.services.as_slice() else {
        panic!("{view:?}")
    };
    let desired = service.desired.as_ref().unwrap();
    assert_eq!((&desired.desired, desired.revision), (&wanted, revision));
    assert_eq!(service.nodes, [report]);
    assert_eq!(
        service.lock.as_ref().map(|h| h.node.as_str()),
        Some("node-a")
    );
    let slots: Vec<(u32, &str)> = service
        .slots
        .iter()
        .map(|s| (s.index, s.holder.node.as_str()))
        .collect();
    assert_eq!(slots, [(0, "node-b")]);
    assert_eq!(service.ready, [("v2".to_owned(), 1)].into());

    // Released, and node B gone: the view says so.
    lock.release().await.unwrap();
    slot.release().await.unwrap();
    b.close().await.unwrap();
    let view = a.view().await.unwrap();
    let nodes: Vec<&str> = view.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(nodes, ["node-a"]);
    let service = &view.services[0];
    assert!(service.lock.is_none() && service.slots.is_empty() && service.nodes.is_empty());
    assert!(
        service.desired.is_some(),
        "the desired version outlives the nodes"
    );
}
