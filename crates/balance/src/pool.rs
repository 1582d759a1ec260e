//! A pool of upstream members as one configuration snapshot sees it.
//!
//! Owns the members' specs (key, weight, connection limit) for one snapshot,
//! the round-robin state, the choice among available members and the passive
//! reports of picked members. Immutable apart from the round-robin lock: a
//! weight change is a new `Pool` from a reload. It must never own health
//! state (that is [`MemberHealth`], shared across snapshots), never perform
//! I/O and never wait: `try_pick` answers at once, and a request that finds
//! every member full waits in the pool's [`Queue`] (shared across snapshots
//! too), which a dropped [`Picked`] tells that a slot is free.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::health::MemberHealth;
use crate::passive::{Outcome, PassiveConfig, PassiveTransition};
use crate::pick;
use crate::queue::{Queue, QueueBounds};

/// One member as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// `host:port` as configured; identifies the member across reloads.
    pub key: String,
    /// Relative share of requests; 0 takes the member out of rotation.
    pub weight: u32,
    /// Most requests in flight to this member at once, across snapshots;
    /// 0 means no limit (as nginx's `max_conns`).
    pub max_connections: usize,
}

/// How a pool chooses among its available members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// nginx's smooth weighted round-robin.
    WeightedRoundRobin,
    /// Power of two choices drawn by weight; the one with fewer requests in
    /// flight wins.
    LeastRequests,
}

/// A member of a pool: its position, its spec and its shared health.
#[derive(Debug)]
pub struct Member {
    index: usize,
    spec: MemberSpec,
    health: Arc<MemberHealth>,
}

impl Member {
    /// Position in [`Pool::members`]; what `exclude` and [`Picked::index`]
    /// refer to.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The configured spec.
    pub fn spec(&self) -> &MemberSpec {
        &self.spec
    }

    /// The configured `host:port`.
    pub fn key(&self) -> &str {
        &self.spec.key
    }

    /// The health shared with other snapshots.
    pub fn health(&self) -> &Arc<MemberHealth> {
        &self.health
    }

    /// Could serve one more request at `now`, not counting `exclude`.
    fn is_eligible(&self, now: Instant) -> bool {
        self.spec.weight > 0
            && self.health.has_room(self.spec.max_connections)
            && self.health.is_available(now)
    }
}

#[derive(Debug)]
struct Inner {
    name: String,
    policy: Policy,
    members: Box<[Member]>,
    passive: Option<PassiveConfig>,
    /// nginx's `current_weight` of each member.
    round_robin: Mutex<Box<[i64]>>,
    /// Serialises ejection decisions, so that two members failing at once
    /// cannot both conclude that the other one is still available.
    ejecting: Mutex<()>,
    /// Where requests wait for a slot; told of every slot released.
    queue: Arc<Queue>,
}

/// Why [`Pool::try_pick`] found no member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPick {
    /// Members are available, but every one is at its connection limit:
    /// the request may wait for a slot.
    Full,
    /// No member is available with a weight above 0 (outside `exclude`).
    Unavailable,
}

