//! The schema tables of services: `[service.NAME]` (what `baton deploy`
//! replaces, supervised or external) and the settings of its deploy
//! strategies, `blue_green` and `canary`. A service's `health` and `passive`
//! sections are the pools' (`upstream`), and so are its forwarding keys.

use super::IfMissing::{Default, Either, Unset};
use super::tls::UPSTREAM_TLS;
use super::upstream::{
    BALANCE, BODY_TIMEOUT, CONNECT_TIMEOUT, HEADER_TIMEOUT, HEALTH, IDLE_TIMEOUT,
    MAX_CONNECTIONS_PER_MEMBER, PASSIVE, QUEUE_LENGTH, QUEUE_TIMEOUT, RETRY_NON_IDEMPOTENT,
    RETRY_SERVER_ERRORS, TOTAL_TIMEOUT, UPSTREAM_HOST,
};
use super::{Section, Type, key};

pub(crate) static SERVICE: Section = Section {
    place: "in [*]",
    heading: "`[service.NAME]`",
    doc: "What `baton deploy` replaces. A *supervised* service (`command`) is run by baton, which starts, checks, restarts and replaces its instances. An *external* service (`targets`) is run by something else; deploying it switches the traffic to new targets once they are healthy and drains the old ones. Routes send requests to a service with `service = \"NAME\"`; `NAME` (letters, digits, `-`, `_`, `.`) is unique among pools and services. The proxy forwards to a service's instances or targets as it does to a pool's members: `balance` to `upstream_host` mean the same as in `[pool.NAME]` and have the same defaults. Keys marked *supervised only* are errors in an external service.",
    keys: &[
        key(
            "command",
            Type::Strings,
            Either("targets"),
            "A supervised service: the program and its arguments, not empty. `{port}` and `{version}` are replaced in every element (see *Services*). A program without `/` is looked up on `PATH`; a relative path is relative to the directory baton runs in.",
        ),
        key(
            "targets",
            Type::Strings,
            Either("command"),
            "An external service: its servers, `IP:PORT` or `HOST:PORT` like pool members; not empty, unique. A deploy names the new ones (`baton deploy NAME --version V --target ADDR…`).",
        ),
        key(
            "version",
            Type::String,
            Unset("required with `command`, not allowed with `targets`"),
            "The version a supervised service runs the first time baton starts it; afterwards the state directory remembers the version last deployed. Changed in the file and reloaded, it is deployed; left as it is, the version serving stays (see Reloading services). 1 to 64 letters, digits, `.`, `_`, `-`, starting with a letter or digit. An external service has no version in the file: each deploy names one.",
        ),
        key(
            "instances",
            Type::Integer,
            Default("1"),
            "Instances to run, 1 to 1024. *Supervised only.*",
        ),
        key(
            "env",
            Type::StringMap,
            Unset("nothing added to baton's environment"),
            "Environment variables added for the instances, which otherwise inherit baton's; values may use `{port}` and `{version}`. `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` and `NOTIFY_SOCKET` are baton's to set. *Supervised only.*",
        ),
        key(
            "cwd",
            Type::String,
            Unset("the directory baton runs in"),
            "Working directory of the instances; may use `{port}` and `{version}` (`releases/{version}`). *Supervised only.*",
        ),
        key(
            "socket",
            Type::String,
            Default("inherit"),
            "`inherit`: baton binds `127.0.0.1:0` (with `[cluster]`, the `advertise` address when it is an IP address, else every address) for each instance and passes the listening socket as fd 3 (`LISTEN_FDS=1`, systemd's protocol), so connections queue even before the app accepts; `{port}` is its port. `port`: baton picks a free port, `{port}` is that port and the app binds it itself, so `{port}` must appear in `command` or `env`. *Supervised only.*",
        ),
        key(
            "restart",
            Type::String,
            Default("always"),
            "What happens when an instance exits without being asked to: `always` restarts it, `on-failure` only if it failed (non-zero status or killed by a signal), `never` leaves it stopped. Restarts back off exponentially. *Supervised only.*",
        ),
        key(
            "ready_timeout",
            Type::Duration,
            Default("30s"),
            "Time a new instance or target has to become ready (see `health`); past it the deploy fails and rolls back.",
        ),
        key(
            "drain_timeout",
            Type::Duration,
            Default("30s"),
            "Deadline for an instance or target that leaves: it gets no new requests, those in flight may finish until then, and it is let go as soon as none is left (a supervised instance gets SIGTERM, and SIGKILL at the deadline). `0s` stops at once.",
        ),
        key(
            "strategy",
            Type::String,
            Default("rolling"),
            "How `baton deploy` replaces the running version unless `--strategy` says otherwise: `rolling` (see `max_surge` and `max_unavailable`), `blue_green` (see `[service.NAME.blue_green]`) or `canary` (see `[service.NAME.canary]`).",
        ),
        key(
            "max_surge",
            Type::Integer,
            Default("1"),
            "Rolling: instances or targets allowed above the wanted number while a deploy replaces them, 0 to 1024.",
        ),
        key(
            "max_unavailable",
            Type::Integer,
            Default("0"),
            "Rolling: ready instances or targets that may be missing below the wanted number, 0 to 1024. With 0, an old one is stopped only after its replacement is ready. `max_surge` and `max_unavailable` are not both 0.",
        ),
        key(
            "deploy_timeout",
            Type::Duration,
            Default("10m"),
            "A deploy that has not completed after this long fails and rolls back: it bounds waiting for the new instances or targets, the smoke checks and every canary step (a rolling deploy that times out rolls the old version out again over the new instances that were ready).",
        ),
        BALANCE,
        MAX_CONNECTIONS_PER_MEMBER,
        QUEUE_LENGTH,
        QUEUE_TIMEOUT,
        CONNECT_TIMEOUT,
        HEADER_TIMEOUT,
        BODY_TIMEOUT,
        IDLE_TIMEOUT,
        TOTAL_TIMEOUT,
        RETRY_NON_IDEMPOTENT,
        RETRY_SERVER_ERRORS,
        UPSTREAM_HOST,
        key(
            "tls",
            Type::Table(&UPSTREAM_TLS),
            Unset("plain HTTP"),
            "HTTPS to the instances or targets, see `[service.NAME.tls]`.",
        ),
        key(
            "health",
            Type::Table(&HEALTH),
            Unset("no active checks"),
            "Active health checks of every instance or target, see `[service.NAME.health]`; they also decide when a new one is ready. Without them a supervised instance is ready when it reports `READY=1` (sd_notify, as under `baton exec`) and an external target when it accepts a TCP connection.",
        ),
        key(
            "passive",
            Type::Table(&PASSIVE),
            Unset("no passive ejection"),
            "Passive ejection, see `[service.NAME.passive]`.",
        ),
        key(
            "blue_green",
            Type::Table(&BLUE_GREEN),
            Unset("all defaults"),
            "Settings of the blue-green strategy, see `[service.NAME.blue_green]`.",
        ),
        key(
            "canary",
            Type::Table(&CANARY),
            Unset("all defaults"),
            "Settings of the canary strategy, see `[service.NAME.canary]`.",
        ),
    ],
};

