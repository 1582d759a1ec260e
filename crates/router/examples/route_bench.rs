//! Route table benchmark: builds 10,000-route tables of several shapes and
//! prints the build time and the cost of a lookup (median of several runs)
//! for hits and misses, next to the linear scan in precedence order.
//!
//! "hit" and "miss" cycle through 1,000 different requests spread over the
//! table, so they include cache misses; "hot hit" repeats one request, which
//! shows the pure computation.
//!
//! Run with `cargo run --release -p router --example route_bench`; add
//! `-- --skip-linear` to time only the index (e.g. under a profiler).

use http::{HeaderMap, Method};
use router::{HostMatch, Match, PathMatch, Request, RouteSpec, Router};
use std::hint::black_box;
use std::time::Instant;

const ROUTES: usize = 10_000;
const RUNS: usize = 7;
const LOOKUPS: usize = 200_000;
const LINEAR_LOOKUPS: usize = 2_000;

/// An owned request.
struct Req {
    host: String,
    method: Method,
    path: String,
}

fn req(host: &str, path: &str) -> Req {
    Req {
        host: host.to_owned(),
        method: Method::GET,
        path: path.to_owned(),
    }
}

struct Shape {
    name: &'static str,
    specs: Vec<RouteSpec<usize>>,
    hits: Vec<Req>,
    misses: Vec<Req>,
}

fn spec(i: usize, host: Option<HostMatch>, path: Option<PathMatch>) -> RouteSpec<usize> {
    let mut spec = RouteSpec::new(i);
    spec.host = host;
    spec.path = path;
    spec
}

fn pattern(p: String) -> Option<PathMatch> {
    Some(PathMatch::Pattern(p))
}

/// 2,500 exact hosts with four routes each.
fn many_hosts() -> Shape {
    let mut specs = Vec::new();
    for h in 0..ROUTES / 4 {
        let host = || Some(HostMatch::Exact(format!("svc{h}.example.com")));
        specs.push(spec(specs.len(), host(), pattern("/health".into())));
        specs.push(spec(specs.len(), host(), pattern("/api/users/{id}".into())));
        specs.push(spec(
            specs.len(),
            host(),
            pattern("/api/orders/{id}/items/{item}".into()),
        ));
        specs.push(spec(
            specs.len(),
            host(),
            Some(PathMatch::Prefix("/static/".into())),
        ));
    }
    let hits = (0..1000)
        .map(|i| {
            let host = format!("svc{}.example.com", i * 7 % (ROUTES / 4));
            let paths = [
                "/health",
                "/api/users/42",
                "/api/orders/7/items/3",
                "/static/css/site.css",
            ];
            req(&host, paths[i % 4])
        })
        .collect();
    let misses = (0..1000)
        .map(|i| match i % 2 {
            0 => req(
                &format!("svc{}.example.com", i % (ROUTES / 4)),
                "/api/nothing/here",
            ),
            _ => req(&format!("unknown{i}.example.org"), "/api/users/42"),
        })
        .collect();
    Shape {
        name: "2.5k exact hosts x 4 paths",
        specs,
        hits,
        misses,
    }
}

/// 10,000 wildcard hosts, each with a prefix route.
fn many_wildcards() -> Shape {
    let specs = (0..ROUTES)
        .map(|i| {
            let host = Some(HostMatch::Wildcard(format!("t{i}.apps.example.com")));
            spec(i, host, Some(PathMatch::Prefix("/".into())))
        })
        .collect();
    let hits = (0..1000)
        .map(|i| req(&format!("www.t{}.apps.example.com", i * 13 % ROUTES), "/x"))
        .collect();
    let misses = (0..1000)
        .map(|i| req(&format!("www.n{i}.apps.example.com"), "/x"))
        .collect();
    Shape {
        name: "10k wildcard hosts",
        specs,
        hits,
        misses,
    }
}

