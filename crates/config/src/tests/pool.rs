//! Rules of `[pool.NAME]`, its members, `health` and `passive`.

use super::{MINIMAL, error, errors, ok};
use crate::types::{Balance, StatusRange, UpstreamHost};

/// A pool `p` (line 3) with these members (line 4) and extra lines (5..).
fn pool(members: &str, extra: &str) -> String {
    format!("{MINIMAL}[pool.p]\nmembers = [{members}]\n{extra}\n")
}

const ONE: &str = "{ address = \"127.0.0.1:9001\" }";

#[test]
fn pool_without_members() {
    assert_eq!(error(&pool("", "")), "4:11: pool \"p\" has no members");
}

#[test]
fn weights_from_zero_to_a_million() {
    let config = ok(&pool(
        "{ address = \"h:1\", weight = 0 }, { address = \"h:2\", weight = 0 }",
        "",
    ));
    assert!(
        config.pools["p"].members.iter().all(|m| m.weight == 0),
        "a drained pool is allowed"
    );
    ok(&pool("{ address = \"h:1\", weight = 1000000 }", ""));
    let all = errors(&pool(
        "{ address = \"h:1\", weight = -1 }, { address = \"h:2\", weight = 1000001 }",
        "",
    ));
    assert_eq!(
        all,
        [
            "4:40: `weight` must be between 0 and 1000000, not -1",
            "4:74: `weight` must be between 0 and 1000000, not 1000001",
        ]
    );
}

#[test]
fn member_addresses() {
    let config = ok(&pool("{ address = \"Backend.internal:8080\" }", ""));
    let address = &config.pools["p"].members[0].address;
    assert_eq!(
        (address.host.as_str(), address.port, address.ip),
        ("Backend.internal", 8080, None)
    );
    for (bad, why) in [
        (
            "localhost",
            "missing port; expected HOST:PORT or IP:PORT, like 127.0.0.1:9001 or app.internal:8080",
        ),
        ("http://h:1", "write the address without a scheme;"),
        ("h:0", "port 0 is not a valid upstream port"),
        ("h:99999", "invalid port \"99999\";"),
        ("::1:80", "invalid host \"::1\";"),
        ("a b:80", "invalid host \"a b\";"),
    ] {
        let e = error(&pool(&format!("{{ address = \"{bad}\" }}"), ""));
        assert!(
            e.starts_with(&format!("4:24: invalid member address \"{bad}\": {why}")),
            "{e}"
        );
    }
    let e = error(&pool(&format!("{ONE}, {ONE}"), ""));
    assert_eq!(e, "4:56: duplicate member \"127.0.0.1:9001\" in pool \"p\"");
}

#[test]
fn balance_upstream_host_and_limits() {
    let config = ok(&pool(
        ONE,
        "balance = \"least_requests\"\nupstream_host = \"member\"",
    ));
    assert_eq!(config.pools["p"].forward.balance, Balance::LeastRequests);
    assert_eq!(
        config.pools["p"].forward.upstream_host,
        UpstreamHost::Member
    );
    let all = errors(&pool(
        ONE,
        "balance = \"round_robin\"\nupstream_host = \"a b\"\nmax_connections_per_member = 0\ntotal_timeout = \"soon\"",
    ));
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_eq!(
        all[0],
        "5:11: unknown `balance` \"round_robin\"; expected one of: weighted_round_robin, least_requests"
    );
    assert_eq!(
        all[1],
        "6:17: invalid `upstream_host` \"a b\": expected preserve, member or a host such as api.internal:8080"
    );
    assert_eq!(
        all[2],
        "7:30: `max_connections_per_member` must be between 1 and 4294967295, not 0"
    );
    assert!(
        all[3].starts_with("8:17: invalid duration \"soon\" for `total_timeout`"),
        "{all:#?}"
    );
}

#[test]
fn invalid_pool_names() {
    let e = error(&format!("{MINIMAL}[pool.\"my pool\"]\nmembers = [{ONE}]\n"));
    assert_eq!(
        e,
        "3:7: invalid pool name \"my pool\": use 1 to 128 letters, digits, '-', '_' or '.'"
    );
}

#[test]
fn health_thresholds_and_timeout() {
    let health = |lines: &str| {
        pool(
            ONE,
            &format!("[pool.p.health]\npath = \"/healthz\"\n{lines}"),
        )
    };
    let config = ok(&health("expect_status = 204"));
    let check = config.pools["p"].health.clone().unwrap();
    assert_eq!(
        check.expect_status,
        StatusRange {
            first: 204,
            last: 204
        }
    );
    assert!(check.expect_status.contains(204) && !check.expect_status.contains(200));
    let all = errors(&health("healthy_threshold = 0\nunhealthy_threshold = 0"));
    assert_eq!(
        all,
        [
            "7:21: `healthy_threshold` must be between 1 and 4294967295, not 0",
            "8:23: `unhealthy_threshold` must be between 1 and 4294967295, not 0",
        ]
    );
    let e = error(&health("interval = \"1s\"\ntimeout = \"1s\""));
    assert_eq!(
        e,
        "8:11: health check `timeout` (1s) must be shorter than `interval` (1s)"
    );
    let e = error(&health("interval = \"500ms\""));
    assert_eq!(
        e,
        "7:12: health check `timeout` (1s) must be shorter than `interval` (500ms)"
    );
    let e = error(&health("expect_status = \"399-200\""));
    assert_eq!(
        e,
        "7:17: invalid `expect_status`: expected a status (100-599) or a range like \"200-399\""
    );
    let e = error(&health("expect_status = 600"));
    assert!(e.starts_with("7:17: invalid `expect_status`"), "{e}");
    let e = error(&pool(ONE, "[pool.p.health]\npath = \"healthz\""));
    assert_eq!(
        e,
        "6:8: health check `path` \"healthz\" must be a path starting with \"/\""
    );
}