/// A pool of members; cheap to clone (`Arc`), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool over `members` (their order gives their indices), with a queue
    /// of its own with the default bounds. `passive` enables passive
    /// ejection.
    pub fn new(
        name: &str,
        policy: Policy,
        members: Vec<(MemberSpec, Arc<MemberHealth>)>,
        passive: Option<PassiveConfig>,
    ) -> Pool {
        let queue = Arc::new(Queue::new(name, QueueBounds::default()));
        Pool::with_queue(name, policy, members, passive, queue)
    }

    /// [`Pool::new`] with the queue of the pool's earlier snapshots, so that
    /// requests waiting there are told of the slots this one releases.
    pub fn with_queue(
        name: &str,
        policy: Policy,
        members: Vec<(MemberSpec, Arc<MemberHealth>)>,
        passive: Option<PassiveConfig>,
        queue: Arc<Queue>,
    ) -> Pool {
        let members: Box<[Member]> = members
            .into_iter()
            .enumerate()
            .map(|(index, (spec, health))| Member {
                index,
                spec,
                health,
            })
            .collect();
        let round_robin = Mutex::new(vec![0; members.len()].into_boxed_slice());
        Pool {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                policy,
                members,
                passive,
                round_robin,
                ejecting: Mutex::new(()),
                queue,
            }),
        }
    }

    /// Picks a member for one request among those available now, with a
    /// weight above 0, under their connection limit and not in `exclude`
    /// (members already tried for this request). `None` when there is none.
    pub fn pick(&self, exclude: &[usize]) -> Option<Picked> {
        self.pick_at(exclude, Instant::now())
    }

    /// [`pick`](Self::pick), saying why no member was picked: every
    /// candidate full (wait in [`Pool::queue`]), or none available.
    pub fn try_pick(&self, exclude: &[usize]) -> Result<Picked, NoPick> {
        self.try_pick_at(exclude, Instant::now())
    }

    /// [`try_pick`](Self::try_pick) at a given time.
    pub fn try_pick_at(&self, exclude: &[usize], now: Instant) -> Result<Picked, NoPick> {
        if let Some(picked) = self.pick_at(exclude, now) {
            return Ok(picked);
        }
        let candidate = self.inner.members.iter().any(|m| {
            !exclude.contains(&m.index) && m.spec.weight > 0 && m.health.is_available(now)
        });
        Err(if candidate {
            NoPick::Full
        } else {
            NoPick::Unavailable
        })
    }

    /// The earliest end, after `now`, of a passive ejection of a member that
    /// is otherwise healthy and has a weight above 0: when a request waiting
    /// for a slot should look again, since nothing else announces it.
    pub fn next_return(&self, now: Instant) -> Option<Instant> {
        self.members()
            .iter()
            .filter(|m| m.spec.weight > 0 && m.health.is_healthy())
            .filter_map(|m| m.health.ejected_until())
            .filter(|&until| until > now)
            .min()
    }

    /// The queue where requests wait for a slot of a member.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.inner.queue
    }

    /// [`pick`](Self::pick) at a given time.
    pub fn pick_at(&self, exclude: &[usize], now: Instant) -> Option<Picked> {
        let members = &self.inner.members;
        let eligible = |i: usize| !exclude.contains(&i) && members[i].is_eligible(now);
        let weight = |i: usize| members[i].spec.weight;
        // A chosen member can reach its limit between the check and the
        // increment (another thread, another snapshot); choosing again then
        // sees it full. Bounded, since each retry means another request won.
        for _ in 0..=members.len() {
            let index = match self.inner.policy {
                Policy::WeightedRoundRobin => {
                    let mut current = self
                        .inner
                        .round_robin
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    pick::smooth_weighted(&mut current, weight, eligible)
                }
                Policy::LeastRequests => pick::power_of_two(
                    members.len(),
                    weight,
                    eligible,
                    |i| members[i].health.in_flight(),
                    |n| fastrand::u64(0..n),
                ),
            }?;
            let member = &members[index];
            if member.health.try_acquire(member.spec.max_connections) {
                return Some(Picked {
                    pool: self.inner.clone(),
                    index,
                    picked_at: now,
                });
            }
        }
        None
    }

    /// The members, in configuration order.
    pub fn members(&self) -> &[Member] {
        &self.inner.members
    }

    /// The pool's name, for logs.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The selection policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The passive ejection settings, if enabled.
    pub fn passive(&self) -> Option<&PassiveConfig> {
        self.inner.passive.as_ref()
    }

    /// Sets `member`'s active flag to unhealthy, unless `unless_last` and
    /// no other member of the pool is available with a weight above 0;
    /// returns whether it did. Serialised with passive ejections, so that
    /// two members failing at once cannot both conclude that the other one
    /// is still available. A member that is not in the pool is taken out.
    pub(crate) fn take_out(&self, member: &Arc<MemberHealth>, unless_last: bool) -> bool {
        let _serial = self
            .inner
            .ejecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let others = || {
            self.members().iter().any(|m| {
                !Arc::ptr_eq(&m.health, member) && m.spec.weight > 0 && m.health.is_available(now)
            })
        };
        if unless_last && !others() {
            return false;
        }
        member.set_healthy(false);
        true
    }

    /// Members that are available at `now` and have a weight above 0.
    pub fn available(&self, now: Instant) -> usize {
        self.members()
            .iter()
            .filter(|m| m.spec.weight > 0 && m.health.is_available(now))
            .count()
    }
}

