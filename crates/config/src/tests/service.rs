//! Rules of `[service.NAME]`: supervised and external services, the keys
//! each kind accepts, templates, versions, names shared with pools.

use super::{MINIMAL, error, errors, ok};
use crate::types::{Balance, Runner, SocketMode, Supervised, UpstreamHost};

/// A service `web` (line 3) with these lines (from line 4).
fn service(lines: &str) -> String {
    format!("{MINIMAL}[service.web]\n{lines}\n")
}

/// A supervised service `web` with these extra lines (from line 6).
fn supervised(lines: &str) -> String {
    service(&format!(
        "command = [\"app\", \"--port\", \"{{port}}\"]\nversion = \"v1\"\n{lines}"
    ))
}

/// An external service `web` with these extra lines (from line 5).
fn external(lines: &str) -> String {
    service(&format!("targets = [\"127.0.0.1:9001\"]\n{lines}"))
}

fn runner(source: &str) -> Supervised {
    match ok(source).services["web"].runner.clone() {
        Runner::Supervised(s) => s,
        other => panic!("expected a supervised service, got {other:?}"),
    }
}

#[test]
fn command_must_name_a_program() {
    assert_eq!(
        error(&service("command = []\nversion = \"v1\"")),
        "4:11: `command` is empty: give the program and its arguments, like [\"bin/app\", \"--port\", \"{port}\"]"
    );
    assert_eq!(
        error(&service("command = [\"\", \"x\"]\nversion = \"v1\"")),
        "4:12: the program (the first element of `command`) is empty"
    );
}

#[test]
fn command_placeholders() {
    let all = errors(&service(
        "command = [\"app\", \"--port={prt}\", \"{port\", \"x}\", \"ok={{}}\"]\nversion = \"v1\"",
    ));
    assert_eq!(
        all,
        [
            "4:19: invalid `command` element \"--port={prt}\": unknown placeholder {prt}: only {port} and {version} are replaced (write {{ and }} for literal braces)",
            "4:35: invalid `command` element \"{port\": unbalanced braces: the \"{\" at character 1 is never closed (write {{ for a literal brace)",
            "4:44: invalid `command` element \"x}\": unbalanced braces: the \"}\" at character 2 closes nothing (write }} for a literal brace)",
        ]
    );
    let e = error(&service("command = [\"a\\u0000b\"]\nversion = \"v1\""));
    assert_eq!(
        e,
        "4:12: invalid `command` element \"a\\0b\": a NUL character at character 2 cannot be passed to a program"
    );
}

#[test]
fn env_names_and_values() {
    let s = runner(&supervised(
        "env = { B = \"{port}-{version}\", A = \"{{literal}}\" }",
    ));
    let env: Vec<(&str, &str)> = s
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("B", "{port}-{version}"), ("A", "{{literal}}")],
        "file order"
    );
    let all = errors(&supervised(
        "env = { \"\" = \"x\", \"A=B\" = \"x\", LISTEN_FDS = \"2\", NOTIFY_SOCKET = \"/x\", OK = \"{host}\" }",
    ));
    assert_eq!(
        all,
        [
            "6:9: invalid environment variable name \"\": not empty, without '=' or NUL",
            "6:19: invalid environment variable name \"A=B\": not empty, without '=' or NUL",
            "6:32: `LISTEN_FDS` is set by baton for every instance (the socket and readiness protocols) and cannot be given in `env`",
            "6:50: `NOTIFY_SOCKET` is set by baton for every instance (the socket and readiness protocols) and cannot be given in `env`",
            "6:77: invalid `env` value \"{host}\" for OK: unknown placeholder {host}: only {port} and {version} are replaced (write {{ and }} for literal braces)",
        ]
    );
}

#[test]
fn cwd() {
    let s = runner(&supervised("cwd = \"releases/{version}\""));
    let v2 = "v2".parse().unwrap();
    assert_eq!(s.cwd.unwrap().render(1, &v2), "releases/v2");
    assert_eq!(
        error(&supervised("cwd = \"\"")),
        "6:7: `cwd` is empty; omit it to run in the directory baton runs in"
    );
    assert_eq!(
        error(&supervised("cwd = \"{dir}\"")),
        "6:7: invalid `cwd` \"{dir}\": unknown placeholder {dir}: only {port} and {version} are replaced (write {{ and }} for literal braces)"
    );
}