pub(crate) static BLUE_GREEN: Section = Section {
    place: "in [*.blue_green]",
    heading: "`[service.NAME.blue_green]`",
    doc: "The blue-green strategy starts the whole new set of instances (or takes the new targets) next to the old one, checks it, switches all the traffic to it in one step and keeps the old set for a while, so that a rollback is instant. The section is optional.",
    keys: &[
        key(
            "smoke",
            Type::Strings,
            Default("[]"),
            "Paths requested with GET from every new instance or target directly (not through the routes) once it is ready and before the switch; each must answer 2xx, or the deploy fails and rolls back. Each starts with `/` and may have a query; no two are equal.",
        ),
        key(
            "rollback_window",
            Type::Duration,
            Default("30s"),
            "How long the old set keeps running after the switch, so that a rollback switches back at once; then it is drained and stopped. `0s` drains it right after the switch.",
        ),
    ],
};

pub(crate) static CANARY: Section = Section {
    place: "in [*.canary]",
    heading: "`[service.NAME.canary]`",
    doc: "The canary strategy sends a growing share of the traffic to the new version, step by step. At each step the proxy compares the canary with the stable version on the requests it forwarded; a step that breaches a threshold aborts the deploy and rolls back. The section is optional.",
    keys: &[
        key(
            "steps",
            Type::Integers,
            Default("[10, 50, 100]"),
            "Percent of the traffic on the new version at each step: strictly increasing, each 1 to 100, the last 100 (the switch that completes the deploy).",
        ),
        key(
            "pause",
            Type::Duration,
            Default("30s"),
            "Observation time of each step before the last: the step is judged once this has passed and the canary has served `min_requests`.",
        ),
        key(
            "max_error_rate",
            Type::Number,
            Default("0.01"),
            "Highest share of the canary's requests in a step that may fail (no response, or a 5xx status), 0 to 1.",
        ),
        key(
            "max_p99_ratio",
            Type::Number,
            Default("2.0"),
            "Highest ratio of the canary's p99 latency to the stable version's over the same step, greater than 0: `2.0` allows the canary to be twice as slow.",
        ),
        key(
            "p99_floor",
            Type::Duration,
            Default("5ms"),
            "Latencies up to this count as equal in the p99 comparison: both p99s are raised to it before the ratio is taken, so that a canary at 0.4 ms against a stable version at 0.15 ms (noise on a fast service) is not a breach. `0s` compares the raw values. Mind the sample size: the p99 of 50 requests is their slowest but one, so a service with endpoints that are slow by design (about 1 % of its requests or more) needs a larger `min_requests` or a floor above those latencies.",
        ),
        key(
            "min_requests",
            Type::Integer,
            Default("50"),
            "Requests the canary must have served in a step before the step is judged; the step waits for them (within `deploy_timeout`). At least 1.",
        ),
    ],
};
