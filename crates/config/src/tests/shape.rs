//! Syntax errors, unknown keys, wrong TOML types and missing required keys.

use super::{BASE, MINIMAL, error, errors};
use crate::{ConfigError, load};

#[test]
fn syntax_error_has_a_position() {
    let e = error("[[listener]]\naddress = localhost\n");
    assert_eq!(
        e,
        "2:11: string values must be quoted, expected literal string"
    );
    // toml reads `127.0` as a float and stops at the second dot.
    let e = error("[[listener]]\naddress = 127.0.0.1:8080\n");
    assert_eq!(e, "2:16: invalid float, expected nothing");
}

#[test]
fn several_syntax_errors_are_reported_one_per_line() {
    let source = "[[listener]]\naddress = \"127.0.0.1:8080\"\nname = http\nmax_connections = 1\nmax_connections = 2\n";
    let all = errors(source);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[0].starts_with("3:8: "), "{all:#?}");
    assert_eq!(all[1], "5:1: duplicate key");
}

#[test]
fn unknown_keys_are_listed_with_what_was_expected() {
    let source = "[[listener]]\nadress = \"127.0.0.1:8080\"\n";
    assert_eq!(
        errors(source),
        [
            "2:1: unknown key `adress` in [[listener]] (did you mean `address`?); expected one of: name, address, \
          max_connections, header_read_timeout, max_header_bytes, max_body_bytes, body_read_timeout, body_buffer_bytes, write_timeout, keepalive_timeout, redirect_https, tls"
        ]
    );
    let e = error(&format!("{MINIMAL}[proxy]\ndrain = \"1s\"\n"));
    assert!(
        e.starts_with(
            "4:1: unknown key `drain` in [proxy]; expected one of: workers, drain_timeout,"
        ),
        "{e}"
    );
    let e = error(&format!("listeners = 1\n{MINIMAL}"));
    assert!(e.starts_with("1:1: unknown key `listeners` at the top level (did you mean `listener`?); expected one of: proxy,"), "{e}");
}

#[test]
fn unknown_keys_in_nested_tables_name_the_pool() {
    let source = format!(
        "{BASE}[pool.app.health]\npath = \"/\"\nintervall = \"1s\"\n[pool.app.passive]\nfailures = 1\n"
    );
    let all = errors(&source);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[0].starts_with("12:1: unknown key `intervall` in [pool.app.health] (did you mean `interval`?); expected one of: path,"), "{all:#?}");
    assert!(all[1].starts_with("14:1: unknown key `failures` in [pool.app.passive]; expected one of: consecutive_failures,"), "{all:#?}");
    let e = error(&BASE.replace("\"127.0.0.1:9001\" }", "\"127.0.0.1:9001\", wieght = 2 }"));
    assert_eq!(
        e,
        "6:42: unknown key `wieght` in a member of [pool.app] (did you mean `weight`?); expected one of: address, weight"
    );
}

