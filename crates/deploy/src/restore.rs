//! Coming back after a restart: each service of the config starts at the
//! version (or targets) the state says it last served, not the file's; on
//! the first start the file's are recorded as the initial deploy, to roll
//! back to. A deploy that baton's stop interrupted is reported.
//!
//! Pure: it changes the config and the state it is given and must never
//! touch the disk or the processes (the engine saves the state).

use crate::{Deploy, Outcome, StartError, State, state};

/// Applies `state` to `config` and records the services it did not know.
/// Returns whether `state` changed (and must be saved).
pub(crate) fn restore(config: &mut config::Config, state: &mut State) -> Result<bool, StartError> {
    let mut fresh = false;
    for (name, service) in config.services.iter_mut() {
        let Some(saved) = state.services.get(name) else {
            // First start: the file's version is the one to come back to.
            let entry = state.services.entry(name.clone()).or_default();
            let (version, targets) = match &service.runner {
                config::Runner::Supervised(s) => (s.version.to_string(), Vec::new()),
                config::Runner::External(e) => (
                    String::new(),
                    e.targets.iter().map(|t| t.authority.clone()).collect(),
                ),
            };
            entry.version = version.clone();
            entry.targets = targets.clone();
            entry.record(Deploy {
                version,
                targets,
                started: state::now(),
                outcome: Outcome::Initial,
            });
            fresh = true;
            continue;
        };
        if let Some(last) = saved.history.last()
            && last.outcome == Outcome::InProgress
        {
            tracing::warn!(
                service = %name,
                version = %last.version,
                serving = %saved.version,
                "baton stopped during a deploy; it did not complete"
            );
        }
        match &mut service.runner {
            config::Runner::Supervised(s) if !saved.version.is_empty() => {
                s.version = saved
                    .version
                    .parse()
                    .map_err(|source| StartError::SavedVersion {
                        service: name.clone(),
                        source,
                    })?;
                tracing::info!(service = %name, version = %s.version, "version restored from the state directory");
            }
            config::Runner::External(e) if !saved.targets.is_empty() => {
                e.targets = saved
                    .targets
                    .iter()
                    .map(|t| t.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|source| StartError::SavedTargets {
                        service: name.clone(),
                        source,
                    })?;
                tracing::info!(service = %name, targets = ?saved.targets, "targets restored from the state directory");
            }
            _ => {}
        }
    }
    Ok(fresh)
}
