//! Rules of `[[route]]`: references, host, path, methods, headers.

use super::{BASE, MINIMAL, error, errors, ok};
use crate::types::{HostMatch, Method, PathMatch, Upstream};

/// `BASE` with extra lines in its route (they start at line 10).
fn route(lines: &str) -> String {
    format!("{BASE}{lines}\n")
}

#[test]
fn unknown_pool_and_listener() {
    let source = BASE.replace("pool = \"app\"", "pool = \"ap\"");
    assert_eq!(
        error(&source),
        "9:8: unknown pool \"ap\"; defined pools: app"
    );
    let e = error("[[listener]]\naddress = \"127.0.0.1:1\"\n[[route]]\npool = \"x\"\n");
    assert_eq!(e, "4:8: unknown pool \"x\": no [pool.NAME] is defined");
    let all = errors(&route("listeners = [\"htp\", \"http\", \"http\"]"));
    assert_eq!(
        all,
        [
            "10:14: unknown listener \"htp\"; defined listeners: http",
            "10:29: listener \"http\" is listed twice",
        ]
    );
    let e = error(&route("listeners = []"));
    assert_eq!(
        e,
        "10:13: `listeners` is empty, so the route would never match; omit it to use every listener"
    );
}

/// `BASE` plus a service `web` (line 11) and a route (line 13) with these
/// lines (from line 14).
fn service_route(lines: &str) -> String {
    format!("{BASE}\n[service.web]\ntargets = [\"h:1\"]\n[[route]]\n{lines}\n")
}

#[test]
fn routes_to_services() {
    let config = ok(&service_route("service = \"web\""));
    assert_eq!(config.routes[0].upstream, Upstream::Pool("app".into()));
    assert_eq!(config.routes[1].upstream, Upstream::Service("web".into()));
    assert_eq!(config.routes[1].upstream.name(), "web");
    assert_eq!(
        error(&service_route("service = \"wbe\"")),
        "14:11: unknown service \"wbe\"; defined services: web"
    );
    assert_eq!(
        error(&BASE.replace("pool = \"app\"", "service = \"app\"")),
        "9:11: unknown service \"app\"; there is a pool of that name: write `pool = \"app\"`"
    );
    assert_eq!(
        error(&service_route("pool = \"web\"")),
        "14:8: unknown pool \"web\"; there is a service of that name: write `service = \"web\"`"
    );
    let e = error(&format!("{MINIMAL}[[route]]\nservice = \"web\"\n"));
    assert_eq!(
        e,
        "4:11: unknown service \"web\": no [service.NAME] is defined"
    );
}

#[test]
fn a_reference_to_a_broken_service_is_not_reported_twice() {
    let source = service_route("service = \"web\"").replace("targets = [\"h:1\"]", "targets = []");
    assert_eq!(
        error(&source),
        "12:11: service \"web\" has no targets; an external service needs at least one"
    );
}

#[test]
fn a_reference_to_a_broken_pool_is_not_reported_twice() {
    let source = BASE.replace(
        "members = [{ address = \"127.0.0.1:9001\" }]",
        "members = []",
    );
    assert_eq!(error(&source), "6:11: pool \"app\" has no members");
}

#[test]
fn duplicate_and_invalid_route_names() {
    let source = format!("{BASE}name = \"a\"\n[[route]]\nname = \"a\"\npool = \"app\"\n");
    assert_eq!(
        error(&source),
        "12:8: duplicate route name \"a\" (first used at line 10)"
    );
    let e = error(&route("name = \"\""));
    assert_eq!(
        e,
        "10:8: invalid route name \"\": use 1 to 128 letters, digits, '-', '_' or '.'"
    );
}

#[test]
fn hosts_exact_and_wildcard() {
    let config = ok(&route("host = \"*.Example.COM\""));
    let host = config.routes[0].host.clone().unwrap();
    assert_eq!(host, HostMatch::Wildcard(".example.com".into()));
    assert!(host.matches("a.example.com") && host.matches("a.b.example.com"));
    assert!(!host.matches("example.com") && !host.matches("aexample.com"));
    assert_eq!(
        ok(&route("host = \"[::1]\"")).routes[0].host,
        Some(HostMatch::Exact("[::1]".into()))
    );
    for (bad, why) in [
        (
            "a.*.com",
            "`*` is only allowed as the whole first label, like *.example.com",
        ),
        (
            "*.",
            "expected a host name like api.example.com or a wildcard like *.example.com",
        ),
        (
            "*",
            "`*` is only allowed as the whole first label, like *.example.com",
        ),
        (
            "example.com:8080",
            "a host condition has no port (the Host header is compared without it)",
        ),
        ("::1", "write an IPv6 address in brackets, like [::1]"),
        (
            "a..b",
            "expected a host name like api.example.com or a wildcard like *.example.com",
        ),
    ] {
        assert_eq!(
            error(&route(&format!("host = \"{bad}\""))),
            format!("10:8: invalid `host` \"{bad}\": {why}")
        );
    }
}

