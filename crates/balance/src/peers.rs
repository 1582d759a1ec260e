//! A pool as its members' active checkers see it: the latest snapshot's
//! [`Pool`], kept across snapshots by whoever builds them (one [`Peers`] per
//! pool name), so that a checker — which outlives snapshots — asks the pool
//! of now whether its member may leave.
//!
//! It owns nothing but that link; the decision and its lock are the pool's
//! ([`Pool::take_out`], the lock passive ejections take). It must never
//! perform I/O or wait.

use std::sync::{Arc, Mutex, PoisonError};

use crate::health::MemberHealth;
use crate::pool::Pool;

/// The latest snapshot of one pool, for its members' active checkers.
#[derive(Debug, Default)]
pub struct Peers {
    current: Mutex<Option<Pool>>,
}

impl Peers {
    /// A link to no pool yet: until [`set`](Self::set), a checker's member
    /// counts as the only one of its pool.
    pub fn new() -> Arc<Peers> {
        Arc::default()
    }

    /// `pool` is the pool's latest snapshot.
    pub fn set(&self, pool: &Pool) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(pool.clone());
    }

    /// Takes `member` out (its active flag to unhealthy), unless
    /// `unless_last` and no other member of the latest snapshot is
    /// available; returns whether it did.
    pub(crate) fn take_out(&self, member: &Arc<MemberHealth>, unless_last: bool) -> bool {
        let pool = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match pool {
            Some(pool) => pool.take_out(member, unless_last),
            None if unless_last => false,
            None => {
                member.set_healthy(false);
                true
            }
        }
    }
}
