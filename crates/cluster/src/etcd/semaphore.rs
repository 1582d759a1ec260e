//! A cluster-wide counting semaphore, which etcd does not have, built from
//! its transactions and this node's lease: `slots` keys
//! `{prefix}/{name}/{i}` (`i` from 0), each claimed in one transaction only
//! if it does not exist (its create revision is 0), under the lease. At most
//! `slots` holders at once, whatever the number of nodes; a holder that dies
//! loses its lease, and its slot with it, within the TTL. A slot is released
//! by deleting its key only if it is still the one this node created (its
//! create revision), never someone else's. Waiting for a free slot follows
//! the slots' deletions with a watch: an event, never a poll.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::time::Instant;

use super::Etcd;
use super::lock::Holder;
use super::request::retrying;
use crate::error::RequestError;

/// Why no slot was taken.
#[derive(Debug, thiserror::Error)]
pub enum SemaphoreError {
    /// Every slot stayed held for the whole wait.
    #[error("all {slots} slots of {name} stayed held for {} (by {})", humantime::format_duration(*.waited), holders.join(", "))]
    Full {
        /// The semaphore.
        name: String,
        /// Its number of slots.
        slots: usize,
        /// How long it was waited for.
        waited: Duration,
        /// The holders' node names, as their slots say.
        holders: Vec<String>,
    },
    /// The registry could not be asked.
    #[error("{0}")]
    Request(#[from] RequestError),
}

/// A slot this node holds; released by [`Slot::release`] or, if dropped
/// without it, in the background (and in any case with the lease).
pub struct Slot {
    etcd: Etcd,
    key: String,
    index: usize,
    /// The create revision of the key: the slot is ours while it matches.
    revision: i64,
    released: bool,
}

impl Slot {
    /// Which of the semaphore's slots it is (0 to `slots - 1`): holders can
    /// divide a cluster-wide bound among themselves by it.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Frees the slot if it is still the one taken.
    pub async fn release(mut self) -> Result<(), RequestError> {
        self.released = true;
        super::lock::release(&self.etcd, &self.key, self.revision).await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (etcd, key, revision) = (self.etcd.clone(), self.key.clone(), self.revision);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = super::lock::release(&etcd, &key, revision).await {
                    tracing::warn!(%key, error = %e, "could not free a slot; it goes with the lease");
                }
            });
        }
    }
}

impl Etcd {
    /// Takes one of the `slots` slots of the semaphore `{prefix}/{name}/`
    /// under this node's lease, the lowest free one, waiting until one is
    /// free, `within` at most. `slots` is at least 1.
    ///
    /// Dropping the future while it claims a slot can leave the slot taken
    /// (etcd may have done the transaction) until the lease ends: to stop
    /// waiting, use [`Etcd::acquire_or`].
    pub async fn acquire(
        &self,
        name: &str,
        slots: usize,
        within: Duration,
    ) -> Result<Slot, SemaphoreError> {
        let never = std::future::pending::<()>();
        let slot = self.acquire_or(name, slots, within, never).await?;
        Ok(slot.expect("a wait that is never stopped ends with a slot or an error"))
    }

    /// [`Etcd::acquire`], giving up (`None`) once `stop` resolves while it
    /// waits for a free slot; a claim already sent is always completed, so
    /// no slot is ever left taken by a wait given up.
    pub async fn acquire_or(
        &self,
        name: &str,
        slots: usize,
        within: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Slot>, SemaphoreError> {
        tokio::pin!(stop);
        let slots = slots.max(1);
        let end = Instant::now() + within;
        let inner = &self.inner;
        let prefix = format!("{}/{name}/", inner.prefix);
        let holder = Holder::now(&inner.node);
        let value = serde_json::to_string(&holder).expect("a holder serialises");
        let mut holders = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let full = |holders: Vec<String>| SemaphoreError::Full {
                name: name.to_owned(),
                slots,
                waited: within,
                holders,
            };
            if left.is_zero() {
                return Err(full(holders));
            }
            let (taken, revision) = self.slots_taken(&prefix, slots).await?;
            holders = taken.iter().flatten().cloned().collect();
            if let Some(index) = taken.iter().position(Option::is_none) {
                let key = format!("{prefix}{index}");
                if let Some(created) = self.claim(&key, &value).await? {
                    tracing::debug!(%key, "semaphore slot taken");
                    return Ok(Some(Slot {
                        etcd: self.clone(),
                        key,
                        index,
                        revision: created,
                        released: false,
                    }));
                }
                // Another node took it in between: read again.
                continue;
            }
            // Every slot held: wait for a deletion after the read (nothing
            // is claimed meanwhile, so giving up here leaves nothing taken).
            let freed = tokio::time::timeout(left, self.slot_freed(&prefix, revision));
            tokio::select! {
                freed = freed => match freed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(full(holders)),
                },
                () = &mut stop => return Ok(None),
            }
        }
    }

    /// Which of the first `slots` slots are held (by which node), and the
    /// revision of the read.
    async fn slots_taken(
        &self,
        prefix: &str,
        slots: usize,
    ) -> Result<(Vec<Option<String>>, i64), RequestError> {
        let inner = &self.inner;
        let client = &inner.client;
        let read = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let key = prefix.to_owned();
            async move { client.get(key, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        let mut taken = vec![None; slots];
        for kv in read.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let index = key
                .strip_prefix(prefix)
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(slot) = index.and_then(|i| taken.get_mut(i)) {
                let holder: Option<Holder> = serde_json::from_slice(kv.value()).ok();
                *slot = Some(holder.map_or_else(|| "(unknown)".to_owned(), |h| h.node));
            }
        }
        Ok((taken, read.header().map_or(0, |h| h.revision())))
    }

    /// Creates `key` under the lease if it does not exist: its create
    /// revision, or `None` if it exists.
    async fn claim(&self, key: &str, value: &str) -> Result<Option<i64>, RequestError> {
        let inner = &self.inner;
        let lease = inner.session.lease().await?;
        let client = &inner.client;
        let response = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            async move { client.txn(txn).await }
        })
        .await?;
        Ok(response
            .succeeded()
            .then(|| response.header().map_or(0, |h| h.revision())))
    }

    /// Resolves at the first deletion under `prefix` after `revision` (or
    /// when the watch ends: the caller reads again either way).
    async fn slot_freed(&self, prefix: &str, revision: i64) -> Result<(), RequestError> {
        let mut client = self.inner.client.clone();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = client
            .watch(prefix, Some(options))
            .await
            .map_err(RequestError::Etcd)?;
        loop {
            match stream.message().await {
                Ok(Some(response)) if !response.canceled() => {
                    let freed = response
                        .events()
                        .iter()
                        .any(|e| e.event_type() == EventType::Delete);
                    if freed {
                        return Ok(());
                    }
                }
                // Canceled (compacted) or ended: read again.
                Ok(_) => return Ok(()),
                Err(e) => return Err(RequestError::Etcd(e)),
            }
        }
    }
}
