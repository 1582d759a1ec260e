//! The replacement policy, as a pure function: given the instances alive now
//! and the bounds, which to start and which to stop next: a semaphore on a
//! replacement (at most `max_surge` extra instances, at most
//! `max_unavailable` missing), stated as Kubernetes states it for
//! Deployments. No processes,
//! no clocks: the group applies the actions and asks again after each event.

/// How many instances to run and how far a replacement may stray from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Instances wanted.
    pub instances: usize,
    /// Extra instances allowed above `instances` during a replacement.
    pub max_surge: usize,
    /// Ready instances that may be missing below `instances` during a
    /// replacement. With 0 (the default), an old instance is stopped only
    /// after a new one reported ready.
    pub max_unavailable: usize,
}

/// Bounds under which no replacement could make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// No instance is wanted.
    #[error("instances must be at least 1")]
    NoInstances,
    /// Neither an extra instance nor a missing one is allowed.
    #[error("max-surge and max-unavailable cannot both be 0: no instance could ever be replaced")]
    Stuck,
}

impl Bounds {
    /// Checks that a replacement can make progress at all.
    pub fn validate(&self) -> Result<(), BoundsError> {
        if self.instances == 0 {
            return Err(BoundsError::NoInstances);
        }
        if self.max_surge == 0 && self.max_unavailable == 0 {
            return Err(BoundsError::Stuck);
        }
        Ok(())
    }
}

/// Narrower bounds for one rollout (a share of a bound that several groups
/// divide among themselves, such as the nodes of a cluster): how far that
/// rollout may stray from `instances`. Each is at most the group's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Extra instances allowed above `instances` during the rollout.
    pub max_surge: usize,
    /// Ready instances that may be missing below `instances` during it.
    pub max_unavailable: usize,
}

impl Bounds {
    /// These bounds within `limits` (never wider than they are). Not both 0
    /// as long as `limits` are not.
    pub fn within(&self, limits: Limits) -> Bounds {
        Bounds {
            instances: self.instances,
            max_surge: self.max_surge.min(limits.max_surge),
            max_unavailable: self.max_unavailable.min(limits.max_unavailable),
        }
    }
}

/// An instance as the planner sees it (stopping instances are not shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub id: u64,
    /// True when the instance belongs to the generation being rolled out (or,
    /// outside a rollout, to the current one).
    pub current: bool,
    pub ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Spawn,
    Stop(u64),
}

