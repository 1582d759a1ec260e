//! The schema tables of the upstream side: `[pool.NAME]`, its members, the
//! forwarding keys a pool shares with a service, and the `health` and
//! `passive` sections that pools and services both have (their `tls`
//! section is in `tls`).

use super::IfMissing::{Default, Either, Required, Unset};
use super::tls::UPSTREAM_TLS;
use super::{Key, Section, Type, key};

pub(crate) static POOL: Section = Section {
    place: "in [*]",
    heading: "`[pool.NAME]`",
    doc: "A set of upstream servers that routes send requests to. `NAME` is chosen freely (letters, digits, `-`, `_`, `.`) and is unique among pools and services.",
    keys: &[
        BALANCE,
        key(
            "members",
            Type::Tables(&MEMBER),
            Either("discover"),
            "The upstream servers, at least one; see *members*.",
        ),
        key(
            "discover",
            Type::String,
            Either("members"),
            "Take the members from the cluster registry instead (needs `[cluster]`): the ready instances of this service on every node, each with weight 1, as registered in etcd (`docs/cluster.md`; by baton nodes or by any program). The pool follows the registry by watching it; if etcd cannot be reached, it keeps the last members it read (never none because of the outage) and `baton status` says so. A service name: 1 to 128 letters, digits, `-`, `_` or `.` (not `.` or `..`). Health checks, passive ejection and retries apply as to static members.",
        ),
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
            "HTTPS to the members, see `[pool.NAME.tls]`.",
        ),
        key(
            "health",
            Type::Table(&HEALTH),
            Unset("no active checks: members are healthy unless ejected"),
            "Active health checks, see `[pool.NAME.health]`.",
        ),
        key(
            "passive",
            Type::Table(&PASSIVE),
            Unset("no passive ejection"),
            "Passive ejection, see `[pool.NAME.passive]`.",
        ),
    ],
};

// How the proxy forwards requests to the members of a pool, or to the
// instances or targets of a service: the same keys, defaults and docs in
// `[pool.NAME]` and `[service.NAME]`, validated by the same code.

pub(super) const BALANCE: Key = key(
    "balance",
    Type::String,
    Default("weighted_round_robin"),
    "`weighted_round_robin` (smooth weighted round robin, as nginx does) or `least_requests` (power of two choices: of two members picked at random, the one with fewer requests in flight).",
);

pub(super) const MAX_CONNECTIONS_PER_MEMBER: Key = key(
    "max_connections_per_member",
    Type::Integer,
    Default("256"),
    "Requests in flight to one member at most (WebSocket upgrades until the member answers), across reloads; each holds one upstream connection. A request that finds every available member at this limit waits in the pool's queue (`queue_length`, `queue_timeout`) instead of failing. It protects the app from more concurrency than it is built for; nginx and HAProxy have no such limit by default (`max_conns`, server `maxconn`), so raise it if the app handles more at once. 1 to 4294967295.",
);

pub(super) const QUEUE_LENGTH: Key = key(
    "queue_length",
    Type::Integer,
    Default("10000"),
    "Requests waiting at once for a member's connection, when every available member is at `max_connections_per_member`. They are served in arrival order as connections free up (a request whose client hangs up leaves the queue); one more is refused at once with 503, `Retry-After: 1` and `upstream queue full`. The default is the default `max_connections` of a listener, so that no HTTP/1.1 client a listener accepts is refused for lack of room. 0 to 1000000; 0 refuses at once every request that finds the members full.",
);

pub(super) const QUEUE_TIMEOUT: Key = key(
    "queue_timeout",
    Type::Duration,
    Default("30s"),
    "The longest a request waits in the queue for a member's connection; then it gets 503, `Retry-After: 1` and `timed out waiting for a free upstream connection` (as HAProxy's `timeout queue`). Refusals are counted and logged (at most one line a second per pool). When no member is available at all, a request does not wait: it gets 503 `no healthy upstream` at once.",
);

pub(super) const CONNECT_TIMEOUT: Key = key(
    "connect_timeout",
    Type::Duration,
    Default("2s"),
    "Time allowed to connect to a member; on expiry the request is retried on another member (it was never sent).",
);

pub(super) const HEADER_TIMEOUT: Key = key(
    "header_timeout",
    Type::Duration,
    Default("30s"),
    "Time from the request being sent to the response headers arriving.",
);

pub(super) const BODY_TIMEOUT: Key = key(
    "body_timeout",
    Type::Duration,
    Default("60s"),
    "Longest wait for the next bytes of a member's response body (as nginx's `proxy_read_timeout`); past it the response is cut off and counts as the member's failure. Not for an event stream (`text/event-stream`, whose events may be far apart), nor while the request's own body is still being sent (the member may be waiting for it).",
);

pub(super) const IDLE_TIMEOUT: Key = key(
    "idle_timeout",
    Type::Duration,
    Default("60s"),
    "A pooled idle connection to a member is closed after this long. Keep it below the member's own keep-alive timeout.",
);

