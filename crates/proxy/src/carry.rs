//! The members' health carried from one baton process to the next (an
//! upgrade of baton): the old process lists what it knows of every member,
//! the new one takes it over before it serves, so that a member known to be
//! down stays down and the checks go on from the same streaks.
//!
//! Only reads and writes each member's `MemberHealth`: never builds a
//! snapshot, never probes.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::Proxy;

/// One member's health, by pool and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedMember {
    /// The pool (or service) it belongs to.
    pub pool: String,
    /// Its address, as the config names it.
    pub member: String,
    /// What this process knows of it.
    pub health: crate::CarriedHealth,
}

impl Proxy {
    /// What this process knows of every member of the current config.
    pub fn carry_out_health(&self) -> Vec<CarriedMember> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        registry
            .members_checked()
            .map(|(pool, member, health, _)| CarriedMember {
                pool: pool.to_owned(),
                member: member.to_owned(),
                health: health.carry_out(now),
            })
            .collect()
    }

    /// Takes over what another process knew of the members the current
    /// config has too; returns how many it found. The others are ignored
    /// (the new config may have dropped them).
    pub fn carry_in_health(&self, carried: &[CarriedMember]) -> usize {
        let by_member: HashMap<(&str, &str), &crate::CarriedHealth> = carried
            .iter()
            .map(|c| ((c.pool.as_str(), c.member.as_str()), &c.health))
            .collect();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut found = 0;
        for (pool, member, health, checked) in registry.members_checked() {
            if let Some(c) = by_member.get(&(pool, member)) {
                health.carry_in(c, now, checked);
                found += 1;
            }
        }
        found
    }
}
