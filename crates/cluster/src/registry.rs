//! What a registry backend offers, whatever it is built on: register and
//! deregister this node's instances, and discover the instances of a service
//! as a watched member set. The trait has no etcd types, so that a second
//! backend can implement it. No I/O here.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use config::{UpstreamAddr, Version};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::RegisterError;
use crate::instance::{InstanceKey, Members, State};
use crate::name::Name;

/// An instance this node registers; the registry adds the node's name and
/// the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registrant {
    /// The service it belongs to.
    pub service: Name,
    /// Unique among this node's instances of the service.
    pub id: Name,
    /// The version it runs.
    pub version: Version,
    /// Where other nodes reach it.
    pub address: UpstreamAddr,
    /// Whether it takes new requests.
    pub state: State,
    /// Its share of the requests relative to the other members (1 to
    /// [`crate::MAX_WEIGHT`]; a canary's is set by its step).
    pub weight: u32,
}

/// A registry of instances shared by the nodes of a cluster.
pub trait Registry: Send + Sync {
    /// This node's name, as it appears in the keys it writes.
    fn node(&self) -> &Name;

    /// Publishes `instance` (or replaces its previous value, such as a change
    /// of state) under this node's lease until [`Registry::deregister`] or
    /// until the node stops renewing the lease. Returns its key.
    fn register(
        &self,
        instance: Registrant,
    ) -> impl Future<Output = Result<InstanceKey, RegisterError>> + Send;

    /// Removes the instance at once: call it before the instance is told to
    /// stop, so that front doors stop routing to it first. Returns the
    /// registry's revision after the removal (front doors that have applied
    /// it no longer route to the instance).
    fn deregister(
        &self,
        key: &InstanceKey,
    ) -> impl Future<Output = Result<i64, RegisterError>> + Send;

    /// Follows the member set of `service` from now on.
    fn discover(&self, service: &Name) -> Discovery;
}

/// Whether discovery can currently read the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// The first read has not completed yet.
    Connecting,
    /// The last read or watch succeeded.
    Reachable,
    /// Reads have failed since `since`; the member set is the last one read.
    Unreachable {
        /// When the first failure of this outage happened.
        since: SystemTime,
        /// The latest failure, for people (logs, `baton status`).
        reason: String,
    },
}

/// The member set of one service, kept up to date by a task that ends when
/// this is dropped.
///
/// `members` changes once per change of the set (never because the registry
/// became unreachable); `reachability` says whether it is current.
pub struct Discovery {
    /// The current member set; starts empty at revision 0 until the first
    /// read.
    pub members: watch::Receiver<Arc<Members>>,
    /// Whether the registry can be read.
    pub reachability: watch::Receiver<Reachability>,
    task: JoinHandle<()>,
}

impl Discovery {
    pub(crate) fn new(
        members: watch::Receiver<Arc<Members>>,
        reachability: watch::Receiver<Reachability>,
        task: JoinHandle<()>,
    ) -> Discovery {
        Discovery {
            members,
            reachability,
            task,
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}