#[test]
fn wrong_types_point_at_the_value() {
    let source = "[[listener]]\naddress = \"127.0.0.1:8080\"\nmax_connections = \"many\"\n";
    assert_eq!(
        error(source),
        "3:19: `max_connections` in [[listener]] must be an integer, not a string"
    );
    let source = format!("{BASE}retry = 1\n");
    assert!(
        error(&source)
            .starts_with("10:1: unknown key `retry` in [[route]]; expected one of: name,")
    );
    let source = BASE.replace("pool = \"app\"", "pool = \"app\"\nmethods = [\"GET\", 3]");
    assert_eq!(
        error(&source),
        "10:19: `methods` in [[route]] must be an array of strings, but one element is an integer"
    );
    let source = BASE.replace(
        "members = [{ address = \"127.0.0.1:9001\" }]",
        "members = [\"127.0.0.1:9001\"]",
    );
    assert_eq!(
        error(&source),
        "6:12: `members` in [pool.app] must be an array of tables, but one element is a string"
    );
    let source = format!(
        "{MINIMAL}[pool.x]\nmembers = [{{ address = \"h:1\" }}]\nretry_non_idempotent = \"yes\"\n"
    );
    assert_eq!(
        error(&source),
        "5:24: `retry_non_idempotent` in [pool.x] must be a boolean, not a string"
    );
    let e = error(&format!("pool = 3\n{MINIMAL}"));
    assert_eq!(
        e,
        "1:8: `pool` at the top level must be a table of named tables, not an integer"
    );
    let e = error(&format!(
        "{MINIMAL}[pool]\napp = 1\n[[route]]\npool = \"app\"\n"
    ));
    assert_eq!(
        e, "4:7: `[pool.app]` must be a table, not an integer",
        "and the route's pool is not unknown"
    );
    let e = error(&format!(
        "{MINIMAL}max_connections = 99999999999999999999\n"
    ));
    assert_eq!(
        e,
        "3:19: `max_connections` in [[listener]]: 99999999999999999999 is out of range"
    );
    let e = error("listener = { address = \"127.0.0.1:1\" }\n");
    assert_eq!(
        e,
        "1:12: `listener` at the top level must be an array of tables, not a table"
    );
    let e = error(&format!("{MINIMAL}max_body_bytes = 1.5\n"));
    assert_eq!(
        e,
        "3:18: `max_body_bytes` in [[listener]] must be a size (integer bytes or a string like \"64KiB\"), not a float"
    );
}

#[test]
fn a_wrongly_typed_required_key_is_not_also_missing() {
    let e = error("[[listener]]\naddress = 8080\n");
    assert_eq!(
        e,
        "2:11: `address` in [[listener]] must be a string, not an integer"
    );
}

#[test]
fn missing_required_keys_point_at_their_table() {
    let source = BASE.replace("pool = \"app\"", "name = \"r\"");
    assert_eq!(
        error(&source),
        "8:1: missing `pool` or `service` in [[route]]: give exactly one of them"
    );
    let source = BASE.replace(
        "members = [{ address = \"127.0.0.1:9001\" }]",
        "members = [{ weight = 1 }]",
    );
    assert_eq!(
        error(&source),
        "6:12: missing required key `address` in a member of [pool.app]"
    );
    let source = BASE.replace(
        "members = [{ address = \"127.0.0.1:9001\" }]",
        "balance = \"least_requests\"",
    );
    assert_eq!(
        error(&source),
        "5:1: missing `members` or `discover` in [pool.app]: give exactly one of them"
    );
    let source = format!("{BASE}[pool.app.health]\ninterval = \"5s\"\n");
    assert_eq!(
        error(&source),
        "10:1: missing required key `path` in [pool.app.health]"
    );
}

