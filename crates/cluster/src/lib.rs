//! The cluster registry of baton: every node registers the ready instances
//! it runs, under a lease it keeps alive, and discovers the instances of
//! every node by watching the registry. The key layout and the value format
//! (`docs/cluster.md`) are public, so that any program can register itself.
//!
//! - `name`: the validated names that become key segments (service, node,
//!   instance id).
//! - `active`: a service's active version (the switch of a blue-green
//!   deploy across the cluster), read by discovery with the instances.
//! - `instance`: one registered instance (the JSON value), its key, and the
//!   member set of a service ([`Members`]).
//! - `registry`: the [`Registry`] trait (so that a second backend can come
//!   later) and what discovery hands out ([`Discovery`]).
//! - `view`: the whole cluster as one read shows it ([`View`]: nodes,
//!   instances, deploy state), for `baton status`.
//! - `etcd`: the etcd backend ([`Etcd`]) on the `etcd-client` crate.
//!
//! Invariant: discovery never empties a member set because the registry is
//! unreachable; it keeps the last set it read and says since when the
//! registry has been unreachable.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod active;
mod error;
mod etcd;
mod instance;
mod name;
mod registry;
mod view;

pub use active::{Active, InvalidActive};
pub use error::{Action, ConnectError, RegisterError, RequestError};
pub use etcd::{
    Behind, Converge, Desired, DesiredAt, Etcd, Following, Holder, InvalidDesired, Lock, LockError,
    NodeReport, Options, SemaphoreError, Slot, check_files, now_rfc3339,
};
pub use instance::{Instance, InstanceKey, InvalidInstance, MAX_WEIGHT, Members, State};
pub use name::{InvalidName, Name};
pub use registry::{Discovery, Reachability, Registrant, Registry};
pub use view::{InstanceView, NodeView, ServiceView, SlotView, View};
