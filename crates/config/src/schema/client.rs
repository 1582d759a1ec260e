//! The schema tables of the client side: the top level, `[proxy]`,
//! `[access_log]`, `[[listener]]` and `[[route]]`.

use super::IfMissing::{Default, Either, Required, Unset};
use super::admin::ADMIN;
use super::cluster::CLUSTER;
use super::service::SERVICE;
use super::tls::{ACME, LISTENER_TLS};
use super::upstream::POOL;
use super::{Section, Type, key};

pub(crate) static ROOT: Section = Section {
    place: "at the top level",
    heading: "Top level",
    doc: "The file has nine kinds of sections. Only `[[listener]]` is required (at least one).",
    keys: &[
        key(
            "proxy",
            Type::Table(&PROXY),
            Unset("all defaults"),
            "Settings of the proxy process, see `[proxy]`.",
        ),
        key(
            "access_log",
            Type::Table(&ACCESS_LOG),
            Unset("no access log"),
            "The access log, see `[access_log]`.",
        ),
        key(
            "listener",
            Type::Tables(&LISTENER),
            Required,
            "Where clients connect, see `[[listener]]`; at least one.",
        ),
        key(
            "acme",
            Type::Table(&ACME),
            Unset("no certificates from ACME"),
            "Certificates obtained and renewed automatically, see `[acme]`.",
        ),
        key(
            "pool",
            Type::NamedTables(&POOL),
            Unset("no pools"),
            "Upstream pools by name, see `[pool.NAME]`.",
        ),
        key(
            "service",
            Type::NamedTables(&SERVICE),
            Unset("no services"),
            "Services (what `baton deploy` replaces) by name, see `[service.NAME]`.",
        ),
        key(
            "route",
            Type::Tables(&ROUTE),
            Unset("no routes: every request gets 404"),
            "Routes, in file order, see `[[route]]`.",
        ),
        key(
            "cluster",
            Type::Table(&CLUSTER),
            Unset("one machine, no registry"),
            "Several nodes sharing an etcd registry, see `[cluster]`.",
        ),
        key(
            "admin",
            Type::Table(&ADMIN),
            Unset("the control API on the `--control` Unix socket only"),
            "The control API and metrics on TCP with a bearer token, see `[admin]`.",
        ),
    ],
};

pub(crate) static PROXY: Section = Section {
    place: "in [proxy]",
    heading: "`[proxy]`",
    doc: "Settings of the proxy process as a whole. The section is optional.",
    keys: &[
        key(
            "workers",
            Type::Integer,
            Unset("one per core"),
            "Threads serving client connections and the requests they carry. They share the listening sockets and the work (a connection that waits is picked up by whichever thread is free), and see every reload and deploy at the same moment. The default is one per core the process may run on. 1 to 1024; a change takes effect at the next start, not at a reload.",
        ),
        key(
            "drain_timeout",
            Type::Duration,
            Default("30s"),
            "On a graceful stop (SIGTERM), the deadline for requests and streams in flight; baton exits as soon as they are done, and at this deadline at the latest. `0s` stops at once.",
        ),
        key(
            "idle_grace",
            Type::Duration,
            Default("1s"),
            "When draining starts, idle keep-alive connections are closed this long afterwards (not at once), so a client that is reusing one right now does not see a reset. May be `0s`.",
        ),
        key(
            "trusted_proxies",
            Type::Strings,
            Unset("none: forwarded headers from clients are always replaced"),
            "Networks (CIDR, IPv4 or IPv6; a bare address means a single host) whose incoming `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` are kept and extended. From any other peer they are replaced. Host bits must be zero (`10.0.0.0/8`, not `10.1.2.3/8`).",
        ),
        key(
            "request_id_header",
            Type::String,
            Default("x-request-id"),
            "Header carrying the request id: kept if the client sent one, otherwise generated, and passed upstream. Case-insensitive.",
        ),
    ],
};

pub(crate) static ACCESS_LOG: Section = Section {
    place: "in [access_log]",
    heading: "`[access_log]`",
    doc: "One line per request. Without this section there is no access log. A request whose client went away before the response began (mid-upload, or while waiting) is logged with status 499, as nginx does.",
    keys: &[
        key(
            "path",
            Type::String,
            Default("-"),
            "`-` for standard output, otherwise a file path (appended to).",
        ),
        key(
            "format",
            Type::String,
            Default("combined"),
            "`combined` (the Apache/nginx combined format) or `json` (one JSON object per line).",
        ),
    ],
};

