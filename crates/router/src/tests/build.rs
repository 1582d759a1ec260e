//! Building a router: every error of every route is reported, with the
//! route's index, and a valid table keeps every route.

use super::{SpecExt, route};
use crate::{BuildError, HostError, PatternError, Router};

#[test]
fn every_error_of_every_route_is_reported() {
    let specs = vec![
        route("ok").pattern("/fine/{id}"),
        route("bad-regex").regex("(unclosed"),
        route("bad-pattern").pattern("/a/{*rest}/b"),
        route("ok-2").prefix("/"),
        route("bad-prefix").prefix("api"),
        route("bad-host-and-regex").exact("a.com:80").regex("[z-a]"),
        route("bad-wildcard").wildcard("*.example.com"),
    ];
    let errors = Router::new(specs).unwrap_err();
    let routes: Vec<usize> = errors.iter().map(BuildError::route).collect();
    assert_eq!(routes, [1, 2, 4, 5, 5, 6]);
    assert!(matches!(&errors[0], BuildError::Regex { regex, .. } if regex == "(unclosed"));
    assert!(
        matches!(&errors[1], BuildError::Pattern { reason: PatternError::CatchAllNotLast(n), .. } if n == "rest")
    );
    assert!(matches!(&errors[2], BuildError::Prefix { prefix, .. } if prefix == "api"));
    assert!(matches!(
        &errors[3],
        BuildError::Host {
            reason: HostError::Port,
            ..
        }
    ));
    assert!(matches!(&errors[4], BuildError::Regex { .. }));
    assert!(matches!(
        &errors[5],
        BuildError::Host {
            reason: HostError::WildcardStar,
            ..
        }
    ));
    for error in &errors {
        assert!(
            error
                .to_string()
                .starts_with(&format!("route {}: could not ", error.route())),
            "{error}"
        );
    }
    assert!(std::error::Error::source(&errors[0]).is_some());
}

#[test]
fn a_valid_table_keeps_every_route() {
    let specs: Vec<_> = (0..100).map(|_| route("r").pattern("/same")).collect();
    assert_eq!(Router::new(specs).unwrap().len(), 100);
}
