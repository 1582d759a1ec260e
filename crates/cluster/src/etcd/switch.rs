//! The switch of a blue-green deploy across the cluster: the service's
//! active version (`{prefix}/services/{service}/active`, no lease: it
//! outlives every node), written once every node's new set is ready and
//! removed when a deploy of another strategy starts; and the deploy lock
//! followed by the nodes that wait for the switch, so that a deploying node
//! that dies does not keep them waiting past its lease.

use etcd_client::GetOptions;

use super::Etcd;
use super::follow::{Following, follow};
use super::request::retrying;
use crate::active::{Active, active_key};
use crate::error::RequestError;
use crate::etcd::Holder;
use crate::name::Name;

impl Etcd {
    /// Writes the active version of `service`: every front door moves to
    /// its instances in one change. Returns its revision.
    pub async fn set_active(&self, service: &Name, active: &Active) -> Result<i64, RequestError> {
        let key = active_key(&self.inner.prefix, service);
        let revision = self.put_durable(key, active.to_json()).await?;
        tracing::info!(%service, version = %active.version, revision, "active version set");
        Ok(revision)
    }

    /// Removes the active version of `service` (front doors route to every
    /// `ready` instance again); returns the revision after it.
    pub async fn clear_active(&self, service: &Name) -> Result<i64, RequestError> {
        let inner = &self.inner;
        let key = active_key(&inner.prefix, service);
        let client = &inner.client;
        let response = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let key = key.clone();
            async move { client.delete(key, None).await }
        })
        .await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// The active version of `service` now, if any (an invalid value is
    /// none).
    pub async fn active(&self, service: &Name) -> Result<Option<Active>, RequestError> {
        let inner = &self.inner;
        let key = active_key(&inner.prefix, service);
        let client = &inner.client;
        let response = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let key = key.clone();
            async move { client.get(key, None::<GetOptions>).await }
        })
        .await?;
        Ok(response
            .kvs()
            .first()
            .and_then(|kv| Active::parse(kv.value()).ok()))
    }

    /// Follows the active version of `service`.
    pub fn follow_active(&self, service: &Name) -> Following<Option<Active>> {
        let inner = &self.inner;
        let key = active_key(&inner.prefix, service);
        let timeout = inner.options.request_timeout;
        let followed = key.clone();
        follow(inner.client.clone(), key, false, timeout, move |keys| {
            keys.get(&followed)
                .and_then(|(value, _)| Active::parse(value).ok())
        })
    }

    /// Follows the holder of the lock `{prefix}/locks/{kind}/{name}` (none
    /// while it is free).
    pub fn follow_lock(&self, kind: &str, name: &Name) -> Following<Option<Holder>> {
        let inner = &self.inner;
        let key = format!("{}/locks/{kind}/{name}", inner.prefix);
        let timeout = inner.options.request_timeout;
        let followed = key.clone();
        follow(inner.client.clone(), key, false, timeout, move |keys| {
            keys.get(&followed)
                .and_then(|(value, _)| serde_json::from_slice(value).ok())
        })
    }
}
