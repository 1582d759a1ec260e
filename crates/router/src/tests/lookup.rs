//! Lookups through the public API: host normalisation, 404 versus 405,
//! parameters, header conditions, and the sharing guarantees.

use super::{Req, SpecExt, route, router, winner};
use crate::{Match, Router, allow_header};
use http::Method;

fn params(r: &Router<&'static str>, req: &Req) -> Vec<(String, String)> {
    match r.lookup(&req.request()) {
        Match::Found { params, .. } => params
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        other => panic!("expected a match for {req:?}, got {other:?}"),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn host_is_matched_without_case_port_or_trailing_dot() {
    let r = router(vec![
        route("site").exact("Example.COM."),
        route("v6").exact("[::1]"),
        route("star").wildcard("Apps.Example.com"),
    ]);
    for host in [
        "example.com",
        "EXAMPLE.com",
        "example.com:8080",
        "example.com.",
        "Example.Com.:443",
    ] {
        assert_eq!(winner(&r, &Req::get(host, "/")), "site", "{host}");
    }
    assert_eq!(winner(&r, &Req::get("[::1]:8080", "/")), "v6");
    assert_eq!(winner(&r, &Req::get("[::1]", "/")), "v6");
    assert_eq!(winner(&r, &Req::get("A.APPS.example.com:80", "/")), "star");
    assert_eq!(winner(&r, &Req::get("apps.example.com", "/")), "404");
    assert_eq!(winner(&r, &Req::get("www.example.com", "/")), "404");
    assert_eq!(winner(&r, &Req::new(Method::GET, None, "/")), "404");
}

#[test]
fn method_mismatch_only_is_405_with_the_union_of_methods() {
    let r = router(vec![
        route("get")
            .pattern("/items")
            .methods(&[Method::GET, Method::HEAD]),
        route("post")
            .prefix("/items")
            .methods(&[Method::POST, Method::GET]),
        route("other-host")
            .exact("other")
            .pattern("/items")
            .methods(&[Method::PUT]),
        route("needs-header")
            .pattern("/items")
            .methods(&[Method::PATCH])
            .header("x-a", "1"),
    ]);
    let req = Req::get("h", "/items").method(Method::DELETE);
    match r.lookup(&req.request()) {
        Match::MethodNotAllowed { allowed } => {
            assert_eq!(allowed, [Method::GET, Method::HEAD, Method::POST]);
            assert_eq!(allow_header(&allowed), "GET, HEAD, POST");
        }
        other => panic!("expected 405, got {other:?}"),
    }
    assert_eq!(winner(&r, &req.clone().header("x-a", "1")), "405");
    assert_eq!(
        winner(&r, &Req::get("h", "/nothing").method(Method::DELETE)),
        "404"
    );
}

#[test]
fn the_405_union_spans_host_tables() {
    let r = router(vec![
        route("exact")
            .exact("a.example.com")
            .pattern("/x")
            .methods(&[Method::PUT]),
        route("wild")
            .wildcard("example.com")
            .prefix("/")
            .methods(&[Method::POST]),
        route("any").regex("x").methods(&[Method::PATCH]),
    ]);
    let req = Req::get("a.example.com", "/x");
    match r.lookup(&req.request()) {
        Match::MethodNotAllowed { allowed } => {
            assert_eq!(allowed, [Method::POST, Method::PUT, Method::PATCH])
        }
        other => panic!("expected 405, got {other:?}"),
    }
    assert_eq!(winner(&r, &req.method(Method::PATCH)), "any");
}

#[test]
fn a_route_for_any_method_makes_405_impossible() {
    let r = router(vec![
        route("get").pattern("/a").methods(&[Method::GET]),
        route("all").prefix("/"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a").method(Method::POST)), "all");
}

#[test]
fn pattern_params_are_extracted() {
    let r = router(vec![
        route("post").pattern("/users/{id}/posts/{post}"),
        route("files").pattern("/files/{*rest}"),
        route("both").pattern("/v/{version}/{*path}"),
    ]);
    let at = |path| params(&r, &Req::get("h", path));
    assert_eq!(
        at("/users/42/posts/7"),
        pairs(&[("id", "42"), ("post", "7")])
    );
    assert_eq!(at("/files/a/b.txt"), pairs(&[("rest", "a/b.txt")]));
    assert_eq!(at("/files/"), pairs(&[("rest", "")]));
    assert_eq!(at("/files"), pairs(&[("rest", "")]));
    assert_eq!(at("/v/2/x/y"), pairs(&[("version", "2"), ("path", "x/y")]));
    assert_eq!(
        at("/users/a%20b/posts/%2F"),
        pairs(&[("id", "a%20b"), ("post", "%2F")])
    );
    let req = Req::get("h", "/users/42/posts/7");
    let Match::Found { params, route, .. } = r.lookup(&req.request()) else {
        panic!("no match")
    };
    assert_eq!(
        (route, params.get("post"), params.get("nope"), params.len()),
        (0, Some("7"), None, 2)
    );
}

#[test]
fn other_routes_have_no_params() {
    let r = router(vec![
        route("exact").pattern("/a"),
        route("prefix").prefix("/p"),
        route("regex").regex("^/(?P<x>r)"),
    ]);
    for path in ["/a", "/p/1", "/r"] {
        assert!(params(&r, &Req::get("h", path)).is_empty(), "{path}");
    }
}

#[test]
fn many_params_spill_but_still_work() {
    let pattern: String = (0..12).map(|i| format!("/{{p{i}}}")).collect();
    let path: String = (0..12).map(|i| format!("/{i}")).collect();
    let r = Router::new(vec![route("many").pattern(&pattern)]).unwrap();
    let got = params(&r, &Req::get("h", &path));
    assert_eq!(got.len(), 12);
    assert_eq!(got[11], ("p11".to_owned(), "11".to_owned()));
}

#[test]
fn paths_are_matched_raw() {
    let r = router(vec![
        route("encoded").pattern("/a%2Fb"),
        route("plain").pattern("/a/b"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/a%2Fb")), "encoded");
    assert_eq!(winner(&r, &Req::get("h", "/a%2fb")), "404");
    assert_eq!(winner(&r, &Req::get("h", "/a/./b")), "404");
    assert_eq!(winner(&r, &Req::get("h", "/a//b")), "404");
}

#[test]
fn header_conditions_compare_values_exactly_any_of_repeated() {
    let r = router(vec![
        route("canary").header("x-canary", "yes"),
        route("rest"),
    ]);
    assert_eq!(
        winner(&r, &Req::get("h", "/").header("x-canary", "yes")),
        "canary"
    );
    assert_eq!(
        winner(&r, &Req::get("h", "/").header("x-canary", "YES")),
        "rest"
    );
    assert_eq!(
        winner(
            &r,
            &Req::get("h", "/")
                .header("x-canary", "no")
                .header("x-canary", "yes")
        ),
        "canary"
    );
    assert_eq!(
        winner(&r, &Req::get("h", "/").header("X-Canary", "yes")),
        "canary"
    );
}

#[test]
fn regex_is_unanchored_on_the_path() {
    let r = router(vec![
        route("v").regex("/v[0-9]+/"),
        route("anchored").regex("^/z$"),
    ]);
    assert_eq!(winner(&r, &Req::get("h", "/api/v2/x")), "v");
    assert_eq!(winner(&r, &Req::get("h", "/z")), "anchored");
    assert_eq!(winner(&r, &Req::get("h", "/zz")), "404");
}

#[test]
fn an_empty_router_finds_nothing() {
    let r = router(vec![]);
    assert!(r.is_empty());
    assert_eq!(r.len(), 0);
    assert_eq!(winner(&r, &Req::get("h", "/")), "404");
}

#[test]
fn the_router_is_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Router<std::sync::Arc<String>>>();
    let r = std::sync::Arc::new(router(vec![route("a").pattern("/{x}")]));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || winner(&r, &Req::get("h", "/1")))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "a");
    }
}
