//! Rules of a service's deploy strategies: `strategy`, the rolling bounds,
//! `[service.NAME.blue_green]` and `[service.NAME.canary]`.

use std::time::Duration;

use super::{MINIMAL, error, errors, ok};
use crate::types::{Service, Strategy};

/// An external service `web` (line 3) with these lines (from line 5).
fn service(lines: &str) -> String {
    format!("{MINIMAL}[service.web]\ntargets = [\"h:1\"]\n{lines}\n")
}

fn web(source: &str) -> Service {
    ok(source).services["web"].clone()
}

/// `[service.web.canary]` (line 5) with these lines (from line 6).
fn canary(lines: &str) -> String {
    service(&format!("[service.web.canary]\n{lines}"))
}

#[test]
fn strategy_names() {
    for (name, strategy) in [
        ("rolling", Strategy::Rolling),
        ("blue_green", Strategy::BlueGreen),
        ("canary", Strategy::Canary),
    ] {
        let s = web(&service(&format!("strategy = \"{name}\"")));
        assert_eq!(s.strategy, strategy);
    }
    assert_eq!(
        error(&service("strategy = \"blue-green\"")),
        "5:12: unknown `strategy` \"blue-green\"; expected one of: rolling, blue_green, canary"
    );
}

#[test]
fn strategy_names_round_trip() {
    for strategy in Strategy::ALL {
        assert_eq!(strategy.to_string().parse(), Ok(strategy));
    }
    assert_eq!("blue-green".parse(), Ok(Strategy::BlueGreen));
    assert_eq!(
        "fast".parse::<Strategy>().unwrap_err().to_string(),
        "unknown strategy \"fast\": expected rolling, blue_green or canary"
    );
}

#[test]
fn rolling_bounds() {
    assert_eq!(
        error(&service("max_surge = 0")),
        "5:13: `max_surge` and `max_unavailable` are both 0, so no instance could ever be replaced"
    );
    assert_eq!(
        error(&service("max_unavailable = 0\nmax_surge = 0")),
        "6:13: `max_surge` and `max_unavailable` are both 0, so no instance could ever be replaced",
        "at the later of the two"
    );
    let all = errors(&service("max_surge = 1025\nmax_unavailable = -1"));
    assert_eq!(
        all,
        [
            "5:13: `max_surge` must be between 0 and 1024, not 1025",
            "6:19: `max_unavailable` must be between 0 and 1024, not -1",
        ]
    );
    let s = web(&service("max_surge = 0\nmax_unavailable = 1"));
    assert_eq!((s.rolling.max_surge, s.rolling.max_unavailable), (0, 1));
}

#[test]
fn blue_green_smoke_checks_and_window() {
    let s = web(&service(
        "[service.web.blue_green]\nsmoke = [\"/\", \"/ping?x=1\"]\nrollback_window = \"0s\"",
    ));
    assert_eq!(s.blue_green.smoke, ["/", "/ping?x=1"]);
    assert_eq!(s.blue_green.rollback_window, Duration::ZERO);
    let all = errors(&service(
        "[service.web.blue_green]\nsmoke = [\"healthz\", \"/a\", \"/a\", \"/b c\"]\nrollback_window = \"forever\"",
    ));
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_eq!(
        all[..3],
        [
            "6:10: smoke check \"healthz\" must be a path starting with \"/\"",
            "6:27: smoke check \"/a\" is listed twice",
            "6:33: smoke check \"/b c\" must be a path starting with \"/\"",
        ]
    );
    assert!(
        all[3].starts_with("7:19: invalid duration \"forever\" for `rollback_window`"),
        "{all:#?}"
    );
}

#[test]
fn canary_steps() {
    assert_eq!(
        web(&canary("steps = [100]")).canary.steps,
        [100],
        "straight to 100"
    );
    assert_eq!(
        web(&canary("steps = [1, 2, 99, 100]")).canary.steps,
        [1, 2, 99, 100]
    );
    assert_eq!(
        error(&canary("steps = []")),
        "6:9: `steps` is empty; the canary needs at least the last step, 100"
    );
    assert_eq!(
        error(&canary("steps = [0, 50, 100]")),
        "6:10: canary step 0 is not a percentage from 1 to 100"
    );
    assert_eq!(
        error(&canary("steps = [10, 10, 100]")),
        "6:14: canary steps must increase strictly, but 10 comes after 10"
    );
    assert_eq!(
        error(&canary("steps = [10, 50]")),
        "6:14: the last canary step must be 100 (all the traffic), not 50"
    );
    assert_eq!(
        errors(&canary("steps = [50, 20, 150]")),
        [
            "6:14: canary steps must increase strictly, but 20 comes after 50",
            "6:18: canary step 150 is not a percentage from 1 to 100",
        ],
        "a refused last step is not also reported as not 100"
    );
    assert_eq!(
        errors(&canary("steps = [60, 20, 40, 100]")),
        [
            "6:14: canary steps must increase strictly, but 20 comes after 60",
            "6:18: canary steps must increase strictly, but 40 comes after 60",
        ]
    );
}

#[test]
fn canary_thresholds() {
    let s = web(&canary(
        "pause = \"5s\"\nmax_error_rate = 1\nmax_p99_ratio = 0.5\nmin_requests = 1",
    ));
    assert_eq!(
        (
            s.canary.pause,
            s.canary.max_error_rate,
            s.canary.max_p99_ratio,
            s.canary.min_requests
        ),
        (Duration::from_secs(5), 1.0, 0.5, 1)
    );
    let all = errors(&canary(
        "pause = \"0s\"\nmax_error_rate = 1.5\nmax_p99_ratio = 0\nmin_requests = 0",
    ));
    assert_eq!(
        all,
        [
            "6:9: `pause` must be greater than 0",
            "7:18: `max_error_rate` must be between 0 and 1, not 1.5",
            "8:17: `max_p99_ratio` must be finite and greater than 0, not 0",
            "9:16: `min_requests` must be between 1 and 4294967295, not 0",
        ]
    );
    let all = errors(&canary("max_error_rate = -0.1\nmax_p99_ratio = inf"));
    assert_eq!(
        all,
        [
            "6:18: `max_error_rate` must be between 0 and 1, not -0.1",
            "7:17: `max_p99_ratio` must be finite and greater than 0, not inf",
        ]
    );
    let all = errors(&canary("max_error_rate = nan\nmax_p99_ratio = -2"));
    assert_eq!(
        all,
        [
            "6:18: `max_error_rate` must be between 0 and 1, not NaN",
            "7:17: `max_p99_ratio` must be finite and greater than 0, not -2",
        ]
    );
}