/// 10,000 paths under one host: exact paths, patterns, catch-alls, prefixes.
fn many_paths(regexes: usize) -> Shape {
    let host = || Some(HostMatch::Exact("api.example.com".into()));
    let mut specs = Vec::new();
    for s in 0..(ROUTES - regexes) / 4 {
        specs.push(spec(
            specs.len(),
            host(),
            pattern(format!("/v1/svc{s}/health")),
        ));
        specs.push(spec(
            specs.len(),
            host(),
            pattern(format!("/v1/svc{s}/users/{{id}}")),
        ));
        specs.push(spec(
            specs.len(),
            host(),
            pattern(format!("/v1/svc{s}/files/{{*path}}")),
        ));
        specs.push(spec(
            specs.len(),
            host(),
            Some(PathMatch::Prefix(format!("/static/svc{s}/"))),
        ));
    }
    for r in 0..regexes {
        specs.push(spec(
            specs.len(),
            host(),
            Some(PathMatch::Regex(format!("^/legacy/r{r}/[0-9]+$"))),
        ));
    }
    let services = (ROUTES - regexes) / 4;
    let hits = (0..1000)
        .map(|i| {
            let s = i * 7 % services;
            let path = match i % 5 {
                0 => format!("/v1/svc{s}/health"),
                1 => format!("/v1/svc{s}/users/42"),
                2 => format!("/v1/svc{s}/files/a/b/c.txt"),
                3 => format!("/static/svc{s}/app.js"),
                _ if regexes > 0 => format!("/legacy/r{}/123", i % regexes),
                _ => format!("/v1/svc{s}/users/7"),
            };
            req("api.example.com", &path)
        })
        .collect();
    let misses = (0..1000)
        .map(|i| {
            let path = match i % 3 {
                0 => format!("/v1/svc{}/unknown", i % services),
                1 => "/v1/nosuch/users/1".to_owned(),
                _ => format!("/static/other{i}/app.js"),
            };
            req("api.example.com", &path)
        })
        .collect();
    let name = if regexes > 0 {
        "10k paths, 1 host, 100 regex"
    } else {
        "10k paths, 1 host"
    };
    Shape {
        name,
        specs,
        hits,
        misses,
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median nanoseconds per lookup over `RUNS` runs of `count` lookups.
fn time_lookups(reqs: &[Req], count: usize, lookup: impl Fn(&Request<'_>) -> bool) -> f64 {
    let headers = HeaderMap::new();
    let samples = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for r in reqs.iter().cycle().take(count) {
                let request = Request {
                    host: Some(&r.host),
                    method: &r.method,
                    path: &r.path,
                    headers: &headers,
                };
                black_box(lookup(black_box(&request)));
            }
            start.elapsed().as_nanos() as f64 / count as f64
        })
        .collect();
    median(samples)
}

fn check(router: &Router<usize>, reqs: &[Req], want_found: bool) {
    let headers = HeaderMap::new();
    for r in reqs {
        let request = Request {
            host: Some(&r.host),
            method: &r.method,
            path: &r.path,
            headers: &headers,
        };
        let found = router.lookup(&request);
        assert_eq!(
            matches!(found, Match::Found { .. }),
            want_found,
            "{} {}",
            r.host,
            r.path
        );
        assert_eq!(found, router.lookup_linear(&request));
    }
}

/// Nanoseconds, or `-` when not measured.
fn ns(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.0}ns")
    } else {
        "-".to_owned()
    }
}

fn main() {
    let skip_linear = std::env::args().any(|a| a == "--skip-linear");
    println!(
        "{:<30} {:>7} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "shape (10,000 routes)", "build", "hit", "hot hit", "miss", "linear hit", "linear miss"
    );
    for shape in [
        many_hosts(),
        many_wildcards(),
        many_paths(0),
        many_paths(100),
    ] {
        assert_eq!(shape.specs.len(), ROUTES);
        let builds = (0..RUNS)
            .map(|_| {
                let specs = shape.specs.clone();
                let start = Instant::now();
                let router = Router::new(specs).expect("valid routes");
                let elapsed = start.elapsed().as_secs_f64() * 1e3;
                drop(black_box(router));
                elapsed
            })
            .collect();
        let build_ms = median(builds);
        let router = Router::new(shape.specs.clone()).expect("valid routes");
        check(&router, &shape.hits, true);
        check(&router, &shape.misses, false);
        let found = |r: &Request<'_>| matches!(router.lookup(r), Match::Found { .. });
        let linear = |r: &Request<'_>| matches!(router.lookup_linear(r), Match::Found { .. });
        let hit = time_lookups(&shape.hits, LOOKUPS, found);
        let hot_hit = time_lookups(&shape.hits[..1], LOOKUPS, found);
        let miss = time_lookups(&shape.misses, LOOKUPS, found);
        let linear_lookups = if skip_linear { 0 } else { LINEAR_LOOKUPS };
        let linear_hit = time_lookups(&shape.hits, linear_lookups, linear);
        let linear_miss = time_lookups(&shape.misses, linear_lookups, linear);
        println!(
            "{:<30} {:>5.1}ms {:>9} {:>9} {:>9} {:>11} {:>11}",
            shape.name,
            build_ms,
            ns(hit),
            ns(hot_hit),
            ns(miss),
            ns(linear_hit),
            ns(linear_miss)
        );
    }
}