#[test]
fn no_listener_at_all() {
    assert_eq!(
        error(""),
        "1:1: no [[listener]] defined; at least one is required"
    );
    assert_eq!(
        error("[proxy]\n"),
        "1:1: no [[listener]] defined; at least one is required"
    );
    assert_eq!(
        error("# nothing\nlistener = []\n"),
        "2:12: no [[listener]] defined; at least one is required"
    );
}

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let dir = std::env::temp_dir().join(format!("baton-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    assert_eq!(load(&good).unwrap().listeners.len(), 1);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[listener]]\n").unwrap();
    let errors = load(&bad).unwrap_err();
    assert_eq!(errors.0[0].file, bad.display().to_string());
    let rendered = errors.to_string();
    assert!(
        rendered.starts_with(&format!(
            "{}:1:1: error: missing required key",
            bad.display()
        )),
        "{rendered}"
    );
    assert!(rendered.ends_with("\n1 error"), "{rendered}");
    let missing = dir.join("missing.toml");
    let errors = load(&missing).unwrap_err();
    let ConfigError {
        line,
        column,
        message,
        ..
    } = &errors.0[0];
    assert_eq!((*line, *column), (0, 0));
    assert!(
        message.starts_with("could not read the file: "),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn alternatives_neither_or_both() {
    let service = |lines: &str| format!("{MINIMAL}[service.web]\n{lines}\n");
    assert_eq!(
        error(&service("version = \"v1\"")),
        "3:1: missing `command` or `targets` in [service.web]: give exactly one of them"
    );
    assert_eq!(
        error(&service(
            "targets = [\"h:1\"]\nversion = \"v1\"\ncommand = [\"app\"]"
        )),
        "6:11: `command` conflicts with `targets` in [service.web]: give exactly one of them"
    );
    assert_eq!(
        errors(&service(
            "command = [\"app\", \"{prt}\"]\ntargets = [\"h\"]\ninstances = 2"
        )),
        [
            "4:19: invalid `command` element \"{prt}\": unknown placeholder {prt}: only {port} and {version} are replaced (write {{ and }} for literal braces)",
            "5:11: `targets` conflicts with `command` in [service.web]: give exactly one of them",
            "5:12: invalid target \"h\": missing port; expected HOST:PORT or IP:PORT, like 127.0.0.1:9001 or app.internal:8080",
        ],
        "both values are still checked, but not what their kinds allow"
    );
    let route =
        |lines: &str| format!("{BASE}[service.web]\ntargets = [\"h:1\"]\n[[route]]\n{lines}\n");
    assert_eq!(
        error(&route("service = \"web\"\npool = \"app\"")),
        "14:8: `pool` conflicts with `service` in [[route]]: give exactly one of them"
    );
    assert_eq!(
        error(&route("name = \"r\"")),
        "12:1: missing `pool` or `service` in [[route]]: give exactly one of them"
    );
}

#[test]
fn a_misspelt_or_mistyped_alternative_is_not_also_missing() {
    let service = |lines: &str| format!("{MINIMAL}[service.web]\n{lines}\n");
    let e = error(&service("comand = [\"app\"]\nversion = \"v1\""));
    assert!(
        e.starts_with("4:1: unknown key `comand` in [service.web] (did you mean `command`?); expected one of: command, targets, version,"),
        "{e}"
    );
    assert_eq!(
        error(&service(
            "command = \"app --port {port}\"\nversion = \"v1\""
        )),
        "4:11: `command` in [service.web] must be an array of strings, not a string"
    );
    assert_eq!(
        error(&BASE.replace("pool = \"app\"", "pool = 1")),
        "9:8: `pool` in [[route]] must be a string, not an integer"
    );
}

#[test]
fn service_sections_are_named_in_messages() {
    let source = format!(
        "{MINIMAL}[service.web]\ntargets = [\"h:1\"]\n[service.web.health]\npath = \"/\"\nintervall = \"1s\"\n[service.web.canary]\nsteps = [10, \"50\", 100]\nmax_error_rate = \"1%\"\n[service.web.blue_green]\nsmoke = \"/\"\npause = \"1s\"\n"
    );
    let all = errors(&source);
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(
        all[0].starts_with(
            "7:1: unknown key `intervall` in [service.web.health] (did you mean `interval`?)"
        ),
        "{all:#?}"
    );
    assert_eq!(
        all[1..],
        [
            "9:14: `steps` in [service.web.canary] must be an array of integers, but one element is a string",
            "10:18: `max_error_rate` in [service.web.canary] must be a number, not a string",
            "12:9: `smoke` in [service.web.blue_green] must be an array of strings, not a string",
            "13:1: unknown key `pause` in [service.web.blue_green]; expected one of: smoke, rollback_window",
        ]
    );
    let e = error(&format!(
        "{MINIMAL}[service.web]\ntargets = [\"h:1\"]\n[service.web.canary]\nsteps = [10, 99999999999999999999]\n"
    ));
    assert_eq!(
        e,
        "6:14: `steps` in [service.web.canary] must be an array of integers, but one element is an integer out of range"
    );
    let e = error(&format!("{MINIMAL}[service]\nweb = \"app\"\n"));
    assert_eq!(e, "4:7: `[service.web]` must be a table, not a string");
}