#[test]
fn at_most_one_path_condition() {
    let all = errors(&route(
        "path_prefix = \"/a\"\npath = \"/b\"\npath_regex = \"c\"",
    ));
    assert_eq!(
        all,
        [
            "11:8: `path` conflicts with `path_prefix`: a route has at most one of `path_prefix`, `path` and `path_regex`",
            "12:14: `path_regex` conflicts with `path_prefix`: a route has at most one of `path_prefix`, `path` and `path_regex`",
        ]
    );
}

#[test]
fn path_prefix_starts_with_a_slash() {
    assert_eq!(
        error(&route("path_prefix = \"api/\"")),
        "10:15: invalid `path_prefix` \"api/\": must start with \"/\""
    );
}

#[test]
fn path_patterns() {
    for good in [
        "/",
        "/users/{id}",
        "/users/{id}/files/{*rest}",
        "/{*all}",
        "/a/{_b1}/c",
    ] {
        let config = ok(&route(&format!("path = \"{good}\"")));
        assert_eq!(config.routes[0].path, Some(PathMatch::Pattern(good.into())));
    }
    for (bad, why) in [
        ("users/{id}", "must start with \"/\""),
        ("/users/{id", "unbalanced braces in segment \"{id\""),
        ("/users/id}", "unbalanced braces in segment \"id}\""),
        (
            "/users/{{id}}",
            "a parameter must be a whole segment, like /users/{id}; found \"{{id}}\"",
        ),
        (
            "/files/{name}.txt",
            "a parameter must be a whole segment, like /users/{id}; found \"{name}.txt\"",
        ),
        ("/a/{id}/b/{id}", "duplicate parameter name \"id\""),
        ("/{*rest}/more", "`{*rest}` must be the last segment"),
        (
            "/{}",
            "invalid parameter name \"\": use letters, digits and '_', not starting with a digit",
        ),
        (
            "/{1x}",
            "invalid parameter name \"1x\": use letters, digits and '_', not starting with a digit",
        ),
    ] {
        let e = error(&route(&format!("path = \"{bad}\"")));
        assert_eq!(e, format!("10:8: invalid `path` \"{bad}\": {why}"));
    }
}

#[test]
fn path_regex_is_compiled() {
    let config = ok(&route("path_regex = '^/v[0-9]+/'"));
    assert_eq!(
        config.routes[0].path,
        Some(PathMatch::Regex("^/v[0-9]+/".into()))
    );
    let e = error(&route("path_regex = '^/v(1|2'"));
    assert_eq!(e, "10:14: invalid `path_regex` \"^/v(1|2\": unclosed group");
}

#[test]
fn methods_are_upper_case_tokens() {
    let config = ok(&route("methods = [\"GET\", \"PROPFIND\"]"));
    assert_eq!(
        config.routes[0].methods,
        [Method::GET, Method::from_bytes(b"PROPFIND").unwrap()]
    );
    let all = errors(&route(
        "methods = [\"get\", \"G T\", \"\", \"POST\", \"POST\"]",
    ));
    assert_eq!(
        all,
        [
            "10:12: invalid method \"get\": methods are upper case, like \"GET\"",
            "10:19: invalid method \"G T\": expected a token like \"GET\" or \"POST\"",
            "10:26: invalid method \"\": expected a token like \"GET\" or \"POST\"",
            "10:38: method \"POST\" is listed twice",
        ]
    );
    let e = error(&route("methods = []"));
    assert_eq!(
        e,
        "10:11: `methods` is empty, so the route would never match; omit it to match any method"
    );
}

#[test]
fn header_conditions() {
    let config = ok(&route(
        "headers = { \"X-Canary\" = \"1\", accept = \"text/html\" }",
    ));
    let names: Vec<&str> = config.routes[0]
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["accept", "x-canary"], "lower-cased and sorted");
    let all = errors(&route(
        "headers = { \"X-Canary\" = \"1\", \"x-canary\" = \"2\", \"bad name\" = \"x\", ok = \"\\u0007\" }",
    ));
    assert_eq!(
        all,
        [
            "10:31: header \"x-canary\" is given twice (as \"X-Canary\"; names are case-insensitive)",
            "10:49: invalid header name \"bad name\"",
            "10:72: invalid value \"\\u{7}\" for header \"ok\"",
        ]
    );
}
