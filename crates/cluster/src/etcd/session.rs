//! This node's lease and the keys written under it. One lease per node: a
//! task renews it every third of its TTL; if it was lost (etcd unreachable
//! for longer than the TTL), a new one is granted and every key still
//! registered is written again. A key whose deletion failed is deleted again
//! at each renewal until etcd confirms it: a deregistered instance must not
//! stay registered under a live lease. The state is one mutex, held across
//! each bounded request, so a renewal never races a registration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Error, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::Mutex;
use tonic::Code;

use super::request::retrying;
use crate::error::RequestError;

pub(crate) struct Session {
    client: Client,
    /// Whole seconds, as etcd counts them.
    ttl: i64,
    request_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The current lease; `None` before the first registration and once the
    /// lease is known to be lost.
    lease: Option<i64>,
    /// The open keep-alive stream of `lease`.
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// Every registered key and its value, to write again under a new lease.
    keys: BTreeMap<String, String>,
    /// Deregistered keys whose deletion has not been confirmed.
    undeleted: BTreeSet<String>,
}

/// Why a request on the lease failed.
enum LeaseError {
    /// etcd says the lease does not exist (it expired).
    Lost,
    Request(RequestError),
}

impl From<RequestError> for LeaseError {
    fn from(e: RequestError) -> LeaseError {
        match e {
            RequestError::Etcd(Error::GRpcStatus(ref s)) if s.code() == Code::NotFound => {
                LeaseError::Lost
            }
            other => LeaseError::Request(other),
        }
    }
}

impl Session {
    pub(crate) fn new(client: Client, ttl: Duration, request_timeout: Duration) -> Arc<Session> {
        Arc::new(Session {
            client,
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            request_timeout,
            state: Mutex::new(State::default()),
        })
    }

