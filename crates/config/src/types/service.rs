//! Typed services: what the deploy engine runs (supervised) or switches
//! between (external), how it replaces them (strategies) and how the proxy
//! forwards to them.

use std::time::Duration;

use super::pool::{ForwardSettings, HealthCheck, Member, PassiveHealth, Pool, UpstreamAddr};
use crate::template::Template;
use crate::version::Version;

/// One `[service.NAME]`.
///
/// Every strategy's settings are present (with their defaults) whatever
/// `strategy` says, because `baton deploy --strategy` may choose another.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The service's name (its key in `Config::services`); no pool has it.
    pub name: String,
    /// Who runs the instances.
    pub runner: Runner,
    /// How the proxy forwards to the instances or targets (as for a pool).
    pub forward: ForwardSettings,
    /// Active checks, which also decide readiness during a deploy; `None`:
    /// a supervised instance is ready on `READY=1`, an external target once
    /// it accepts a TCP connection.
    pub health: Option<HealthCheck>,
    /// Passive ejection; `None`: off.
    pub passive: Option<PassiveHealth>,
    /// Time a new instance or target has to become ready; non-zero.
    pub ready_timeout: Duration,
    /// Deadline for the requests in flight on an instance or target that
    /// leaves (a supervised one gets SIGKILL at it); may be zero.
    pub drain_timeout: Duration,
    /// A deploy that has not completed by then fails and rolls back;
    /// non-zero.
    pub deploy_timeout: Duration,
    /// What `baton deploy` does unless told otherwise.
    pub strategy: Strategy,
    /// Bounds of the rolling strategy.
    pub rolling: Rolling,
    /// Settings of the blue-green strategy.
    pub blue_green: BlueGreen,
    /// Settings of the canary strategy.
    pub canary: Canary,
}

impl Service {
    /// The name of the pool through which the proxy reaches this service,
    /// `service:NAME` (see [`Upstream::pool_name`](crate::Upstream::pool_name)).
    pub fn pool_name(&self) -> String {
        crate::types::service_pool_name(&self.name)
    }

    /// The pool the deploy engine publishes for this service: named
    /// [`Service::pool_name`], with these members (the instances or targets
    /// taking traffic, weighted) and the service's forwarding settings,
    /// health checks and passive ejection.
    pub fn pool(&self, members: Vec<Member>) -> Pool {
        Pool {
            name: self.pool_name(),
            members,
            discover: None,
            forward: self.forward.clone(),
            health: self.health.clone(),
            passive: self.passive.clone(),
        }
    }
}

/// Who runs a service's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// baton starts, checks, restarts and replaces them (`command`).
    Supervised(Supervised),
    /// Something else runs them; baton switches between targets (`targets`).
    External(External),
}

/// A service baton runs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervised {
    /// The program and its arguments; never empty, the program never empty.
    pub command: Vec<Template>,
    /// Variables added to baton's environment, in file order, names unique,
    /// non-empty, without `=` or NUL, none of `LISTEN_FDS`, `LISTEN_PID`,
    /// `LISTEN_FDNAMES`, `NOTIFY_SOCKET`.
    pub env: Vec<(String, Template)>,
    /// Working directory of the instances (not empty); `None`: baton's.
    pub cwd: Option<Template>,
    /// The version started the first time; afterwards the state directory
    /// knows better.
    pub version: Version,
    /// Instances to run, 1 to 1024.
    pub instances: u32,
    /// How an instance gets its socket. With [`SocketMode::Port`], `{port}`
    /// appears in `command` or in an `env` value.
    pub socket: SocketMode,
    /// What happens when an instance exits on its own.
    pub restart: Restart,
}

/// A service run by something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// The servers in the file, never empty, unique. They carry no version:
    /// each deploy names one.
    pub targets: Vec<UpstreamAddr>,
}

/// How a supervised instance gets its listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    /// baton binds `127.0.0.1:0` per instance and passes it as fd 3
    /// (`LISTEN_FDS=1`); `{port}` is its port.
    Inherit,
    /// baton picks a free port for `{port}`; the app binds it.
    Port,
}

/// What happens when a supervised instance exits without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Restart it (with backoff), whatever its exit status.
    Always,
    /// Restart it (with backoff) after a non-zero status or a signal.
    OnFailure,
    /// Leave it stopped.
    Never,
}

/// The deploy strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Replace a few at a time, within [`Rolling`]'s bounds.
    Rolling,
    /// Start the whole new set, check it, switch all traffic at once.
    BlueGreen,
    /// Move traffic in steps, judging the new version at each.
    Canary,
}

impl Strategy {
    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [Strategy; 3] = [Strategy::Rolling, Strategy::BlueGreen, Strategy::Canary];

    /// The strategy's name as the config, the CLI and the control API spell
    /// it (and as [`Display`](std::fmt::Display) and
    /// [`FromStr`](std::str::FromStr) do).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen => "blue_green",
            Strategy::Canary => "canary",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A strategy's name that is none of [`Strategy::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy {0:?}: expected rolling, blue_green or canary")]
pub struct UnknownStrategy(pub String);

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    /// A [`Strategy::name`]; on the command line and the control API also
    /// `blue-green` (the config file accepts only the names).
    fn from_str(s: &str) -> Result<Strategy, UnknownStrategy> {
        match s {
            "blue-green" => Ok(Strategy::BlueGreen),
            _ => Strategy::ALL
                .into_iter()
                .find(|strategy| strategy.name() == s)
                .ok_or_else(|| UnknownStrategy(s.to_owned())),
        }
    }
}

/// Bounds of a rolling deploy (a semaphore on the extra and the missing
/// instances or targets); never both 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    /// Instances or targets allowed above the wanted number, 0 to 1024.
    pub max_surge: u32,
    /// Ready ones that may be missing below the wanted number, 0 to 1024.
    pub max_unavailable: u32,
}

/// `[service.NAME.blue_green]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueGreen {
    /// Paths (with optional query, starting with `/`, unique) that every
    /// new instance or target must answer with 2xx to a GET before the
    /// switch; may be empty.
    pub smoke: Vec<String>,
    /// How long the old set is kept after the switch; may be zero.
    pub rollback_window: Duration,
}

/// `[service.NAME.canary]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// Percent of the traffic on the new version per step: strictly
    /// increasing, each 1 to 100, the last 100.
    pub steps: Vec<u8>,
    /// Observation time of each step but the last; non-zero.
    pub pause: Duration,
    /// Highest failed share of the canary's requests in a step, 0 to 1
    /// (finite).
    pub max_error_rate: f64,
    /// Highest canary p99 / stable p99 in a step; finite, greater than 0.
    pub max_p99_ratio: f64,
    /// Latencies up to this count as equal in the p99 comparison (both
    /// sides are raised to it); may be zero.
    pub p99_floor: Duration,
    /// Requests the canary serves in a step before it is judged, at least 1.
    pub min_requests: u32,
}
