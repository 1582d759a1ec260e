//! A deterministic pseudo-random generator (SplitMix64) and generators of
//! route tables and requests over small vocabularies, so that overlaps,
//! ties and near misses are frequent.

use super::Req;
use crate::{HostMatch, PathMatch, RouteSpec};
use http::{HeaderName, HeaderValue, Method};

pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`%.
    pub(super) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const HOSTS: [&str; 6] = ["a.com", "b.com", "x.a.com", "A.com.", "[::1]", "y.x.a.com"];
const SUFFIXES: [&str; 4] = ["a.com", "com", "x.a.com", "B.com"];
const REQUEST_HOSTS: [&str; 11] = [
    "a.com",
    "A.COM:80",
    "x.a.com",
    "y.x.a.com",
    "z.y.x.a.com",
    "b.com.",
    "[::1]:8080",
    "c.com",
    "com",
    "",
    ".a.com",
];
/// The first, `/`, is left out of big tables.
const PREFIXES: [&str; 7] = ["/", "/a", "/a/", "/a/b", "/ab", "/b/", "/s1/"];
const REGEXES: [&str; 6] = ["^/a", "b$", "/a/.*/c", "^/[ab]+$", "x", "^/s[0-9]/"];
const HEADERS: [(&str, &str); 3] = [("x-a", "1"), ("x-a", "2"), ("x-b", "1")];

fn methods() -> [Method; 4] {
    [Method::GET, Method::POST, Method::PUT, Method::DELETE]
}

/// A literal path segment; `width` widens the vocabulary for big tables.
fn literal(rng: &mut Rng, width: usize) -> String {
    match rng.below(5) {
        0 => String::new(),
        1 => "ab".into(),
        2 => "a".into(),
        3 => "b".into(),
        _ => format!("s{}", rng.below(width)),
    }
}

/// In big tables (`big`) the first segment is always a literal, so that
/// not every request finds some pattern.
fn pattern(rng: &mut Rng, width: usize, big: bool) -> String {
    let count = 1 + rng.below(4);
    let mut pattern = String::new();
    for i in 0..count {
        pattern.push('/');
        match if big && i == 0 { 0 } else { rng.below(10) } {
            0..=4 => pattern.push_str(&literal(rng, width)),
            5..=7 => pattern.push_str(&format!("{{p{i}}}")),
            _ if i + 1 == count => pattern.push_str("{*rest}"),
            _ => pattern.push_str(&format!("{{p{i}}}")),
        }
    }
    pattern
}

/// A random valid route table of `size` routes.
pub(super) fn table(rng: &mut Rng, size: usize) -> Vec<RouteSpec<usize>> {
    let width = 2 + size / 8;
    // Big tables avoid routes that match (nearly) everything.
    let big = size > 50;
    (0..size)
        .map(|i| {
            let mut spec = RouteSpec::new(i);
            spec.host = match rng.below(10) {
                0..=3 => None,
                4..=6 => Some(HostMatch::Exact(rng.pick(&HOSTS).to_string())),
                _ => Some(HostMatch::Wildcard(rng.pick(&SUFFIXES).to_string())),
            };
            spec.path = match rng.below(10) {
                0 if !big => None,
                0..=2 => Some(PathMatch::Prefix(
                    rng.pick(&PREFIXES[usize::from(big)..]).to_string(),
                )),
                3..=8 => Some(PathMatch::Pattern(pattern(rng, width, big))),
                _ => Some(PathMatch::Regex(rng.pick(&REGEXES).to_string())),
            };
            if rng.chance(if big { 90 } else { 40 }) {
                spec.methods = methods().into_iter().filter(|_| rng.chance(40)).collect();
            }
            while rng.chance(25) {
                let (name, value) = *rng.pick(&HEADERS);
                spec.headers.push((
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                ));
            }
            spec
        })
        .collect()
}

/// A random request against tables from [`table`] with the same `size`.
pub(super) fn request(rng: &mut Rng, size: usize) -> Req {
    let width = 2 + size / 8;
    let host = (!rng.chance(10)).then(|| rng.pick(&REQUEST_HOSTS).to_string());
    let mut path = String::new();
    if !rng.chance(3) {
        path.push('/');
    }
    let segments = rng.below(5);
    for i in 0..segments {
        if i > 0 {
            path.push('/');
        }
        path.push_str(&literal(rng, width));
    }
    let mut req = Req::new(rng.pick(&methods()).clone(), host.as_deref(), &path);
    for (name, value) in HEADERS {
        if rng.chance(30) {
            req = req.header(name, value);
        }
    }
    req
}