pub(super) const TOTAL_TIMEOUT: Key = key(
    "total_timeout",
    Type::Duration,
    Unset("no limit"),
    "Time allowed for the whole exchange, from receiving the request to the end of the response body.",
);

pub(super) const RETRY_NON_IDEMPOTENT: Key = key(
    "retry_non_idempotent",
    Type::Bool,
    Default("false"),
    "A request that was never sent is always retried on another member. An idempotent one (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) without a body is also retried after a reset before the response began, each time on a member not tried yet (up to 4 retries): a host that dies takes all its members at once. Others (POST, PATCH) are replayed in that case only if this is `true`.",
);

pub(super) const RETRY_SERVER_ERRORS: Key = key(
    "retry_server_errors",
    Type::Bool,
    Default("false"),
    "When `true`, a 5xx response from a member to a request without a body and with an idempotent method (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) is not passed on if another available member has not been tried for this request yet: the response is dropped and the request is sent to that member, and so on while members remain (at most 4 retries, the same bound as for unreachable members). The last answer is returned even if it is a 5xx too. Requests with a body, and POST, PATCH or any other non-idempotent method, are never retried (`retry_non_idempotent` does not change that). The 5xx still counts as that member's failure, for passive ejection and in the per-member measurements that judge a canary: a failing canary is caught while clients see no error. As nginx's `proxy_next_upstream http_500 http_502 http_503 http_504`.",
);

pub(super) const UPSTREAM_HOST: Key = key(
    "upstream_host",
    Type::String,
    Default("preserve"),
    "The `Host` sent upstream: `preserve` (the client's), `member` (the member's address as written) or any other string, sent as is.",
);

pub(crate) static MEMBER: Section = Section {
    place: "in a member of [*]",
    heading: "*members* (in `[pool.NAME]`)",
    doc: "Each member is an inline table, `{ address = \"127.0.0.1:9001\", weight = 3 }`. Addresses are not resolved when the file is read.",
    keys: &[
        key(
            "address",
            Type::String,
            Required,
            "`IP:PORT` or `HOST:PORT` (`[::1]:9001`, `app.internal:8080`); unique within the pool.",
        ),
        key(
            "weight",
            Type::Integer,
            Default("1"),
            "Relative share of requests, 0 to 1000000. 0 drains the member: no new requests. A pool whose weights are all 0 answers 503.",
        ),
    ],
};

pub(crate) static HEALTH: Section = Section {
    place: "in [*.health]",
    heading: "`[pool.NAME.health]` and `[service.NAME.health]`",
    doc: "Active HTTP checks of every member of a pool, or every instance or target of a service. A member changes state only after several checks in a row agree, never on a single probe. During a deploy, a new instance or target counts as ready once it has passed `healthy_threshold` checks in a row, `start_interval` apart.",
    keys: &[
        key(
            "path",
            Type::String,
            Required,
            "Path (and optional query) requested with GET; starts with `/`.",
        ),
        key(
            "interval",
            Type::Duration,
            Default("2s"),
            "Time between two checks of a member.",
        ),
        key(
            "timeout",
            Type::Duration,
            Default("1s"),
            "A check without a response within this time fails; must be shorter than `interval`.",
        ),
        key(
            "start_interval",
            Type::Duration,
            Unset("a tenth of `interval`, at least 10ms (never more than `interval`)"),
            "Time between two checks of a service's instance or target that has not been found ready yet (a new one in a deploy, or at start): the first check is made at once, the next ones this far apart, until `healthy_threshold` pass in a row; then `interval` applies. At most `interval`. A deploy waits for these checks: the shorter, the sooner a new instance takes traffic. Unused by a pool's members.",
        ),
        key(
            "healthy_threshold",
            Type::Integer,
            Default("2"),
            "Consecutive successes that make an unhealthy member healthy. At least 1.",
        ),
        key(
            "unhealthy_threshold",
            Type::Integer,
            Default("3"),
            "Consecutive failures that make a healthy member unhealthy. At least 1.",
        ),
        key(
            "expect_status",
            Type::Status,
            Default("200-399"),
            "Statuses that count as success: one code (`204`, or `\"204\"`) or an inclusive range (`\"200-299\"`), within 100-599.",
        ),
    ],
};

pub(crate) static PASSIVE: Section = Section {
    place: "in [*.passive]",
    heading: "`[pool.NAME.passive]` and `[service.NAME.passive]`",
    doc: "Ejection of a member on failures seen in real traffic. An ejected member gets no requests until its ejection time is over.",
    keys: &[
        key(
            "consecutive_failures",
            Type::Integer,
            Default("5"),
            "Failures in a row (connect errors, resets, timeouts, 5xx responses) that eject a member. At least 1. A client's fault (a malformed or abandoned request body, a client that hangs up) never counts.",
        ),
        key(
            "ejection_time",
            Type::Duration,
            Default("10s"),
            "Length of the first ejection; each further ejection in a row doubles it.",
        ),
        key(
            "max_ejection_time",
            Type::Duration,
            Default("5m"),
            "Cap on the doubled ejection time; at least `ejection_time`.",
        ),
    ],
};
