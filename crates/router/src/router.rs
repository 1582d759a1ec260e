//! [`Router`]: building the index from route specs, and the lookup that
//! walks it. Routes are stored sorted by precedence, so a route's id (its
//! position) is its rank and "best" means "lowest id". Host tables are
//! visited most specific first; within a table, `table` and the `Search`
//! visitor find the lowest id whose method and headers also match.

use crate::error::BuildError;
use crate::host;
use crate::outcome::{self, Match};
use crate::route::{Check, Route};
use crate::spec::{Request, RouteSpec};
use crate::table::{NONE, Table, Visitor};
use http::Method;
// foldhash: keys come from the configuration and requests only query them,
// so a fast, randomly seeded hash is enough (no hash-flooding by inserts).
use foldhash::HashMap;
use std::fmt;

/// An immutable route table; build once per configuration, share freely.
pub struct Router<T> {
    /// All routes in precedence order; the position is the route's id.
    routes: Box<[Route<T>]>,
    exact_hosts: HashMap<Box<str>, Table>,
    wildcard_hosts: HashMap<Box<str>, Table>,
    any_host: Table,
}

impl<T> Router<T> {
    /// Validates every route and builds the index. On failure, returns every
    /// error of every route, in route order.
    ///
    /// # Panics
    ///
    /// With 2^32 - 1 routes or more (ids are `u32`).
    pub fn new(specs: Vec<RouteSpec<T>>) -> Result<Router<T>, Vec<BuildError>> {
        assert!(
            specs.len() < NONE as usize,
            "a route table holds fewer than 2^32 - 1 routes"
        );
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(specs.len());
        for (index, spec) in specs.into_iter().enumerate() {
            match Route::compile(index, spec) {
                Ok(route) => compiled.push(route),
                Err(route_errors) => errors.extend(route_errors),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        compiled.sort_unstable_by(|(_, a), (_, b)| a.cmp(b));
        let routes: Box<[Route<T>]> = compiled.into_iter().map(|(route, _)| route).collect();

        let mut router = Router {
            routes: Box::default(),
            exact_hosts: HashMap::default(),
            wildcard_hosts: HashMap::default(),
            any_host: Table::default(),
        };
        for (id, route) in routes.iter().enumerate() {
            let table = match &route.host {
                host::HostCond::Any => &mut router.any_host,
                host::HostCond::Exact(name) => table_for(&mut router.exact_hosts, name),
                host::HostCond::Wildcard(suffix) => table_for(&mut router.wildcard_hosts, suffix),
            };
            table.insert(id as u32, route);
        }
        let tables = router
            .exact_hosts
            .values_mut()
            .chain(router.wildcard_hosts.values_mut());
        for table in tables.chain([&mut router.any_host]) {
            table.finish(&routes);
        }
        router.routes = routes;
        Ok(router)
    }

    /// The route for `req`: the best match by precedence, else `405` with
    /// the allowed methods, else `404`. The parameters borrow from both the
    /// router (names) and `req.path` (values), hence the one lifetime.
    /// Allocates only for a `405` (and the rare cases in the crate docs).
    pub fn lookup<'a>(&'a self, req: &Request<'a>) -> Match<'a, T> {
        host::with_normalized(req.host, |host| {
            let mut search = Search {
                routes: &self.routes,
                req,
                best: NONE,
                near: false,
            };
            self.visit_tables(host, req.path, &mut search);
            if search.best != NONE {
                return self.found(search.best, req.path);
            }
            if !search.near {
                return Match::NotFound;
            }
            let mut collect = Collect {
                routes: &self.routes,
                req,
                allowed: Vec::new(),
            };
            self.visit_tables(host, req.path, &mut collect);
            Match::MethodNotAllowed {
                allowed: outcome::canonical(collect.allowed),
            }
        })
    }

    /// The same answer as [`lookup`](Self::lookup), by checking every route
    /// in precedence order without the index: O(number of routes). It is the
    /// baseline for tests and benchmarks, not for serving.
    pub fn lookup_linear<'a>(&'a self, req: &Request<'a>) -> Match<'a, T> {
        host::with_normalized(req.host, |host| {
            let mut allowed = Vec::new();
            for (id, route) in self.routes.iter().enumerate() {
                if !route.host.matches(host) || !route.path_matches(req.path) {
                    continue;
                }
                match route.check(req) {
                    Check::Found => return self.found(id as u32, req.path),
                    Check::WrongMethod => allowed.extend_from_slice(&route.methods),
                    Check::Miss => {}
                }
            }
            match allowed.is_empty() {
                true => Match::NotFound,
                false => Match::MethodNotAllowed {
                    allowed: outcome::canonical(allowed),
                },
            }
        })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes (every lookup is `NotFound`).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn found<'a>(&'a self, id: u32, path: &'a str) -> Match<'a, T> {
        let route = &self.routes[id as usize];
        Match::Found {
            target: &route.target,
            route: route.index,
            params: route.params(path),
        }
    }

    /// Visits the tables whose host condition matches, most specific first,
    /// and stops after the first table in which `v` found something: every
    /// route of a more specific host beats every route of a less specific one.
    fn visit_tables<V: Visitor>(&self, host: Option<&str>, path: &str, v: &mut V) {
        if let Some(host) = host {
            if let Some(table) = self.exact_hosts.get(host) {
                table.visit(&self.routes, path, v);
                if v.bound() != NONE {
                    return;
                }
            }
            if !self.wildcard_hosts.is_empty() {
                for suffix in host::wildcard_suffixes(host) {
                    if let Some(table) = self.wildcard_hosts.get(suffix) {
                        table.visit(&self.routes, path, v);
                        if v.bound() != NONE {
                            return;
                        }
                    }
                }
            }
        }
        self.any_host.visit(&self.routes, path, v);
    }
}

fn table_for<'t>(tables: &'t mut HashMap<Box<str>, Table>, name: &str) -> &'t mut Table {
    if !tables.contains_key(name) {
        tables.insert(name.into(), Table::default());
    }
    tables.get_mut(name).expect("inserted above")
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("exact_hosts", &self.exact_hosts.len())
            .field("wildcard_hosts", &self.wildcard_hosts.len())
            .finish_non_exhaustive()
    }
}

/// Finds the lowest id that matches completely, and notes whether some
/// route matched all but the method (then a second pass collects methods).
struct Search<'r, T> {
    routes: &'r [Route<T>],
    req: &'r Request<'r>,
    best: u32,
    near: bool,
}

impl<T> Visitor for Search<'_, T> {
    fn bound(&self) -> u32 {
        self.best
    }

    fn visit(&mut self, ids: &[u32]) {
        for &id in ids {
            if id >= self.best {
                return;
            }
            match self.routes[id as usize].check(self.req) {
                Check::Found => {
                    self.best = id;
                    return;
                }
                Check::WrongMethod => self.near = true,
                Check::Miss => {}
            }
        }
    }
}

/// Gathers the methods of every route that matches all but the method.
struct Collect<'r, T> {
    routes: &'r [Route<T>],
    req: &'r Request<'r>,
    allowed: Vec<Method>,
}

impl<T> Visitor for Collect<'_, T> {
    fn bound(&self) -> u32 {
        NONE
    }

    fn visit(&mut self, ids: &[u32]) {
        for &id in ids {
            let route = &self.routes[id as usize];
            if route.check(self.req) == Check::WrongMethod {
                self.allowed.extend_from_slice(&route.methods);
            }
        }
    }
}