/// A member chosen for one request. Counts as in flight until dropped.
#[derive(Debug)]
pub struct Picked {
    pool: Arc<Inner>,
    index: usize,
    /// When the member was picked: where the latency in its stats starts.
    picked_at: Instant,
}

impl Picked {
    /// The member's index in [`Pool::members`], for the `exclude` list of a
    /// retry.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The member's `host:port`.
    pub fn key(&self) -> &str {
        self.member().key()
    }

    /// The member.
    pub fn member(&self) -> &Member {
        &self.pool.members[self.index]
    }

    /// Reports how the request ended (for the member's [`Stats`] and passive
    /// ejection) and ends it. Dropping a `Picked` without reporting is the
    /// same as [`Outcome::Cancelled`].
    ///
    /// [`Stats`]: crate::Stats
    pub fn report(self, outcome: Outcome) {
        self.report_at(outcome, Instant::now());
    }

    /// [`report`](Self::report) at a given time.
    ///
    /// The member's [`stats`](MemberHealth::stats) count the request, with
    /// the time since the pick as its latency, unless it was
    /// [`Outcome::Cancelled`]; a failure is whatever
    /// [`Outcome::is_failure`] says. They count whether or not the pool has
    /// passive ejection.
    ///
    /// A failure streak never ejects the last member of the pool that is
    /// available with a weight above 0: with nowhere else to send traffic,
    /// an ejection would only turn possible failures into certain 503s for
    /// the whole ejection time (a single-instance app that restarts would stay
    /// out for `ejection_time` after it is back). The streak is kept, so the
    /// member is ejected on its next failure once another one is available.
    pub fn report_at(self, outcome: Outcome, now: Instant) {
        let member = self.member();
        if outcome != Outcome::Cancelled {
            let latency = now.saturating_duration_since(self.picked_at);
            member.health.stats().record(latency, outcome.is_failure());
        }
        let Some(config) = &self.pool.passive else {
            return;
        };
        let transition = if outcome.is_failure() {
            let _serial = self
                .pool
                .ejecting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            member
                .health
                .record_passive(outcome, now, config, || self.others_available(now))
        } else {
            member.health.record_passive(outcome, now, config, || true)
        };
        let (pool, key) = (self.pool.name.as_str(), member.key());
        match transition {
            Some(PassiveTransition::Ejected {
                duration,
                ejection,
                failures,
                ..
            }) => tracing::warn!(
                pool,
                member = key,
                from = "available",
                to = "ejected",
                reason = %format_args!("{failures} failed requests in a row ({outcome:?} last)"),
                ejection,
                duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                "member ejected"
            ),
            Some(PassiveTransition::Withheld { failures }) => tracing::debug!(
                pool,
                member = key,
                failures,
                "ejection withheld: last available member of the pool"
            ),
            Some(PassiveTransition::Recovered { ejections }) => tracing::info!(
                pool,
                member = key,
                ejections,
                "member answered after ejections; backoff reset"
            ),
            None => {}
        }
    }

    fn others_available(&self, now: Instant) -> bool {
        self.pool
            .members
            .iter()
            .any(|m| m.index != self.index && m.spec.weight > 0 && m.health.is_available(now))
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.member().health.release();
        self.pool.queue.released();
    }
}

#[cfg(test)]
mod tests;