#[test]
fn start_interval_defaults_to_a_tenth_of_interval_within_bounds() {
    let start = |lines: &str| {
        let source = pool(
            ONE,
            &format!("[pool.p.health]\npath = \"/healthz\"\ntimeout = \"5ms\"\n{lines}"),
        );
        ok(&source).pools["p"]
            .health
            .clone()
            .unwrap()
            .start_interval
    };
    let ms = std::time::Duration::from_millis;
    assert_eq!(start(""), ms(200), "a tenth of the default 2s");
    assert_eq!(start("interval = \"100ms\""), ms(10));
    assert_eq!(start("interval = \"50ms\""), ms(10), "at least 10ms");
    assert_eq!(
        start("interval = \"8ms\""),
        ms(8),
        "never more than interval"
    );
    assert_eq!(start("start_interval = \"1s\""), ms(1000));
    let e = error(&pool(
        ONE,
        "[pool.p.health]\npath = \"/healthz\"\nstart_interval = \"3s\"",
    ));
    assert_eq!(
        e,
        "7:18: health check `start_interval` (3s) must not be longer than `interval` (2s)"
    );
    let e = error(&pool(
        ONE,
        "[pool.p.health]\npath = \"/healthz\"\nstart_interval = \"0s\"",
    ));
    assert!(e.starts_with("7:18: "), "{e}");
}

#[test]
fn passive_ejection() {
    let passive = |lines: &str| pool(ONE, &format!("[pool.p.passive]\n{lines}"));
    let e = error(&passive("consecutive_failures = 0"));
    assert_eq!(
        e,
        "6:24: `consecutive_failures` must be between 1 and 4294967295, not 0"
    );
    let e = error(&passive("ejection_time = \"10m\""));
    assert_eq!(
        e,
        "6:17: `max_ejection_time` (5m) must be at least `ejection_time` (10m)"
    );
    let e = error(&passive("ejection_time = \"0s\""));
    assert_eq!(e, "6:17: `ejection_time` must be greater than 0");
}

#[test]
fn upstream_addresses_parse_outside_the_file_too() {
    // `baton deploy --target` and instances the deploy engine starts.
    let addr: crate::UpstreamAddr = "app.internal:8080".parse().unwrap();
    assert_eq!(
        (addr.host.as_str(), addr.port, addr.ip),
        ("app.internal", 8080, None)
    );
    let e = "h:0".parse::<crate::UpstreamAddr>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid address \"h:0\": port 0 is not a valid upstream port"
    );
    let socket: std::net::SocketAddr = "[::1]:9001".parse().unwrap();
    let from = crate::UpstreamAddr::from(socket);
    assert_eq!(from, "[::1]:9001".parse().unwrap());
    assert_eq!(from.ip, Some(socket));
}

#[test]
fn retry_server_errors_is_a_boolean_off_by_default() {
    assert!(!ok(&pool(ONE, "")).pools["p"].forward.retry_server_errors);
    let on = ok(&pool(ONE, "retry_server_errors = true"));
    assert!(on.pools["p"].forward.retry_server_errors);
    assert!(on.pools["p"].forward.retry_server_errors);
    assert!(
        !ok(&pool(ONE, "retry_server_errors = false")).pools["p"]
            .forward
            .retry_server_errors
    );
    assert_eq!(
        error(&pool(ONE, "retry_server_errors = 1")),
        "5:23: `retry_server_errors` in [pool.p] must be a boolean, not an integer"
    );
    let refused = crate::parse(&pool(ONE, "retry_server_errors = \"yes\""), "baton.toml");
    assert_eq!(
        refused.unwrap_err().to_string(),
        "baton.toml:5:23: error: `retry_server_errors` in [pool.p] must be a boolean, not a string\n1 error"
    );
}

#[test]
fn queue_length_from_zero_to_a_million_and_a_non_zero_queue_timeout() {
    let config = ok(&pool(ONE, "queue_length = 0\nqueue_timeout = \"250ms\""));
    let forward = &config.pools["p"].forward;
    assert_eq!(
        (forward.queue_length, forward.queue_timeout),
        (0, std::time::Duration::from_millis(250))
    );
    ok(&pool(ONE, "queue_length = 1000000"));
    let all = errors(&pool(ONE, "queue_length = 1000001\nqueue_timeout = \"0s\""));
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(
        all[0],
        "5:16: `queue_length` must be between 0 and 1000000, not 1000001"
    );
    assert!(all[1].starts_with("6:17: "), "{all:#?}");
    assert!(all[1].contains("`queue_timeout`"), "{all:#?}");
}
