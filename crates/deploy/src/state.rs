//! What must survive a restart of baton: for each service the version that
//! is live and its deploy history, in `state.json` inside the state
//! directory. Every write is atomic (a temporary file, fsync, rename, fsync
//! of the directory), so a crash leaves either the old state or the new one.
//! A deploy is recorded as [`Outcome::InProgress`] before it starts, so one
//! that a crash interrupted is visible at the next start instead of
//! vanishing. Outcomes are written as the words earlier versions wrote
//! ("in progress", "deployed", "rolled back", "failed: reason"), so every
//! `state.json` ever written still loads.

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
    /// How it ended, or that it has not.
    pub outcome: Outcome,
}

/// How a deploy ended. In `state.json` (and the control API) it is one
/// string: `initial`, `in progress`, `deployed`, `rolled back`, or
/// `failed: reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Outcome {
    /// The version of the config file at the first start, recorded so that
    /// there is something to roll back to.
    Initial,
    /// Started and not finished (or baton stopped during it).
    InProgress,
    /// It completed.
    Deployed,
    /// A rollback that completed.
    RolledBack,
    /// It failed and was undone; why.
    Failed(String),
}

impl Outcome {
    /// Whether its version served (or serves) all the traffic afterwards.
    pub fn served(&self) -> bool {
        matches!(
            self,
            Outcome::Initial | Outcome::Deployed | Outcome::RolledBack
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Initial => f.write_str("initial"),
            Outcome::InProgress => f.write_str("in progress"),
            Outcome::Deployed => f.write_str("deployed"),
            Outcome::RolledBack => f.write_str("rolled back"),
            Outcome::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

impl From<Outcome> for String {
    fn from(outcome: Outcome) -> String {
        outcome.to_string()
    }
}

/// A deploy outcome in `state.json` that is none of [`Outcome`]'s words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown deploy outcome {0:?}")]
pub struct UnknownOutcome(String);

impl TryFrom<String> for Outcome {
    type Error = UnknownOutcome;

    fn try_from(text: String) -> Result<Outcome, UnknownOutcome> {
        Ok(match text.as_str() {
            "initial" => Outcome::Initial,
            "in progress" => Outcome::InProgress,
            "deployed" => Outcome::Deployed,
            "rolled back" => Outcome::RolledBack,
            "failed" => Outcome::Failed(String::new()),
            _ => match text.strip_prefix("failed: ") {
                Some(reason) => Outcome::Failed(reason.to_owned()),
                None => return Err(UnknownOutcome(text)),
            },
        })
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory or a file in it could not be created, read or
    /// written.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// To which path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `state.json` is not valid state; it is never silently discarded.
    #[error("{} is not valid state: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: serde_json::Error,
    },
}

const HISTORY: usize = 100;
/// The running instances' records, next to `state.json`.
const INSTANCES: &str = "instances.json";

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error("create", dir))?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the state; a missing file is an empty state, a corrupt one an
    /// error (never silently discarded).
    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.file();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_error("read", &path)(e)),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        self.write("state.json", state)
    }

    /// The instances running when they were last recorded, by service
    /// (`instances.json`): what a baton restarted after a crash adopts. A
    /// missing or unreadable file is none (they are only a hint: every
    /// record is checked against the live process before it is used).
    pub(crate) fn load_instances(&self) -> BTreeMap<String, Vec<crate::HandedOver>> {
        fs::read(self.dir.join(INSTANCES))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Records the running instances atomically.
    pub(crate) fn save_instances(
        &self,
        instances: &BTreeMap<String, Vec<crate::HandedOver>>,
    ) -> Result<(), StoreError> {
        self.write(INSTANCES, instances)
    }

    /// `state` as [`save_bytes`](Self::save_bytes) writes it: serialized
    /// where the state is, written (and synced) elsewhere.
    pub fn state_bytes(&self, state: &State) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec_pretty(state).map_err(|source| StoreError::Corrupt {
            path: self.file(),
            source,
        })
    }

    /// Writes serialized state ([`state_bytes`](Self::state_bytes))
    /// atomically. It syncs the disk twice: never on a thread that serves
    /// requests.
    pub fn save_bytes(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_bytes("state.json", bytes)
    }

    fn write(&self, name: &str, value: &impl Serialize) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Corrupt {
            path: self.dir.join(format!("{name}.tmp")),
            source,
        })?;
        self.write_bytes(name, &bytes)
    }

    fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_error("create", &tmp))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io_error("write", &tmp))?;
        fs::rename(&tmp, self.dir.join(name)).map_err(io_error("rename", &tmp))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync", &self.dir))
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

impl ServiceState {
    /// Appends a deploy, keeping the last `HISTORY`.
    pub fn record(&mut self, deploy: Deploy) {
        self.history.push(deploy);
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }

    /// Records a deploy's progress: an outcome replaces the one recorded
    /// when the same deploy started, and a deploy that completed becomes
    /// what serves.
    pub(crate) fn note(&mut self, deploy: &Deploy, outcome: Outcome) {
        let completed = matches!(outcome, Outcome::Deployed | Outcome::RolledBack);
        match self.history.last_mut() {
            Some(last) if last.outcome == Outcome::InProgress && last.started == deploy.started => {
                last.outcome = outcome;
            }
            _ => self.record(Deploy {
                outcome,
                ..deploy.clone()
            }),
        }
        if completed {
            self.version = deploy.version.clone();
            self.targets = deploy.targets.clone();
        }
    }

    /// The deploy that served before the current version (or targets), if
    /// any.
    pub fn previous(&self) -> Option<&Deploy> {
        self.history
            .iter()
            .rev()
            .filter(|d| d.outcome.served())
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
        for (v, outcome) in [
            ("v1", Outcome::Deployed),
            ("v2", Outcome::Deployed),
            ("v3", Outcome::Failed("x".into())),
        ] {
            web.record(Deploy {
                version: v.into(),
                targets: Vec::new(),
                started: now(),
                outcome,
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
                outcome: Outcome::Deployed,
            });
        }
        assert_eq!(s.history.len(), 100);
        assert_eq!(s.history[0].version, "v50");
    }

    /// A `state.json` as earlier versions wrote it, outcomes as strings,
    /// loads into the same outcomes and is written back with the same words.
    #[test]
    fn outcomes_written_as_strings_still_load() {
        let written = r#"{
  "services": {
    "web": {
      "version": "v2",
      "history": [
        { "version": "v1", "started": "2026-11-30T10:00:00Z", "outcome": "initial" },
        { "version": "v2", "started": "2026-11-30T10:01:00Z", "outcome": "deployed" },
        { "version": "v3", "started": "2026-11-30T10:02:00Z", "outcome": "failed: canary error rate 5.00% is above 1.00%" },
        { "version": "v1", "started": "2026-11-30T10:03:00Z", "outcome": "rolled back" },
        { "version": "v4", "started": "2026-11-30T10:04:00Z", "outcome": "in progress" }
      ]
    }
  }
}"#;
        let state: State = serde_json::from_str(written).unwrap();
        let outcomes: Vec<&Outcome> = state.services["web"]
            .history
            .iter()
            .map(|d| &d.outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                &Outcome::Initial,
                &Outcome::Deployed,
                &Outcome::Failed("canary error rate 5.00% is above 1.00%".into()),
                &Outcome::RolledBack,
                &Outcome::InProgress,
            ]
        );
        let back: serde_json::Value = serde_json::to_value(&state).unwrap();
        let original: serde_json::Value = serde_json::from_str(written).unwrap();
        assert_eq!(back, original);
        let bad = written.replace("rolled back", "rolled sideways");
        let e = serde_json::from_str::<State>(&bad).unwrap_err();
        assert!(e.to_string().contains("unknown deploy outcome"), "{e}");
    }

    fn deploy(version: &str, started: &str) -> Deploy {
        Deploy {
            version: version.into(),
            targets: Vec::new(),
            started: started.into(),
            outcome: Outcome::InProgress,
        }
    }

    /// What a rollback goes back to: the last version that served other
    /// than the current one, whatever failed in between.
    #[test]
    fn previous_is_the_last_other_version_that_served() {
        let mut s = ServiceState::default();
        assert_eq!(s.previous(), None);
        let v1 = deploy("v1", "t1");
        s.note(&v1, Outcome::Initial);
        assert_eq!(s.version, "", "an initial record is made by restore");
        s.version = "v1".into();
        assert_eq!(s.previous(), None, "nothing before the first version");
        let v2 = deploy("v2", "t2");
        s.note(&v2, Outcome::InProgress);
        assert_eq!((s.version.as_str(), s.history.len()), ("v1", 2));
        s.note(&v2, Outcome::Deployed);
        assert_eq!(
            (s.version.as_str(), s.history.len()),
            ("v2", 2),
            "one entry per deploy"
        );
        let v3 = deploy("v3", "t3");
        s.note(&v3, Outcome::InProgress);
        s.note(&v3, Outcome::Failed("smoke".into()));
        assert_eq!(s.version, "v2", "a failed deploy changes nothing");
        assert_eq!(s.previous().unwrap().version, "v1");
        // The rollback to v1 completes; the one before it is v2 now.
        let back = deploy("v1", "t4");
        s.note(&back, Outcome::InProgress);
        s.note(&back, Outcome::RolledBack);
        assert_eq!(s.version, "v1");
        assert_eq!(s.previous().unwrap().version, "v2");
        let outcomes: Vec<String> = s.history.iter().map(|d| d.outcome.to_string()).collect();
        assert_eq!(
            outcomes,
            ["initial", "deployed", "failed: smoke", "rolled back"]
        );
    }
}
