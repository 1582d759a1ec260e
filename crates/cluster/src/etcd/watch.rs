//! Discovery on etcd: one task per followed service. It reads the service's
//! keys — its instances and its active version, everything under
//! `{prefix}/services/{service}/` — (a fresh read, at revision R), then
//! watches from R + 1; each watch response that changes the set publishes
//! one new set (etcd never splits one revision's events across responses). A compacted
//! revision or a broken watch leads to a fresh read. While etcd cannot be
//! read, the last set stays published and `Reachability` says since when
//! reads fail: a registry outage never empties a member set.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse};
use tokio::sync::watch;

use super::request::retrying;
use crate::active::{Active, active_key};
use crate::error::RequestError;
use crate::instance::{Instance, InstanceKey, Members, service_prefix};
use crate::name::Name;
use crate::registry::{Discovery, Reachability};

/// The first pause between two failed reads; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Starts following `service`. With `known`, the set read earlier is
/// published at once and the watch resumes after its revision (a fresh
/// read if that revision was compacted meanwhile).
pub(crate) fn discover(
    client: Client,
    prefix: &str,
    service: &Name,
    request_timeout: Duration,
    known: Option<Members>,
) -> Discovery {
    let resume = known.as_ref().map(|m| m.revision);
    let (members, members_rx) = watch::channel(Arc::new(known.unwrap_or_default()));
    let (reachability, reachability_rx) = watch::channel(Reachability::Connecting);
    let instances = service_prefix(prefix, service);
    let follower = Follower {
        client,
        service: service.clone(),
        keys: format!("{prefix}/services/{service}/"),
        active: active_key(prefix, service),
        prefix: instances,
        request_timeout,
        members,
        reachability,
        outage_since: None,
    };
    let task = tokio::spawn(follower.run(resume));
    Discovery::new(members_rx, reachability_rx, task)
}

struct Follower {
    client: Client,
    service: Name,
    /// `{prefix}/services/{service}/`: what is read and watched.
    keys: String,
    /// `{prefix}/services/{service}/active`.
    active: String,
    /// `{prefix}/services/{service}/instances/`.
    prefix: String,
    request_timeout: Duration,
    members: watch::Sender<Arc<Members>>,
    reachability: watch::Sender<Reachability>,
    /// When the current outage began (the first failure since the last
    /// success).
    outage_since: Option<SystemTime>,
}

/// Why a watch ended.
enum End {
    /// The start revision was compacted: only a fresh read can catch up.
    Compacted(i64),
    /// The stream broke, ended or was canceled by etcd.
    Broken(String),
}