#[test]
fn version_is_required_and_checked_for_supervised_services() {
    assert_eq!(
        error(&service("command = [\"app\"]")),
        "3:1: missing key `version` in [service.web]: a supervised service (with `command`) starts at a version, like version = \"v1\""
    );
    assert_eq!(
        error(&service("command = [\"app\"]\nversion = \"-v1\"")),
        "5:11: invalid version \"-v1\": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    );
    assert_eq!(
        runner(&service("command = [\"app\"]\nversion = \"2.4.0-rc.1\""))
            .version
            .as_str(),
        "2.4.0-rc.1"
    );
}

#[test]
fn instances_socket_and_restart() {
    let all = errors(&supervised(
        "instances = 0\nsocket = \"tcp\"\nrestart = \"sometimes\"",
    ));
    assert_eq!(
        all,
        [
            "6:13: `instances` must be between 1 and 1024, not 0",
            "7:10: unknown `socket` \"tcp\"; expected one of: inherit, port",
            "8:11: unknown `restart` \"sometimes\"; expected one of: always, on-failure, never",
        ]
    );
    assert_eq!(
        error(&supervised("instances = 1025")),
        "6:13: `instances` must be between 1 and 1024, not 1025"
    );
    assert_eq!(runner(&supervised("instances = 1024")).instances, 1024);
}

#[test]
fn socket_port_needs_the_port_in_command_or_env() {
    let no_port = "command = [\"app\", \"--port={{port}}\"]\nversion = \"v1\"\nsocket = \"port\"";
    assert_eq!(
        error(&service(no_port)),
        "6:10: with `socket = \"port\"` the app binds the port baton picks, so `{port}` must appear in `command` or `env`"
    );
    let in_env = format!("{no_port}\nenv = {{ PORT = \"{{port}}\" }}");
    assert_eq!(runner(&service(&in_env)).socket, SocketMode::Port);
    assert_eq!(
        runner(&supervised("socket = \"port\"")).socket,
        SocketMode::Port
    );
    let inherit = "command = [\"app\"]\nversion = \"v1\"";
    assert_eq!(
        runner(&service(inherit)).socket,
        SocketMode::Inherit,
        "an inherited socket needs no {{port}}"
    );
}

#[test]
fn supervised_only_keys_are_errors_in_an_external_service() {
    let all = errors(&external(
        "instances = 2\nenv = { A = \"1\" }\ncwd = \"/srv\"\nsocket = \"inherit\"\nrestart = \"never\"\nversion = \"v1\"",
    ));
    let only = |line: usize, column: usize, key: &str| {
        format!(
            "{line}:{column}: `{key}` is only for a supervised service (with `command`); this one is external (with `targets`)"
        )
    };
    assert_eq!(
        all,
        [
            only(5, 13, "instances"),
            only(6, 7, "env"),
            only(7, 7, "cwd"),
            only(8, 10, "socket"),
            only(9, 11, "restart"),
            "10:11: an external service has no `version` in the file: each deploy names the version of its targets (`baton deploy NAME --version V --target ADDR…`)".into(),
        ]
    );
}

#[test]
fn targets() {
    let config = ok(&service(
        "targets = [\"127.0.0.1:9001\", \"[::1]:9002\", \"api.internal:80\"]",
    ));
    let Runner::External(x) = &config.services["web"].runner else {
        panic!("external expected")
    };
    assert_eq!(x.targets[1].host, "::1");
    assert_eq!(
        error(&service("targets = []")),
        "4:11: service \"web\" has no targets; an external service needs at least one"
    );
    let all = errors(&service(
        "targets = [\"localhost\", \"h:1\", \"h:1\", \"http://h:2\"]",
    ));
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[0].starts_with("4:12: invalid target \"localhost\": missing port;"),
        "{all:#?}"
    );
    assert_eq!(all[1], "4:32: duplicate target \"h:1\" in service \"web\"");
    assert!(
        all[2].starts_with(
            "4:39: invalid target \"http://h:2\": write the address without a scheme;"
        ),
        "{all:#?}"
    );
}

#[test]
fn service_names() {
    let e = error(&format!(
        "{MINIMAL}[service.\"my web\"]\ntargets = [\"h:1\"]\n"
    ));
    assert_eq!(
        e,
        "3:10: invalid service name \"my web\": use 1 to 128 letters, digits, '-', '_' or '.'"
    );
}