pub(crate) static LISTENER: Section = Section {
    place: "in [[listener]]",
    heading: "`[[listener]]`",
    doc: "A socket on which clients connect; HTTP/1.1 and HTTP/2 (prior knowledge) on the same port. Inherited from systemd or `baton exec` when one is passed in, bound otherwise.",
    keys: &[
        key(
            "name",
            Type::String,
            Default("listener-N"),
            "Unique name, used by routes and logs. Letters, digits, `-`, `_`, `.`. The default is `listener-` and the 1-based position in the file.",
        ),
        key(
            "address",
            Type::String,
            Required,
            "`IP:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:80`) or `unix:PATH` (a bare absolute path also works). No two listeners may share an address (port 0 excepted).",
        ),
        key(
            "max_connections",
            Type::Integer,
            Default("10000"),
            "Open client connections at most; further connections wait until one closes. 1 to 4294967295.",
        ),
        key(
            "header_read_timeout",
            Type::Duration,
            Default("10s"),
            "Time allowed to receive a request's headers; a client that is slower (slowloris) gets 408.",
        ),
        key(
            "max_header_bytes",
            Type::Size,
            Default("64KiB"),
            "Largest request head (request line and headers); above it the client gets 431. 1KiB to 1MiB.",
        ),
        key(
            "max_body_bytes",
            Type::Size,
            Default("10MiB"),
            "Largest request body; above it the client gets 413.",
        ),
        key(
            "body_read_timeout",
            Type::Duration,
            Default("60s"),
            "Longest wait for the next bytes of a request body (as nginx's `client_body_timeout`); a client that is slower gets 408 and its connection is closed, never counted against the member.",
        ),
        key(
            "body_buffer_bytes",
            Type::Size,
            Default("16KiB"),
            "A request body is read up to this size before a member is picked: one that fits is read whole first, so that a slow client holds no member's connection while it sends; a larger one streams to the member once this much has arrived. A client's fault while it is read (a body over `max_body_bytes`, malformed, abandoned or too slow) is answered without a member. 0 to 1MiB; 0 picks the member at once.",
        ),
        key(
            "write_timeout",
            Type::Duration,
            Default("60s"),
            "Longest a response waits for the client to take its next bytes (as nginx's `send_timeout`); a client that reads nothing for this long has its connection closed, WebSockets included (on HTTP/2, a stream whose window the client keeps shut is reset alone), and the member's exchange is cancelled, not counted against it. A response waiting for its own data (an event stream between events) is never timed.",
        ),
        key(
            "keepalive_timeout",
            Type::Duration,
            Default("60s"),
            "An idle client connection is closed after this long: HTTP/1 with no request in flight, HTTP/2 with no stream open (with a `GOAWAY`).",
        ),
        key(
            "redirect_https",
            Type::PortOrBool,
            Unset("no redirect: requests are routed"),
            "Makes this a redirecting listener: every request is answered with a redirect to `https://` on this port, 301 for GET and HEAD and 308 for other methods (which keeps the method and body), with the request's host (without its port; `:443` is left out) and its path and query unchanged. An integer port (1 to 65535), `true` for 443, or `false` for no redirect. Only the ACME HTTP-01 challenge (`/.well-known/acme-challenge/`) is still answered, so routes never see this listener's requests. Only on a listener without `tls`.",
        ),
        key(
            "tls",
            Type::Table(&LISTENER_TLS),
            Unset("plain HTTP"),
            "HTTPS on this listener, see `[listener.tls]`.",
        ),
    ],
};

pub(crate) static ROUTE: Section = Section {
    place: "in [[route]]",
    heading: "`[[route]]`",
    doc: "Sends matching requests to a pool or a service. Every condition given must match. Routes keep their file order; how overlapping routes are ranked is the router's precedence (see the router's documentation).",
    keys: &[
        key(
            "name",
            Type::String,
            Unset("unnamed"),
            "Unique name if given, shown in logs. Letters, digits, `-`, `_`, `.`.",
        ),
        key(
            "listeners",
            Type::Strings,
            Unset("all listeners"),
            "Names of the listeners this route applies to; not empty.",
        ),
        key(
            "host",
            Type::String,
            Unset("any host"),
            "Host (without port) to match, case-insensitive: exact (`api.example.com`) or a wildcard `*.example.com`, which matches one or more labels before `.example.com` (`a.example.com`, `a.b.example.com`) but not `example.com` itself.",
        ),
        key(
            "path_prefix",
            Type::String,
            Unset("any path"),
            "Path prefix to match; starts with `/`. At most one of `path_prefix`, `path`, `path_regex`.",
        ),
        key(
            "path",
            Type::String,
            Unset("any path"),
            "Path pattern: literal segments and `{name}` parameters, each a whole segment (`/users/{id}`), plus optionally a final `{*name}` that takes the rest of the path (`/static/{*file}`). Parameter names are unique; without parameters the path matches exactly.",
        ),
        key(
            "path_regex",
            Type::String,
            Unset("any path"),
            "Regular expression (Rust `regex` syntax) searched in the path; unanchored unless you write `^` and `$`.",
        ),
        key(
            "methods",
            Type::Strings,
            Unset("any method"),
            "Methods to match, upper-case (`GET`, `POST`, or an extension method such as `PROPFIND`); not empty.",
        ),
        key(
            "headers",
            Type::StringMap,
            Unset("no header condition"),
            "Request headers that must be present with exactly these values; names are case-insensitive: `headers = { \"x-canary\" = \"1\" }`.",
        ),
        key(
            "pool",
            Type::String,
            Either("service"),
            "Name of the pool that serves the matched requests.",
        ),
        key(
            "service",
            Type::String,
            Either("pool"),
            "Name of the service that serves the matched requests.",
        ),
    ],
};
