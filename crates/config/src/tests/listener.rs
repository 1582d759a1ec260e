//! Rules of `[proxy]`, `[access_log]` and `[[listener]]`.

use super::{MINIMAL, error, errors, ok};
use crate::types::{AccessLogTarget, ListenAddr};

fn with_proxy(lines: &str) -> String {
    format!("{MINIMAL}[proxy]\n{lines}\n")
}

#[test]
fn bad_durations_and_zero_timeouts() {
    let e = error(&with_proxy("drain_timeout = \"2x\""));
    assert!(
        e.starts_with("4:17: invalid duration \"2x\" for `drain_timeout`: "),
        "{e}"
    );
    assert!(e.ends_with("(examples: \"500ms\", \"2s\", \"5m\")"), "{e}");
    assert_eq!(
        ok(&with_proxy("drain_timeout = \"0s\"\nidle_grace = \"0s\""))
            .proxy
            .idle_grace
            .as_secs(),
        0
    );
    let e = error(&format!("{MINIMAL}keepalive_timeout = \"0s\"\n"));
    assert_eq!(e, "3:21: `keepalive_timeout` must be greater than 0");
    let e = error(&format!("{MINIMAL}body_read_timeout = \"0s\"\n"));
    assert_eq!(e, "3:21: `body_read_timeout` must be greater than 0");
    let e = error(&format!("{MINIMAL}write_timeout = \"0s\"\n"));
    assert_eq!(e, "3:17: `write_timeout` must be greater than 0");
}

#[test]
fn workers_are_bounded() {
    use std::num::NonZeroUsize;

    use crate::types::Workers;
    let workers = |n: usize| ok(&with_proxy(&format!("workers = {n}"))).proxy.workers;
    assert_eq!(workers(1), Workers::Exactly(NonZeroUsize::MIN));
    assert_eq!(workers(1024).threads().get(), 1024);
    assert_eq!(ok(MINIMAL).proxy.workers, Workers::PerCore);
    assert!(ok(MINIMAL).proxy.workers.threads().get() >= 1);
    assert_eq!(
        error(&with_proxy("workers = 0")),
        "4:11: `workers` must be between 1 and 1024, not 0"
    );
    assert_eq!(
        error(&with_proxy("workers = 100000")),
        "4:11: `workers` must be between 1 and 1024, not 100000"
    );
    assert_eq!(
        error(&with_proxy("workers = -3")),
        "4:11: `workers` must be between 1 and 1024, not -3"
    );
    let e = error(&with_proxy("workers = \"auto\""));
    assert!(e.starts_with("4:11: "), "{e}");
}

#[test]
fn trusted_proxies_are_cidr_networks() {
    let config = ok(&with_proxy(
        "trusted_proxies = [\"10.0.0.0/8\", \"::1\", \"192.168.1.7\"]",
    ));
    let nets: Vec<String> = config
        .proxy
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.168.1.7/32"]);
    let all = errors(&with_proxy(
        "trusted_proxies = [\"10.0.0.0/33\", \"10.1.2.3/8\", \"localhost\"]",
    ));
    assert_eq!(
        all,
        [
            "4:20: invalid network in `trusted_proxies`: \"10.0.0.0/33\" is not a network; expected CIDR like 10.0.0.0/8 or fd00::/8",
            "4:35: invalid network in `trusted_proxies`: \"10.1.2.3/8\" has host bits set; did you mean \"10.0.0.0/8\"?",
            "4:49: invalid network in `trusted_proxies`: \"localhost\" is not a network; expected CIDR like 10.0.0.0/8 or fd00::/8",
        ]
    );
}

#[test]
fn request_id_header_is_a_header_name() {
    let e = error(&with_proxy("request_id_header = \"x request\""));
    assert_eq!(
        e,
        "4:21: invalid header name \"x request\" for `request_id_header`"
    );
}

