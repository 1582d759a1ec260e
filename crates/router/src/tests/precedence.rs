//! One test per precedence rule of the crate docs, each named after its
//! rule, plus tests that the rules apply in their order.

use super::{Req, SpecExt, route, router, winner};
use http::Method;

#[test]
fn rule_1_exact_host_beats_wildcard_beats_any_host() {
    let r = router(vec![
        route("any"),
        route("wildcard").wildcard("example.com"),
        route("exact").exact("api.example.com"),
    ]);
    assert_eq!(winner(&r, &Req::get("api.example.com", "/")), "exact");
    assert_eq!(winner(&r, &Req::get("www.example.com", "/")), "wildcard");
    assert_eq!(winner(&r, &Req::get("example.com", "/")), "any");
    assert_eq!(winner(&r, &Req::new(Method::GET, None, "/")), "any");
}

#[test]
fn rule_1_longer_wildcard_suffix_wins() {
    let r = router(vec![
        route("short").wildcard("com"),
        route("medium").wildcard("example.com"),
        route("long").wildcard("eu.example.com"),
    ]);
    assert_eq!(winner(&r, &Req::get("a.eu.example.com", "/")), "long");
    assert_eq!(winner(&r, &Req::get("eu.example.com", "/")), "medium");
    assert_eq!(winner(&r, &Req::get("a.other.com", "/")), "short");
}

#[test]
fn rule_2_exact_path_beats_pattern_beats_regex_beats_prefix_beats_any_path() {
    let r = router(vec![
        route("any"),
        route("regex").regex("^/users/[0-9]+/posts$"),
        route("prefix").prefix("/users/"),
        route("pattern").pattern("/users/{id}"),
        route("exact").pattern("/users/me"),
    ]);
    let at = |path| winner(&r, &Req::get("h", path));
    assert_eq!(at("/users/me"), "exact");
    assert_eq!(at("/users/7"), "pattern");
    assert_eq!(at("/users/7/posts"), "regex");
    assert_eq!(at("/users/7/likes"), "prefix");
    assert_eq!(at("/"), "any");
}

#[test]
fn rule_2_pattern_with_more_literal_segments_wins() {
    let r = router(vec![
        route("one").pattern("/a/{x}/{y}"),
        route("two").pattern("/{x}/b/c"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a/b/c")), "two");
    assert_eq!(winner(&r, &Req::get("h", "/a/b/d")), "one");
}

#[test]
fn rule_2_pattern_with_earlier_literal_wins() {
    let r = router(vec![
        route("late").pattern("/{x}/b"),
        route("early").pattern("/a/{y}"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a/b")), "early");
    assert_eq!(winner(&r, &Req::get("h", "/z/b")), "late");
}

#[test]
fn rule_2_param_beats_catch_all_and_ending_beats_continuing() {
    let r = router(vec![
        route("catch-all").pattern("/a/{*rest}"),
        route("param").pattern("/a/{x}"),
        route("param-then-rest").pattern("/a/{x}/{*rest}"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a/b")), "param");
    assert_eq!(winner(&r, &Req::get("h", "/a/b/c")), "param-then-rest");
    assert_eq!(winner(&r, &Req::get("h", "/a")), "catch-all");
}

#[test]
fn rule_2_longer_prefix_wins() {
    let r = router(vec![
        route("short").prefix("/"),
        route("long").prefix("/static/img/"),
        route("mid").prefix("/static/"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/static/img/a.png")), "long");
    assert_eq!(winner(&r, &Req::get("h", "/static/a.css")), "mid");
    assert_eq!(winner(&r, &Req::get("h", "/index.html")), "short");
}

#[test]
fn rule_3_more_header_conditions_win() {
    let r = router(vec![
        route("none").prefix("/"),
        route("one").prefix("/").header("x-canary", "1"),
        route("two")
            .prefix("/")
            .header("x-canary", "1")
            .header("x-user", "beta"),
    ]);
    let req = Req::get("h", "/");
    assert_eq!(winner(&r, &req), "none");
    assert_eq!(winner(&r, &req.clone().header("x-canary", "1")), "one");
    assert_eq!(
        winner(&r, &req.header("x-canary", "1").header("x-user", "beta")),
        "two"
    );
}

#[test]
fn rule_4_route_with_a_method_list_wins() {
    let r = router(vec![
        route("any-method").prefix("/"),
        route("get-only").prefix("/").methods(&[Method::GET]),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/")), "get-only");
    assert_eq!(
        winner(&r, &Req::get("h", "/").method(Method::POST)),
        "any-method"
    );
}

#[test]
fn rule_5_first_in_config_wins() {
    let r = router(vec![
        route("first").pattern("/{a}"),
        route("second").pattern("/{b}"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/x")), "first");
    let r = router(vec![route("first").regex("a"), route("second").regex("b")]);
    assert_eq!(winner(&r, &Req::get("h", "/ab")), "first");
}

#[test]
fn host_rule_comes_before_path_rule() {
    let r = router(vec![
        route("any-host-exact-path").pattern("/a"),
        route("wildcard-any-path").wildcard("example.com"),
    ]);
    assert_eq!(
        winner(&r, &Req::get("www.example.com", "/a")),
        "wildcard-any-path"
    );
}

#[test]
fn path_rule_comes_before_header_rule() {
    let r = router(vec![
        route("prefix-with-header").prefix("/").header("x-a", "1"),
        route("exact").pattern("/a"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a").header("x-a", "1")), "exact");
}

#[test]
fn header_rule_comes_before_method_rule() {
    let r = router(vec![
        route("methods").methods(&[Method::GET]),
        route("header").header("x-a", "1"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/").header("x-a", "1")), "header");
}

#[test]
fn a_better_route_that_fails_on_method_or_header_yields_to_the_next() {
    let r = router(vec![
        route("fallback").prefix("/"),
        route("post-only").pattern("/a").methods(&[Method::POST]),
        route("needs-header").pattern("/a").header("x-a", "1"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a")), "fallback");
    assert_eq!(
        winner(&r, &Req::get("h", "/a").method(Method::POST)),
        "post-only"
    );
}
