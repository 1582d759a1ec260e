//! What must survive a restart of baton: for each service the version that
//! is live and its deploy history, in `state.json` inside the state
//! directory. Every write is atomic (a temporary file, fsync, rename, fsync
//! of the directory), so a crash leaves either the old state or the new one.
//! A deploy is recorded as "in progress" before it starts, so one that a
//! crash interrupted is visible at the next start instead of vanishing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// By service name.
    pub services: BTreeMap<String, ServiceState>,
}

/// One service's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    /// The version serving now (the last one deployed successfully); for
    /// an external service its label, possibly empty.
    pub version: String,
    /// External services: the targets serving now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Deploys, oldest first (the last 100).
    pub history: Vec<Deploy>,
}

/// One deploy attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    /// The version deployed.
    pub version: String,
    /// External services: the targets deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// When it started (RFC 3339).
    pub started: String,
    /// `initial`, `in progress`, `deployed`, `rolled back`, or `failed: reason`.
    pub outcome: String,
}

const HISTORY: usize = 100;

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: &Path) -> io::Result<Store> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the state; a missing file is an empty state, a corrupt one an
    /// error (never silently discarded).
    pub fn load(&self) -> io::Result<State> {
        match fs::read(self.file()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not valid state: {e}", self.file().display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &State) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.dir.join("state.json.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, self.file())?;
        File::open(&self.dir)?.sync_all()
    }
}

impl ServiceState {
    /// Appends a deploy, keeping the last `HISTORY`.
    pub fn record(&mut self, deploy: Deploy) {
        self.history.push(deploy);
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }

    /// The deploy that served before the current version (or targets), if
    /// any.
    pub fn previous(&self) -> Option<&Deploy> {
        self.history
            .iter()
            .rev()
            .filter(|d| matches!(d.outcome.as_str(), "deployed" | "rolled back" | "initial"))
            .find(|d| d.version != self.version || d.targets != self.targets)
    }
}

/// Now, as RFC 3339.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("baton-state-test-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        let mut state = State::default();
        let web = state.services.entry("web".into()).or_default();
        web.version = "v2".into();
        for (v, outcome) in [("v1", "deployed"), ("v2", "deployed"), ("v3", "failed: x")] {
            web.record(Deploy {
                version: v.into(),
                targets: Vec::new(),
                started: now(),
                outcome: outcome.into(),
            });
        }
        store.save(&state).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back, state);
        assert_eq!(back.services["web"].previous().unwrap().version, "v1");
        assert!(!dir.join("state.json.tmp").exists());
        std::fs::write(dir.join("state.json"), b"{ nope").unwrap();
        assert!(
            store
                .load()
                .unwrap_err()
                .to_string()
                .contains("not valid state")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn history_is_bounded() {
        let mut s = ServiceState::default();
        for i in 0..150 {
            s.record(Deploy {
                version: format!("v{i}"),
                targets: Vec::new(),
                started: String::new(),
                outcome: "deployed".into(),
            });
        }
        assert_eq!(s.history.len(), 100);
        assert_eq!(s.history[0].version, "v50");
    }
}
