//! The whole cluster in one read: every key under the prefix at one
//! revision (bounded), made into a [`View`], then the time left on each
//! node's lease. Reads only; never writes.

use std::time::Duration;

use etcd_client::GetOptions;
use tokio::time::Instant;

use super::Etcd;
use super::request::retrying;
use crate::error::RequestError;
use crate::registry::Registry;
use crate::view::{Entry, View};

/// The most keys one view reads; a larger cluster's view says it is
/// truncated. 100 nodes of 10 services of 10 instances fit.
const MAX_KEYS: i64 = 20_000;

/// The most leases whose time left is asked for (one request each).
const MAX_LEASES: usize = 64;

/// The longest all those requests take together.
const LEASES_WITHIN: Duration = Duration::from_secs(1);

impl Etcd {
    /// The cluster now: nodes, their instances, each service's desired
    /// version, nodes' reports, lock and slots.
    pub async fn view(&self) -> Result<View, RequestError> {
        let inner = &self.inner;
        let root = format!("{}/", inner.prefix);
        let client = &inner.client;
        let read = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let options = GetOptions::new().with_prefix().with_limit(MAX_KEYS);
            let key = root.clone();
            async move { client.get(key, Some(options)).await }
        })
        .await?;
        let revision = read.header().map_or(0, |h| h.revision());
        let entries = read.kvs().iter().map(|kv| Entry {
            key: kv.key(),
            value: kv.value(),
            lease: kv.lease(),
            revision: kv.mod_revision(),
        });
        let mut view = View::build(&inner.prefix, self.node().as_str(), revision, entries);
        view.truncated = read.more();
        // The leases' time left, all asked within one bound: the view is
        // shown without what etcd did not say by then.
        let end = Instant::now() + LEASES_WITHIN.min(inner.options.request_timeout);
        for node in view.nodes.iter_mut().take(MAX_LEASES) {
            let Some(lease) = node.lease.as_deref() else {
                continue;
            };
            let Ok(id) = i64::from_str_radix(lease, 16) else {
                continue;
            };
            let mut client = client.clone();
            let asked = tokio::time::timeout_at(end, client.lease_time_to_live(id, None)).await;
            match asked {
                Ok(Ok(answer)) if answer.ttl() >= 0 => node.lease_ttl_left_s = Some(answer.ttl()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(view)
    }
}