#[test]
fn pools_and_services_share_their_names() {
    let source = format!(
        "{MINIMAL}[pool.web]\nmembers = [{{ address = \"h:1\" }}]\n\n[service.web]\ntargets = [\"h:2\"]\n"
    );
    assert_eq!(
        error(&source),
        "6:10: service name \"web\" is already used by [pool.web] (line 3); a route names a pool or a service by name alone, so they cannot share one"
    );
    // File order decides which one is reported, not the kind.
    let source = format!(
        "{MINIMAL}[service.web]\ntargets = [\"h:2\"]\n[pool.web]\nmembers = [{{ address = \"h:1\" }}]\n"
    );
    assert_eq!(
        error(&source),
        "5:7: pool name \"web\" is already used by [service.web] (line 3); a route names a pool or a service by name alone, so they cannot share one"
    );
}

#[test]
fn timeouts() {
    let all = errors(&external(
        "ready_timeout = \"0s\"\ndrain_timeout = \"0s\"\ndeploy_timeout = \"soon\"",
    ));
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0], "5:17: `ready_timeout` must be greater than 0");
    assert!(
        all[1].starts_with("7:18: invalid duration \"soon\" for `deploy_timeout`"),
        "{all:#?}"
    );
    let config = ok(&external("drain_timeout = \"0s\""));
    assert!(config.services["web"].drain_timeout.is_zero());
}

#[test]
fn forwarding_keys_follow_the_pool_rules() {
    let config = ok(&external(
        "balance = \"least_requests\"\nupstream_host = \"member\"",
    ));
    let forward = &config.services["web"].forward;
    assert_eq!(forward.balance, Balance::LeastRequests);
    assert_eq!(forward.upstream_host, UpstreamHost::Member);
    assert!(!forward.retry_server_errors, "off by default, as in a pool");
    let config = ok(&external("retry_server_errors = true"));
    assert!(config.services["web"].forward.retry_server_errors);
    assert!(
        config.services["web"]
            .pool(vec![])
            .forward
            .retry_server_errors
    );
    assert_eq!(
        error(&external("retry_server_errors = \"on\"")),
        "5:23: `retry_server_errors` in [service.web] must be a boolean, not a string"
    );
    let all = errors(&external(
        "balance = \"random\"\nmax_connections_per_member = 0\nupstream_host = \"a b\"",
    ));
    assert_eq!(
        all,
        [
            "5:11: unknown `balance` \"random\"; expected one of: weighted_round_robin, least_requests",
            "6:30: `max_connections_per_member` must be between 1 and 4294967295, not 0",
            "7:17: invalid `upstream_host` \"a b\": expected preserve, member or a host such as api.internal:8080",
        ]
    );
}

#[test]
fn health_and_passive_follow_the_pool_rules() {
    let e = error(&external(
        "[service.web.health]\npath = \"/\"\ninterval = \"1s\"\ntimeout = \"2s\"",
    ));
    assert_eq!(
        e,
        "8:11: health check `timeout` (2s) must be shorter than `interval` (1s)"
    );
    let e = error(&external("[service.web.health]\npath = \"ready\""));
    assert_eq!(
        e,
        "6:8: health check `path` \"ready\" must be a path starting with \"/\""
    );
    let e = error(&external(
        "[service.web.passive]\nejection_time = \"1m\"\nmax_ejection_time = \"10s\"",
    ));
    assert_eq!(
        e,
        "7:21: `max_ejection_time` (10s) must be at least `ejection_time` (1m)"
    );
    let e = error(&external("[service.web.health]\ninterval = \"5s\""));
    assert_eq!(
        e,
        "5:1: missing required key `path` in [service.web.health]"
    );
}

#[test]
fn every_service_mistake_is_reported_in_file_order() {
    let source = r#"[[listener]]
address = "127.0.0.1:8080"

[service.api]
targets = ["h:1"]
instances = 2

[service.web]
command = ["app", "{prt}"]
version = "v 1"
strategy = "big_bang"

[service.web.canary]
steps = [10, 50]

[[route]]
service = "wbe"
"#;
    let all = errors(source);
    assert_eq!(all.len(), 6, "{all:#?}");
    assert!(
        all[0].starts_with("6:13: `instances` is only for"),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with("9:19: invalid `command` element \"{prt}\""),
        "{all:#?}"
    );
    assert!(
        all[2].starts_with("10:11: invalid version \"v 1\""),
        "{all:#?}"
    );
    assert_eq!(
        all[3..],
        [
            "11:12: unknown `strategy` \"big_bang\"; expected one of: rolling, blue_green, canary",
            "14:14: the last canary step must be 100 (all the traffic), not 50",
            "17:11: unknown service \"wbe\"; defined services: api, web",
        ]
    );
}
