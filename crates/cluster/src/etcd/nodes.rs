//! The nodes of the cluster and what their front doors route by: each node
//! keeps a record `{prefix}/nodes/{node}` under its lease, with the registry
//! revision of every discovered service that its front door has applied
//! (swapped into its pools). A node that stops an instance deletes its key,
//! then waits until every live node that follows the service has applied
//! the deletion's revision — an event, not a guess of how long propagation
//! takes — before the instance is signalled. A dead node's record goes with
//! its lease, so it is waited for at most the lease's TTL.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Etcd;
use super::request::retrying;
use crate::error::{Action, RegisterError, RequestError};
use crate::name::Name;

/// The record a node keeps (its JSON value).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    node: String,
    /// Service → the registry revision of its members that the node's front
    /// door routes by.
    applied: BTreeMap<String, i64>,
}

/// Nodes that had not applied a change when the wait ended.
#[derive(Debug, thiserror::Error)]
#[error("{} had not applied revision {revision} of {service} within {}{}", nodes.join(", "), humantime::format_duration(*within), last.as_ref().map(|e| format!(" (registry: {e})")).unwrap_or_default())]
pub struct Behind {
    /// The service.
    pub service: String,
    /// The revision waited for.
    pub revision: i64,
    /// How long it was waited for.
    pub within: Duration,
    /// The nodes (by name) still behind, or empty when the registry could
    /// not be read.
    pub nodes: Vec<String>,
    /// Why the registry could not be read, if it could not.
    pub last: Option<RequestError>,
}

pub(crate) fn nodes_prefix(prefix: &str) -> String {
    format!("{prefix}/nodes/")
}

impl Etcd {
    /// Writes this node's record under its lease now, so that the node is
    /// seen alive (`baton status`) before its front door applies anything.
    pub async fn announce(&self) -> Result<(), RegisterError> {
        let applied = self.inner.applied.lock().await;
        self.write_record(&applied).await
    }

    /// Records, under this node's lease, that its front door routes by the
    /// members of `service` as of registry revision `revision`.
    pub async fn applied(&self, service: &Name, revision: i64) -> Result<(), RegisterError> {
        let inner = &self.inner;
        let mut applied = inner.applied.lock().await;
        let known = applied.entry(service.to_string()).or_default();
        if *known >= revision {
            return Ok(());
        }
        *known = revision;
        self.write_record(&applied).await
    }

    /// Writes the record with `applied` (under the lock of `applied`).
    async fn write_record(&self, applied: &BTreeMap<String, i64>) -> Result<(), RegisterError> {
        let inner = &self.inner;
        let record = Record {
            node: inner.node.to_string(),
            applied: applied.clone(),
        };
        let key = format!("{}{}", nodes_prefix(&inner.prefix), inner.node);
        let value = serde_json::to_string(&record).expect("a record serialises");
        inner
            .session
            .put(key.clone(), value)
            .await
            .map_err(|source| RegisterError {
                action: Action::Register,
                key,
                source,
            })
    }

    /// Waits until every live node whose front door follows `service` has
    /// applied `revision` (or a later one), `within` at most.
    pub async fn wait_applied(
        &self,
        service: &Name,
        revision: i64,
        within: Duration,
    ) -> Result<(), Behind> {
        let end = Instant::now() + within;
        let behind = |nodes: Vec<String>, last| Behind {
            service: service.to_string(),
            revision,
            within,
            nodes,
            last,
        };
        let mut last = None;
        let mut waiting = Vec::new();
        while Instant::now() < end {
            let caught_up = self.catch_up(service, revision, &mut waiting);
            match tokio::time::timeout_at(end, caught_up).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => {
                    last = error;
                    // The registry failed; what failed gives no event.
                    let pause = Instant::now() + Duration::from_millis(100);
                    tokio::time::sleep_until(pause.min(end)).await;
                }
                Err(_) => break,
            }
        }
        Err(behind(waiting, last))
    }

    /// Reads the records, then follows them until every node has applied
    /// `revision`, keeping in `behind` the nodes that have not; ends early
    /// if the registry fails (with why) or the watch ends (`None`).
    async fn catch_up(
        &self,
        service: &Name,
        revision: i64,
        behind: &mut Vec<String>,
    ) -> Result<(), Option<RequestError>> {
        let inner = &self.inner;
        let prefix = nodes_prefix(&inner.prefix);
        let client = &inner.client;
        let read = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let key = prefix.clone();
            async move { client.get(key, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        let service = service.as_str();
        // Node key → its applied revision of `service` (None: not followed).
        let mut nodes: BTreeMap<Vec<u8>, Option<i64>> = read
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), applied_of(kv.value(), service)))
            .collect();
        let start = read.header().map_or(0, |h| h.revision()) + 1;
        *behind = behind_of(&nodes, revision);
        if behind.is_empty() {
            return Ok(());
        }
        {
            let options = WatchOptions::new().with_prefix().with_start_revision(start);
            let opened = {
                let mut client = client.clone();
                client.watch(prefix.clone(), Some(options)).await
            };
            let mut stream = opened.map_err(RequestError::Etcd)?;
            loop {
                let response = match stream.message().await {
                    Ok(Some(response)) if !response.canceled() => response,
                    Ok(_) => break,
                    Err(e) => return Err(Some(RequestError::Etcd(e))),
                };
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => {
                            nodes.insert(kv.key().to_vec(), applied_of(kv.value(), service));
                        }
                        EventType::Delete => {
                            nodes.remove(kv.key());
                        }
                    }
                }
                *behind = behind_of(&nodes, revision);
                if behind.is_empty() {
                    return Ok(());
                }
            }
        }
        // A canceled or ended watch (a compaction): read again.
        Err(None)
    }
}

/// The revision of `service` a record says its node applied; `None` when
/// the node does not follow the service (or the record is not valid, which
/// a node's own records never are).
fn applied_of(value: &[u8], service: &str) -> Option<i64> {
    let record: Record = serde_json::from_slice(value).ok()?;
    record.applied.get(service).copied()
}

/// The nodes (their names) following the service that are behind `revision`.
fn behind_of(nodes: &BTreeMap<Vec<u8>, Option<i64>>, revision: i64) -> Vec<String> {
    nodes
        .iter()
        .filter(|(_, applied)| applied.is_some_and(|a| a < revision))
        .map(|(key, _)| {
            let key = String::from_utf8_lossy(key);
            key.rsplit('/').next().unwrap_or_default().to_owned()
        })
        .collect()
}
