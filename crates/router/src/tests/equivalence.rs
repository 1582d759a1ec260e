//! The index against the naive reference (and against `lookup_linear`) on
//! thousands of generated tables and requests.

use super::generate::{self, Rng};
use super::naive::{Answer, Naive};
use crate::{Match, Router};

fn answer(found: Match<'_, usize>) -> Answer {
    match found {
        Match::Found {
            route,
            params,
            target,
        } => {
            assert_eq!(*target, route, "target and route index disagree");
            let params = params
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            Answer::Found { route, params }
        }
        Match::MethodNotAllowed { allowed } => {
            let mut names: Vec<String> = allowed.iter().map(|m| m.as_str().to_owned()).collect();
            names.sort();
            Answer::MethodNotAllowed(names)
        }
        Match::NotFound => Answer::NotFound,
    }
}

/// Returns how many lookups gave each kind of answer, to show the generator
/// covers all three.
fn compare(
    seed: u64,
    tables: usize,
    size: impl Fn(&mut Rng) -> usize,
    requests: usize,
) -> [usize; 3] {
    let mut rng = Rng::new(seed);
    let mut kinds = [0; 3];
    for _ in 0..tables {
        let size = size(&mut rng);
        let specs = generate::table(&mut rng, size);
        let router = Router::new(specs.clone()).expect("generated routes are valid");
        let naive = Naive::new(specs.clone());
        for _ in 0..requests {
            let req = generate::request(&mut rng, size);
            let request = req.request();
            let indexed = router.lookup(&request);
            assert_eq!(
                indexed,
                router.lookup_linear(&request),
                "linear scan differs on {req:?}"
            );
            let expected = naive.lookup(&request);
            let got = answer(indexed);
            if got != expected {
                let table: Vec<_> = specs
                    .iter()
                    .map(|s| (&s.host, &s.path, &s.methods, &s.headers))
                    .collect();
                panic!(
                    "seed {seed}: {req:?}\ngot      {got:?}\nexpected {expected:?}\ntable {table:#?}"
                );
            }
            kinds[match got {
                Answer::Found { .. } => 0,
                Answer::MethodNotAllowed(_) => 1,
                Answer::NotFound => 2,
            }] += 1;
        }
    }
    kinds
}

#[test]
fn index_equals_naive_scan_on_small_tables() {
    let kinds = compare(1, 3000, |rng| 1 + rng.below(24), 40);
    eprintln!("answers (found, 405, 404): {kinds:?}");
    assert!(kinds.iter().all(|&k| k > 1000), "poor coverage: {kinds:?}");
}

#[test]
fn index_equals_naive_scan_on_large_tables() {
    // Big enough for hash-mapped trie children and the regex gate.
    let kinds = compare(2, 40, |rng| 200 + rng.below(300), 400);
    eprintln!("answers (found, 405, 404): {kinds:?}");
    assert!(kinds.iter().all(|&k| k > 100), "poor coverage: {kinds:?}");
}
