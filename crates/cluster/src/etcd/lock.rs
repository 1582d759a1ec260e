//! Cluster-wide locks under this node's lease: `{prefix}/locks/{kind}/{name}`
//! is created in one transaction only if it does not exist (its create
//! revision is 0), so that exactly one node holds it; its value names the
//! holder. The lease bounds a crashed holder: its lock goes when its lease
//! expires. A lock is released by deleting the key only if it is still the
//! one this node created (its create revision), never someone else's.

use std::time::SystemTime;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::Etcd;
use super::request::retrying;
use crate::error::RequestError;
use crate::name::Name;

/// The JSON value of a lock (and of a semaphore's slot): who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's node name.
    pub node: String,
    /// When it took it, RFC 3339.
    pub acquired_at: String,
}

impl Holder {
    /// `node`, from now on.
    pub(crate) fn now(node: &Name) -> Holder {
        Holder {
            node: node.to_string(),
            acquired_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another node (or this one) holds it.
    #[error("held by node {node} since {since}")]
    Held {
        /// The holder's node name, as its value says.
        node: String,
        /// When it took the lock, as its value says.
        since: String,
    },
    /// The registry could not be asked.
    #[error("{0}")]
    Request(#[from] RequestError),
}

/// A lock this node holds; released by [`Lock::release`] or, if dropped
/// without it, in the background.
pub struct Lock {
    etcd: Etcd,
    key: String,
    /// The create revision of the key: the lock is ours while it matches.
    revision: i64,
    released: bool,
}

impl Etcd {
    /// Takes the lock `{prefix}/locks/{kind}/{name}` under this node's
    /// lease, or says who holds it.
    pub async fn lock(&self, kind: &str, name: &Name) -> Result<Lock, LockError> {
        let inner = &self.inner;
        let key = format!("{}/locks/{kind}/{name}", inner.prefix);
        let holder = Holder::now(&inner.node);
        let value = serde_json::to_string(&holder).expect("a holder serialises");
        let lease = inner.session.lease().await?;
        let client = &inner.client;
        let response = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            async move { client.txn(txn).await }
        })
        .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            tracing::debug!(%key, revision, "lock taken");
            return Ok(Lock {
                etcd: self.clone(),
                key,
                revision,
                released: false,
            });
        }
        let held = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let holder: Option<Holder> = held.and_then(|v| serde_json::from_slice(&v).ok());
        Err(match holder {
            Some(h) => LockError::Held {
                node: h.node,
                since: h.acquired_at,
            },
            None => LockError::Held {
                node: "(unknown)".to_owned(),
                since: "(unknown)".to_owned(),
            },
        })
    }
}

impl Lock {
    /// Deletes the lock if it is still the one taken.
    pub async fn release(mut self) -> Result<(), RequestError> {
        self.released = true;
        release(&self.etcd, &self.key, self.revision).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (etcd, key, revision) = (self.etcd.clone(), self.key.clone(), self.revision);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = release(&etcd, &key, revision).await {
                    tracing::warn!(%key, error = %e, "could not release a lock; it goes with the lease");
                }
            });
        }
    }
}

pub(crate) async fn release(etcd: &Etcd, key: &str, revision: i64) -> Result<(), RequestError> {
    let inner = &etcd.inner;
    let client = &inner.client;
    retrying(inner.options.request_timeout, || {
        let mut client = client.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, revision)])
            .and_then([TxnOp::delete(key, None)]);
        async move { client.txn(txn).await }
    })
    .await
    .map(drop)
}