impl Follower {
    async fn run(mut self, mut resume: Option<i64>) {
        let mut pause = FIRST_PAUSE;
        loop {
            let revision = match resume.take() {
                Some(revision) => revision,
                None => match self.read().await {
                    Ok(revision) => {
                        pause = FIRST_PAUSE;
                        revision
                    }
                    Err(e) => {
                        self.failed(e.to_string());
                        // Retrying a registry that is down: no event to wait for.
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_PAUSE);
                        continue;
                    }
                },
            };
            match self.follow(revision).await {
                End::Compacted(compacted) => {
                    tracing::info!(service = %self.service, revision, compacted, "watch revision compacted; reading the registry again");
                }
                End::Broken(reason) => {
                    self.outage_since.get_or_insert_with(SystemTime::now);
                    tracing::debug!(service = %self.service, %reason, "registry watch broken; reading the registry again");
                }
            }
        }
    }

    /// A fresh read of every key of the service; publishes the set and
    /// returns its revision.
    async fn read(&mut self) -> Result<i64, RequestError> {
        let (client, prefix) = (&self.client, &self.keys);
        let response = retrying(self.request_timeout, || {
            let mut client = client.clone();
            let key = prefix.clone();
            async move { client.get(key, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut members = Members {
            revision,
            ..Members::default()
        };
        for kv in response.kvs() {
            self.put(&mut members, kv.key(), kv.value());
        }
        self.publish(members);
        self.reached();
        Ok(revision)
    }

    /// Watches from `revision + 1`, applying each response to the set.
    async fn follow(&mut self, revision: i64) -> End {
        let (client, prefix) = (&self.client, &self.keys);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let opened = retrying(self.request_timeout, || {
            let mut client = client.clone();
            let (key, options) = (prefix.clone(), options.clone());
            async move { client.watch(key, Some(options)).await }
        })
        .await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => return End::Broken(e.to_string()),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return End::Broken("etcd ended the watch".to_owned()),
                Err(e) => return End::Broken(e.to_string()),
            };
            if response.compact_revision() > 0 {
                return End::Compacted(response.compact_revision());
            }
            if response.canceled() {
                let reason = response.cancel_reason();
                return End::Broken(format!("etcd canceled the watch: {reason}"));
            }
            self.apply(&response);
            self.reached();
        }
    }

    /// Applies one watch response's events; publishes if the set changed.
    fn apply(&mut self, response: &WatchResponse) {
        let mut next = Members::clone(&self.members.borrow());
        if let Some(header) = response.header() {
            next.revision = next.revision.max(header.revision());
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            next.revision = next.revision.max(kv.mod_revision());
            match event.event_type() {
                EventType::Put => self.put(&mut next, kv.key(), kv.value()),
                EventType::Delete => self.remove(&mut next, kv.key()),
            }
        }
        self.publish(next);
    }

    /// Applies one key's value: an instance, or the active version. An
    /// invalid value replaces a valid one: the instance is no longer
    /// routable, and an invalid active version is no active version.
    fn put(&self, members: &mut Members, key: &[u8], value: &[u8]) {
        if key == self.active.as_bytes() {
            members.active = match Active::parse(value) {
                Ok(active) => Some(active.version),
                Err(e) => {
                    tracing::warn!(service = %self.service, error = %e, "ignoring an invalid active version");
                    None
                }
            };
            return;
        }
        if !key.starts_with(self.prefix.as_bytes()) {
            return;
        }
        match self.parse(key, value) {
            Some((key, instance)) => {
                members.instances.insert(key, instance);
            }
            None => self.remove(members, key),
        }
    }

    fn remove(&self, members: &mut Members, key: &[u8]) {
        if key == self.active.as_bytes() {
            members.active = None;
            return;
        }
        let text = String::from_utf8_lossy(key);
        let Some(rest) = text.strip_prefix(&self.prefix) else {
            return;
        };
        members.instances.retain(|k, _| !is_key(k, rest));
    }

    fn parse(&self, key: &[u8], value: &[u8]) -> Option<(InstanceKey, Instance)> {
        match Instance::parse(&self.prefix, &self.service, key, value) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                tracing::warn!(service = %self.service, error = %e, "ignoring an invalid registry entry");
                None
            }
        }
    }

    /// Publishes `next`, waking receivers only if the instances or the
    /// active version changed.
    fn publish(&self, next: Members) {
        self.members.send_if_modified(|current| {
            let changed = current.instances != next.instances || current.active != next.active;
            *current = Arc::new(next);
            changed
        });
    }

    fn reached(&mut self) {
        self.outage_since = None;
        let service = &self.service;
        self.reachability.send_if_modified(|r| {
            if matches!(r, Reachability::Unreachable { .. }) {
                tracing::info!(%service, "registry reachable again");
            }
            let changed = *r != Reachability::Reachable;
            *r = Reachability::Reachable;
            changed
        });
    }

    fn failed(&mut self, reason: String) {
        let since = *self.outage_since.get_or_insert_with(SystemTime::now);
        self.reachability.send_if_modified(|r| {
            let newly = !matches!(r, Reachability::Unreachable { .. });
            if newly {
                tracing::warn!(service = %self.service, %reason, "registry unreachable; keeping the last known members");
            }
            *r = Reachability::Unreachable { since, reason };
            newly
        });
    }
}

/// Whether `rest` (a key without the service prefix) is `{node}/{id}` of `key`.
fn is_key(key: &InstanceKey, rest: &str) -> bool {
    rest.split_once('/')
        .is_some_and(|(node, id)| node == key.node.as_str() && id == key.id.as_str())
}
