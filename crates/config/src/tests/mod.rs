//! Tests of the whole pipeline through [`crate::parse`], one file per
//! concern. Each validation rule is checked for its message *and* its
//! line:column.

mod acme;
mod admin;
mod cluster;
mod diff;
mod docs;
mod duration;
mod kitchen;
mod listener;
mod multi;
mod pool;
mod route;
mod service;
mod shape;
mod strategy;
mod tls;

use crate::{Config, parse};

/// The smallest valid file.
pub(crate) const MINIMAL: &str = "[[listener]]\naddress = \"127.0.0.1:8080\"\n";

/// A valid file with one pool and one route, to which tests append mistakes.
pub(crate) const BASE: &str = r#"[[listener]]
name = "http"
address = "127.0.0.1:8080"

[pool.app]
members = [{ address = "127.0.0.1:9001" }]

[[route]]
pool = "app"
"#;

/// Parses `source`, expecting success.
#[track_caller]
pub(crate) fn ok(source: &str) -> Config {
    match parse(source, "t.toml") {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}\n--- source:\n{source}"),
    }
}

/// Parses `source`, expecting failure; returns each error as
/// `LINE:COLUMN: MESSAGE`.
#[track_caller]
pub(crate) fn errors(source: &str) -> Vec<String> {
    match parse(source, "t.toml") {
        Ok(config) => {
            panic!("expected errors, got a valid config:\n{config:#?}\n--- source:\n{source}")
        }
        Err(errors) => {
            for e in &errors.0 {
                assert_eq!(e.file, "t.toml");
                assert!(e.line >= 1 && e.column >= 1, "{e}");
            }
            errors
                .0
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect()
        }
    }
}

/// Parses `source`, expecting exactly one error, and returns it.
#[track_caller]
pub(crate) fn error(source: &str) -> String {
    let mut all = errors(source);
    assert_eq!(
        all.len(),
        1,
        "expected one error, got {all:#?}\n--- source:\n{source}"
    );
    all.remove(0)
}