/// The next actions. `may_spawn` is false while a restart backoff runs.
/// `given_up` slots (instances the restart policy did not replace) are not
/// refilled, but never make the planner stop anything: surplus and
/// availability still count against `bounds.instances`.
/// Instances are given oldest first; the oldest are stopped first.
pub(crate) fn next(
    bounds: &Bounds,
    alive: &[View],
    may_spawn: bool,
    given_up: usize,
) -> Vec<Action> {
    let n = bounds.instances;
    let mut actions = Vec::new();
    let mut alive_count = alive.len();

    // An old instance that is not ready serves nothing: stop it at once.
    for v in alive.iter().filter(|v| !v.current && !v.ready) {
        actions.push(Action::Stop(v.id));
        alive_count -= 1;
    }

    let mut current = alive.iter().filter(|v| v.current).count();
    if may_spawn {
        let wanted = n.saturating_sub(given_up);
        while current < wanted && alive_count < n + bounds.max_surge {
            actions.push(Action::Spawn);
            current += 1;
            alive_count += 1;
        }
    }

    // Stop old ready instances while enough remain ready.
    let min_ready = n.saturating_sub(bounds.max_unavailable);
    let mut ready = alive.iter().filter(|v| v.ready).count();
    for v in alive.iter().filter(|v| !v.current && v.ready) {
        if ready > min_ready {
            actions.push(Action::Stop(v.id));
            ready -= 1;
        }
    }

    // More current instances than wanted (e.g. after a failed rollout left
    // extra): stop the surplus, not-ready ones first.
    let mut surplus = current.saturating_sub(n);
    let mut candidates: Vec<&View> = alive.iter().filter(|v| v.current).collect();
    candidates.sort_by_key(|v| v.ready);
    for v in candidates {
        if surplus == 0 {
            break;
        }
        if !v.ready || ready > min_ready {
            actions.push(Action::Stop(v.id));
            surplus -= 1;
            ready -= usize::from(v.ready);
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(instances: usize, max_surge: usize, max_unavailable: usize) -> Bounds {
        Bounds {
            instances,
            max_surge,
            max_unavailable,
        }
    }

    fn v(id: u64, current: bool, ready: bool) -> View {
        View { id, current, ready }
    }

    /// Drives a full replacement of `n` ready old instances, making every
    /// spawned instance ready at once, and checks the bounds at each step.
    fn replace_all(bounds: Bounds) -> usize {
        let n = bounds.instances;
        let mut alive: Vec<View> = (0..n as u64).map(|i| v(i, false, true)).collect();
        let mut next_id = 100;
        let mut steps = 0;
        while alive.len() < n || alive.iter().any(|v| !v.current || !v.ready) {
            steps += 1;
            assert!(steps < 100, "no progress: {alive:?}");
            for a in next(&bounds, &alive, true, 0) {
                match a {
                    Action::Spawn => {
                        alive.push(v(next_id, true, false));
                        next_id += 1;
                    }
                    Action::Stop(id) => alive.retain(|v| v.id != id),
                }
                assert!(alive.len() <= n + bounds.max_surge, "surge exceeded");
                let ready = alive.iter().filter(|v| v.ready).count();
                assert!(ready + bounds.max_unavailable >= n, "too few ready");
            }
            // The new ones become ready.
            for v in alive.iter_mut() {
                v.ready = true;
            }
        }
        assert_eq!(alive.len(), n);
        steps
    }

    #[test]
    fn every_bound_combination_replaces_everything_within_its_limits() {
        for n in 1..=5 {
            for s in 0..=3 {
                for u in 0..=3 {
                    let bounds = b(n, s, u);
                    if bounds.validate().is_ok() {
                        replace_all(bounds);
                    }
                }
            }
        }
    }

    #[test]
    fn limits_narrow_the_bounds_and_still_replace_everything() {
        for (s, u) in [(1, 0), (0, 1), (1, 1)] {
            let limits = Limits {
                max_surge: s,
                max_unavailable: u,
            };
            let narrowed = b(4, 3, 2).within(limits);
            assert_eq!((narrowed.max_surge, narrowed.max_unavailable), (s, u));
            replace_all(narrowed);
        }
        // Never wider than the group's own.
        let wide = Limits {
            max_surge: 9,
            max_unavailable: 9,
        };
        assert_eq!(b(2, 1, 0).within(wide), b(2, 1, 0));
    }

    #[test]
    fn default_bounds_never_stop_before_a_replacement_is_ready() {
        let bounds = b(2, 1, 0);
        let alive = [v(1, false, true), v(2, false, true)];
        assert_eq!(next(&bounds, &alive, true, 0), [Action::Spawn]);
        let alive = [v(1, false, true), v(2, false, true), v(3, true, false)];
        assert_eq!(next(&bounds, &alive, true, 0), []);
        let alive = [v(1, false, true), v(2, false, true), v(3, true, true)];
        assert_eq!(next(&bounds, &alive, true, 0), [Action::Stop(1)]);
    }

    #[test]
    fn steady_state_restarts_missing_instances_unless_backing_off() {
        let bounds = b(3, 1, 0);
        let alive = [v(1, true, true), v(2, true, true)];
        assert_eq!(next(&bounds, &alive, true, 0), [Action::Spawn]);
        assert_eq!(next(&bounds, &alive, false, 0), []);
    }

    #[test]
    fn given_up_slots_are_not_refilled_and_stop_nothing() {
        let bounds = b(3, 1, 0);
        let alive = [v(1, true, true)];
        assert_eq!(next(&bounds, &alive, true, 1), [Action::Spawn]);
        let alive = [v(1, true, true), v(2, true, true)];
        assert_eq!(next(&bounds, &alive, true, 1), []);
        assert_eq!(next(&bounds, &[], true, 3), []);
        // More given up than missing (a failed rollout left its ready
        // instances serving): nothing is stopped for it, even where the
        // bounds would allow stopping ready instances.
        let bounds = b(3, 1, 2);
        let alive = [v(1, true, true), v(2, true, true), v(3, true, true)];
        assert_eq!(next(&bounds, &alive, true, 2), []);
    }

    #[test]
    fn old_instances_that_are_not_ready_are_stopped_first() {
        let bounds = b(1, 1, 0);
        let alive = [v(1, false, true), v(2, false, false)];
        assert_eq!(
            next(&bounds, &alive, true, 0),
            [Action::Stop(2), Action::Spawn]
        );
    }

    #[test]
    fn surplus_current_instances_are_trimmed() {
        let bounds = b(1, 1, 0);
        let alive = [v(1, true, true), v(2, true, false)];
        assert_eq!(next(&bounds, &alive, true, 0), [Action::Stop(2)]);
    }

    #[test]
    fn validate_rejects_bounds_that_cannot_progress() {
        assert_eq!(b(0, 1, 0).validate(), Err(BoundsError::NoInstances));
        assert_eq!(b(2, 0, 0).validate(), Err(BoundsError::Stuck));
        assert!(b(2, 0, 1).validate().is_ok());
    }
}