    /// How often the lease is renewed.
    pub(crate) fn renew_every(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.ttl).unwrap_or(1)) / 3
    }

    /// Writes `key` under the lease (granting one if needed) and remembers it.
    pub(crate) async fn put(&self, key: String, value: String) -> Result<(), RequestError> {
        let mut state = self.state.lock().await;
        state.undeleted.remove(&key);
        let lease = match state.lease {
            Some(lease) => lease,
            None => self.grant(&mut state).await?,
        };
        match self.put_one(&key, &value, lease).await {
            Ok(()) => {}
            Err(LeaseError::Lost) => {
                state.lease = None;
                state.keeper = None;
                let lease = self.grant(&mut state).await?;
                self.put_one(&key, &value, lease)
                    .await
                    .map_err(request_error)?;
            }
            Err(LeaseError::Request(e)) => return Err(e),
        }
        state.keys.insert(key, value);
        Ok(())
    }

    /// The current lease, granted if there is none: for keys that must not
    /// be written again under a new lease (a lock).
    pub(crate) async fn lease(&self) -> Result<i64, RequestError> {
        let mut state = self.state.lock().await;
        match state.lease {
            Some(lease) => Ok(lease),
            None => self.grant(&mut state).await,
        }
    }

    /// Deletes `key` and forgets it; returns the registry's revision after
    /// the deletion. If the deletion fails, the renewals retry it.
    pub(crate) async fn delete(&self, key: &str) -> Result<i64, RequestError> {
        let mut state = self.state.lock().await;
        state.keys.remove(key);
        let result = self.delete_one(key).await;
        if result.is_err() {
            state.undeleted.insert(key.to_owned());
        }
        result
    }

    /// Renews the lease once, re-registers everything under a new lease if
    /// it was lost, and retries unconfirmed deletions.
    pub(crate) async fn renew(&self) -> Result<(), RequestError> {
        let mut state = self.state.lock().await;
        let undeleted: Vec<String> = state.undeleted.iter().cloned().collect();
        for key in undeleted {
            self.delete_one(&key).await?;
            state.undeleted.remove(&key);
        }
        let Some(lease) = state.lease else {
            if !state.keys.is_empty() {
                self.regrant(&mut state).await?;
            }
            return Ok(());
        };
        match self.keep_alive(&mut state, lease).await {
            Ok(()) => Ok(()),
            Err(LeaseError::Lost) => {
                tracing::warn!(
                    lease,
                    "the registry lease expired; registering again under a new one"
                );
                state.lease = None;
                state.keeper = None;
                self.regrant(&mut state).await
            }
            Err(LeaseError::Request(e)) => {
                state.keeper = None;
                Err(e)
            }
        }
    }

    /// Revokes the lease: every key of this node disappears at once.
    pub(crate) async fn revoke(&self) -> Result<(), RequestError> {
        let mut state = self.state.lock().await;
        state.keeper = None;
        state.keys.clear();
        let Some(lease) = state.lease.take() else {
            return Ok(());
        };
        let client = &self.client;
        retrying(self.request_timeout, || {
            let mut client = client.clone();
            async move { client.lease_revoke(lease).await }
        })
        .await
        .map(drop)
    }

    async fn grant(&self, state: &mut State) -> Result<i64, RequestError> {
        let (client, ttl) = (&self.client, self.ttl);
        let response = retrying(self.request_timeout, || {
            let mut client = client.clone();
            async move { client.lease_grant(ttl, None).await }
        })
        .await?;
        state.lease = Some(response.id());
        Ok(response.id())
    }

    /// A new lease, and every registered key written under it.
    async fn regrant(&self, state: &mut State) -> Result<(), RequestError> {
        let lease = self.grant(state).await?;
        let keys: Vec<(String, String)> = state
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in keys {
            self.put_one(&key, &value, lease)
                .await
                .map_err(request_error)?;
        }
        tracing::info!(
            lease,
            keys = state.keys.len(),
            "registered again under a new lease"
        );
        Ok(())
    }

    async fn put_one(&self, key: &str, value: &str, lease: i64) -> Result<(), LeaseError> {
        let client = &self.client;
        retrying(self.request_timeout, || {
            let mut client = client.clone();
            let options = PutOptions::new().with_lease(lease);
            async move { client.put(key, value, Some(options)).await }
        })
        .await
        .map(drop)
        .map_err(LeaseError::from)
    }

    /// Deletes `key`; the registry's revision after the deletion.
    async fn delete_one(&self, key: &str) -> Result<i64, RequestError> {
        let client = &self.client;
        retrying(self.request_timeout, || {
            let mut client = client.clone();
            async move { client.delete(key, None).await }
        })
        .await
        .map(|response| response.header().map_or(0, |h| h.revision()))
    }

    /// One keep-alive on the open stream (opening it if needed).
    async fn keep_alive(&self, state: &mut State, lease: i64) -> Result<(), LeaseError> {
        let deadline = self.request_timeout;
        if let Some((keeper, stream)) = &mut state.keeper {
            let answer = tokio::time::timeout(deadline, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(response))) if response.ttl() > 0 => return Ok(()),
                Ok(Ok(Some(_))) => return Err(LeaseError::Lost),
                // A broken or silent stream: open a new one below.
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => state.keeper = None,
            }
        }
        let client = &self.client;
        let opened = retrying(deadline, || {
            let mut client = client.clone();
            async move { client.lease_keep_alive(lease).await }
        })
        .await;
        match opened {
            // Opening the stream renews the lease once.
            Ok(pair) => {
                state.keeper = Some(pair);
                Ok(())
            }
            // The client's way of saying that etcd answered with TTL 0.
            Err(RequestError::Etcd(Error::LeaseKeepAliveError(_))) => Err(LeaseError::Lost),
            Err(e) => Err(LeaseError::from(e)),
        }
    }
}

fn request_error(e: LeaseError) -> RequestError {
    match e {
        LeaseError::Request(e) => e,
        LeaseError::Lost => RequestError::Etcd(Error::LeaseKeepAliveError(
            "the lease granted a moment ago is already gone".to_owned(),
        )),
    }
}