#[test]
fn access_log_path_and_format() {
    let config = ok(&format!("{MINIMAL}[access_log]\npath = \"-\"\n"));
    assert_eq!(config.access_log.unwrap().target, AccessLogTarget::Stdout);
    let e = error(&format!("{MINIMAL}[access_log]\nformat = \"common\"\n"));
    assert_eq!(
        e,
        "4:10: unknown `format` \"common\"; expected one of: combined, json"
    );
    let e = error(&format!("{MINIMAL}[access_log]\npath = \"\"\n"));
    assert_eq!(
        e,
        "4:8: `path` of [access_log] is empty; use \"-\" for standard output"
    );
}

#[test]
fn listener_addresses() {
    let config =
        ok("[[listener]]\naddress = \"[::1]:0\"\n[[listener]]\naddress = \"unix:/tmp/b.sock\"\n");
    assert_eq!(
        config.listeners[0].address,
        ListenAddr::Tcp("[::1]:0".parse().unwrap())
    );
    assert_eq!(config.listeners[1].name, "listener-2");
    let e = error("[[listener]]\naddress = \"localhost:80\"\n");
    assert_eq!(
        e,
        "2:11: could not parse listen address \"localhost:80\": expected IP:PORT (e.g. 127.0.0.1:8080, [::1]:0) or unix:PATH"
    );
}

#[test]
fn duplicate_addresses_except_port_zero() {
    let source =
        "[[listener]]\naddress = \"127.0.0.1:80\"\n[[listener]]\naddress = \"127.0.0.1:80\"\n";
    assert_eq!(
        error(source),
        "4:11: address 127.0.0.1:80 is already used by listener \"listener-1\" (line 2)"
    );
    ok("[[listener]]\naddress = \"127.0.0.1:0\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n");
    let source = "[[listener]]\naddress = \"unix:/a\"\n[[listener]]\naddress = \"/a\"\n";
    assert_eq!(
        error(source),
        "4:11: address unix:/a is already used by listener \"listener-1\" (line 2)"
    );
}

#[test]
fn duplicate_listener_names() {
    let source = "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:1\"\n\n[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:2\"\n";
    assert_eq!(
        error(source),
        "6:8: duplicate listener name \"http\" (first used at line 2)"
    );
    let source = "[[listener]]\nname = \"listener-2\"\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:2\"\n";
    assert_eq!(
        error(source),
        "4:1: this listener has no name and its default name \"listener-2\" is already used at line 2; give it a name"
    );
    let e = error("[[listener]]\nname = \"my http\"\naddress = \"127.0.0.1:1\"\n");
    assert_eq!(
        e,
        "2:8: invalid listener name \"my http\": use 1 to 128 letters, digits, '-', '_' or '.'"
    );
}

#[test]
fn listener_limits() {
    let e = error(&format!("{MINIMAL}max_connections = 0\n"));
    assert_eq!(
        e,
        "3:19: `max_connections` must be between 1 and 4294967295, not 0"
    );
    let e = error(&format!("{MINIMAL}max_header_bytes = \"2MiB\"\n"));
    assert_eq!(
        e,
        "3:20: `max_header_bytes` must be between 1024 and 1048576 bytes, not 2097152"
    );
    let e = error(&format!("{MINIMAL}max_body_bytes = \"10 MB!\"\n"));
    assert_eq!(
        e,
        "3:18: invalid `max_body_bytes`: \"10 MB!\" is not a size: unknown unit \"MB!\"; expected B, KB, MB, GB, KiB, MiB or GiB"
    );
    let e = error(&format!("{MINIMAL}body_buffer_bytes = \"2MiB\"\n"));
    assert_eq!(
        e,
        "3:21: `body_buffer_bytes` must be between 0 and 1048576 bytes, not 2097152"
    );
    assert_eq!(
        ok(&format!("{MINIMAL}body_buffer_bytes = 0\n")).listeners[0].body_buffer_bytes,
        0
    );
    let e = error(&format!("{MINIMAL}max_body_bytes = -1\n"));
    assert_eq!(e, "3:18: invalid `max_body_bytes`: must not be negative");
    let config = ok(&format!(
        "{MINIMAL}max_body_bytes = 0\nmax_header_bytes = 1024\n"
    ));
    assert_eq!(
        (
            config.listeners[0].max_body_bytes,
            config.listeners[0].max_header_bytes
        ),
        (0, 1024)
    );
}
